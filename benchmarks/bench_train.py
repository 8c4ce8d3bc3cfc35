"""Training throughput through the real trainer (focusface.train), with the model FLOP utilisation.

Run on a GPU (the paper setting's path: r100, ArcFace over all 85,742 MS1M-ArcFace classes, bf16, channels_last):
    python benchmarks/bench_train.py --backbone r100 --classes 85742 --batch 256 --steps 200 --precision bf16 \
        --channels-last [--compile] [--workers 12]
On the CPU (what CI can check): python benchmarks/bench_train.py --backbone demo --batch 64 --steps 20
The training faces are synthetic (rendered once into a temporary rec); `--classes` sets the identity count the
classifier is built for, as MS1M-ArcFace's property file would. Prints pairs/s of the trainer (data loading,
masking, both views, loss, optimiser step; validation off) over its last logging window and over the whole run, the FLOPs of one training pair measured with
torch's FLOP counter, and the utilisation against --peak-tflops (bf16 dense: H100 SXM 989, H200 989).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def flops_per_pair(backbone: str, classes: int, method: str) -> float:
    "FLOPs of one training pair (forward + backward of both views and the margin head), by torch's FLOP counter."
    from torch.utils.flop_counter import FlopCounterMode
    from focusface.train import TrainingStep
    from focusface.trainconfig import load_config
    from focusface.model import FocusFace
    config = load_config(train="x", backbone=backbone, method=method)
    step = TrainingStep(FocusFace(backbone, classes), config)
    faces = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter:
        step(faces, None if method == "arcface" else faces, torch.tensor([0, 1]), torch.ones(2, dtype=torch.long))["loss"].backward()
    return counter.get_total_flops() / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="r100")
    ap.add_argument("--classes", type=int, default=85742, help="identities of the classifier (MS1M-ArcFace: 85,742)")
    ap.add_argument("--method", default="focusface")
    ap.add_argument("--batch", type=int, default=256, help="pairs per step")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--identities", type=int, default=2000, help="identities actually rendered into the rec")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args()
    from focusface.synthdata import make_training_set
    from focusface.train import train
    from focusface.trainconfig import load_config
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        make_training_set(Path(d) / "train", identities=args.identities, images_per_identity=10, workers=args.workers)
        classes = max(args.classes, args.identities)
        (Path(d) / "train" / "property").write_text(f"{classes},112,112\n")  # the classifier's size, as in MS1M-ArcFace
        print(f"rendered {args.identities * 10:,} training faces in {time.perf_counter() - t:.0f} s; classifier over {classes:,} identities")
        config = load_config(train=str(Path(d) / "train"), out=str(Path(d) / "run"), backbone=args.backbone, method=args.method,
                             batch_size=args.batch, lr_batch=args.batch, epochs=1000, max_steps=args.steps, precision=args.precision,
                             channels_last=args.channels_last, compile=args.compile, workers=args.workers, progress=False,
                             log_every=max(1, args.steps // 5), checkpoint_every=10 ** 9)
        summary = train(config)
        rates = [line.split(" pairs/s ")[1].split()[0] for line in (Path(d) / "run" / "train.log").read_text().splitlines()
                 if " pairs/s " in line]
        steady = float(rates[-1])  # the last logging window: start-up, compilation and worker warm-up excluded
    per_pair = flops_per_pair(args.backbone, classes, args.method)
    rate = steady
    print(json.dumps(dict(backbone=args.backbone, method=args.method, batch=args.batch, steps=summary["steps"],
                          precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                          device=summary["device"], pairs_per_s_whole_run=summary["pairs_per_s"], pairs_per_s=round(rate, 1), gflops_per_pair=round(per_pair / 1e9, 2),
                          achieved_tflops=round(rate * per_pair / 1e12, 2),
                          mfu_percent=round(100 * rate * per_pair / (args.peak_tflops * 1e12), 1)), indent=1))


if __name__ == "__main__":
    main()
