#!/usr/bin/env bash
# The GPU measurements of the paper-scale issue in one prepared script of about ten minutes, for a machine with
# one NVIDIA GPU (H100/H200; 16 cores). Run from the repository root after the README's install command:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Writes one JSON line per measurement to OUT_DIR/gpu_check.jsonl (default benchmarks/results) and the GPU tests'
# summary; every step has its own time limit, so one that hangs or fails does not cost the others.
set -uo pipefail
out="${1:-benchmarks/results}"; mkdir -p "$out"
log="$out/gpu_check.jsonl"; : > "$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
workers=$(( $(nproc) - 4 ))

bench() {  # backbone batch extra-flags...
  local backbone=$1 batch=$2; shift 2
  timeout 240 python benchmarks/bench_train.py --device cuda --backbone "$backbone" --classes 85742 --batch "$batch" \
    --steps 60 --identities 1000 --precision bf16 --channels-last --workers "$workers" "$@" > "$out/bench.tmp" 2>&1
  local rc=$?
  python - "$out/bench.tmp" "$rc" "$backbone $batch $*" >> "$log" <<'PY'
import json, sys
text, rc, what = open(sys.argv[1]).read(), int(sys.argv[2]), sys.argv[3]
try: print(json.dumps(json.loads(text[text.index("{"):])))
except ValueError: print(json.dumps(dict(run=what, rc=rc, error=text.strip().splitlines()[-3:])))
PY
  tail -1 "$log"
}

bench r100 480
bench r100 240
bench r50 480
bench r100 480 --compile
bench r100 240 --compile
timeout 180 python - >> "$log" 2> "$out/evaluation.err" <<'PY'
# evaluation throughput: r100 embeddings of 112x112 faces with flip (two passes), as the evaluation computes them
import json, time, numpy as np, torch
from focusface.evaluate import embed_images
from focusface.model import FocusFace
from focusface.images import encode_image
model = FocusFace("r100").cuda().eval()
faces = [encode_image(np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8)) for i in range(64)]
images = faces * 160  # 10,240 encoded faces
embed_images(model, images[:512], batch_size=512, device="cuda")  # warm
torch.cuda.synchronize(); t = time.perf_counter()
embed_images(model, images, batch_size=512, device="cuda"); torch.cuda.synchronize()
print(json.dumps(dict(evaluation="r100 embeddings with flip, decode included", images=len(images),
                      images_per_s=round(len(images) / (time.perf_counter() - t), 1))))
PY
tail -1 "$log"
timeout 120 python -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/gpu_tests.txt" 2>&1; tail -3 "$out/gpu_tests.txt"
