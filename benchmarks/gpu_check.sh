#!/usr/bin/env bash
# Every GPU measurement in one prepared script that fits one 8-minute device call, for a machine with one NVIDIA GPU
# (H100/H200; 16 cores). Run from the repository root after the README's install command:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Writes one JSON line per measurement to OUT_DIR/gpu_check.jsonl (default benchmarks/results) and prints each as it
# comes; every step has its own time limit, so one that hangs or fails does not cost the others:
#   1. the trainer, r100, the authors' 480 pairs, 85,742 classes, bf16, channels_last (cudnn.benchmark now on)  ~90 s
#   2. the same compiled                                                                                        ~200 s
#   3. evaluation's r100 embedding rate with flip, decode on the main thread and in 8 workers                   ~40 s
#   4. torchrun with one process per GPU, sync_bn=true, a few steps, resumed, then evaluated                   ~60 s
#      (NCCL and SyncBatchNorm take part only with 2 GPUs or more: a single process joins no process group, and
#      NCCL refuses two ranks on one GPU; on one GPU this checks the launch, the resume and the evaluation on CUDA)
#   5. tests/test_gpu.py                                                                                        ~30 s
set -uo pipefail
out="${1:-benchmarks/results}"; mkdir -p "$out"
log="$out/gpu_check.jsonl"; : > "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
workers=$(( $(nproc) - 4 ))

record() {  # FILE RC WHAT: the last JSON object FILE printed, or what failed
  python - "$1" "$2" "$3" >> "$log" <<'PY'
import json, sys
text, rc, what = open(sys.argv[1]).read(), int(sys.argv[2]), sys.argv[3]
try: print(json.dumps(dict(json.loads(text[text.rindex("\n{") + 1 if "\n{" in text else text.index("{"):]), run=what, rc=rc)))
except ValueError: print(json.dumps(dict(run=what, rc=rc, error=text.strip().splitlines()[-3:])))
PY
  tail -1 "$log"
}

bench() {  # LIMIT_S backbone batch extra-flags...
  local limit=$1 backbone=$2 batch=$3; shift 3
  timeout "$limit" python benchmarks/bench_train.py --device cuda --backbone "$backbone" --classes 85742 \
    --batch "$batch" --steps 40 --identities 1000 --precision bf16 --channels-last --workers "$workers" "$@" \
    > "$out/bench.tmp" 2>&1
  record "$out/bench.tmp" $? "bench_train $backbone $batch $*"
}

bench 150 r100 480
bench 240 r100 480 --compile

python - > "$out/eval.tmp" 2>&1 <<'PY' &
# evaluation throughput: r100 embeddings of 112x112 faces with flip, decoded on the main thread, then in 8 workers,
# then in 8 workers with the network in bfloat16
import json, time, numpy as np, torch
from focusface.evaluate import embed_images
from focusface.model import FocusFace
from focusface.images import encode_image
if __name__ == "__main__":
    model = FocusFace("r100").cuda().eval()
    faces = [encode_image(np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8)) for i in range(64)]
    images = faces * 160  # 10,240 encoded faces
    embed_images(model, images[:512], batch_size=512, device="cuda", workers=0)  # warm
    for workers, precision in ((0, "fp32"), (8, "fp32"), (8, "bf16")):
        torch.cuda.synchronize(); t = time.perf_counter()
        embed_images(model, images, batch_size=512, device="cuda", workers=workers, precision=precision)
        torch.cuda.synchronize()
        print(json.dumps(dict(evaluation="r100 embeddings with flip, decode included", workers=workers,
                              precision=precision, images=len(images),
                              images_per_s=round(len(images) / (time.perf_counter() - t), 1))))
PY
pid=$!; ( sleep 120; kill "$pid" 2>/dev/null ) & wait "$pid"; rc=$?
grep '^{' "$out/eval.tmp" | head -1 > "$out/eval0.tmp"; record "$out/eval0.tmp" "$rc" "evaluation workers=0"
grep '^{' "$out/eval.tmp" | sed -n 2p > "$out/eval8.tmp"; record "$out/eval8.tmp" "$rc" "evaluation workers=8"
grep '^{' "$out/eval.tmp" | sed -n 3p > "$out/eval8bf.tmp"; record "$out/eval8bf.tmp" "$rc" "evaluation workers=8 bf16"

# torchrun, one process per GPU (NCCL and SyncBatchNorm from 2 GPUs on), a few steps, resumed, then evaluated
gpus=$(nvidia-smi -L | wc -l)
nccl="$out/nccl"; rm -rf "$nccl"
started=$(date +%s.%N)
{
  timeout 60 focusface synth "$nccl/data" --train-identities 50 --images-per-identity 8 --val-identities 20 \
    --eval-identities 40 --quiet &&
  timeout 90 torchrun --standalone --nproc-per-node "$gpus" -m focusface.train --config configs/demo.yaml \
    train="$nccl/data/train" val="$nccl/data/val.bin" out="$nccl/run" backbone=r18 batch_size=64 lr_batch=64 \
    precision=bf16 sync_bn=true max_steps=4 workers=4 progress=false &&
  timeout 90 torchrun --standalone --nproc-per-node "$gpus" -m focusface.train --config configs/demo.yaml \
    train="$nccl/data/train" val="$nccl/data/val.bin" out="$nccl/run" backbone=r18 batch_size=64 lr_batch=64 \
    precision=bf16 sync_bn=true max_steps=8 workers=4 progress=false --resume &&
  timeout 90 focusface evaluate "$nccl/run/model.pt" "$nccl/data/eval.bin" --out "$nccl/eval" --device cuda --quiet
} > "$out/nccl.log" 2>&1
rc=$?
python - "$nccl" "$rc" "$started" >> "$log" <<'PY'
import json, sys, time
from pathlib import Path
nccl, rc, started = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
summary = json.loads((nccl / "run/summary.json").read_text()) if (nccl / "run/summary.json").is_file() else {}
metrics = json.loads((nccl / "eval/metrics.json").read_text()) if (nccl / "eval/metrics.json").is_file() else {}
print(json.dumps(dict(run="torchrun sync_bn, resumed, evaluated", rc=rc, steps=summary.get("steps"),
                      processes=summary.get("processes"), seconds=round(time.time() - started, 1),
                      um_accuracy=metrics.get("eval", {}).get("um", {}).get("accuracy"))))
PY
tail -1 "$log"
[ "$rc" -eq 0 ] || tail -5 "$out/nccl.log"

timeout 90 python -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/gpu_tests.txt" 2>&1; tail -3 "$out/gpu_tests.txt"
