"""Training throughput through the real trainer (focusface.train), with the model FLOP utilisation.

Run on a GPU (the paper setting: r100, ArcFace over all 85,742 MS1M-ArcFace classes, the authors' 480 pairs a step,
bf16, channels_last):
    python benchmarks/bench_train.py --backbone r100 --classes 85742 --batch 480 --steps 200 --precision bf16 \
        --channels-last [--compile] [--workers 12]
On the CPU (what the tests run, tests/test_benchmarks.py):
    python benchmarks/bench_train.py --device cpu --backbone tiny --classes 200 --batch 8 --steps 4 --identities 20 \
        --workers 0 --precision fp32
The training faces are synthetic (rendered once into a temporary rec); `--classes` sets the identity count the
classifier is built for, as MS1M-ArcFace's property file would. Prints, as JSON: pairs/s and images/s of the trainer
(data loading, masking, both views, loss, optimiser step; validation off) over its last logging window and over
the whole run, the share of training time the loop waited for the loader, the peak GPU memory, the FLOPs of one
training pair by torch's FLOP counter and the utilisation against --peak-tflops (bf16 dense: H100 SXM and H200 989).
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

    from focusface.model import FocusFace
    from focusface.train import TrainingStep
    from focusface.trainconfig import load_config

    config = load_config(train="x", backbone=backbone, method=method)
    step = TrainingStep(FocusFace(backbone, classes), config)
    faces = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter:
        step(faces, None if method == "arcface" else faces, torch.tensor([0, 1]), torch.ones(2, dtype=torch.long))[
            "loss"
        ].backward()
    return counter.get_total_flops() / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="r100")
    ap.add_argument("--classes", type=int, default=85742, help="identities of the classifier (MS1M-ArcFace: 85,742)")
    ap.add_argument("--method", default="focusface")
    ap.add_argument("--batch", type=int, default=480, help="pairs per step (the authors': 480)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: a GPU if there is one)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument(
        "--identities", type=int, default=2000, help="identities actually rendered into the rec (10 faces each)"
    )
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
        print(
            f"rendered {args.identities * 10:,} training faces in {time.perf_counter() - t:.0f} s; classifier over {classes:,} identities"
        )
        config = load_config(
            train=str(Path(d) / "train"),
            out=str(Path(d) / "run"),
            backbone=args.backbone,
            method=args.method,
            batch_size=args.batch,
            lr_batch=args.batch,
            epochs=1000,
            max_steps=args.steps,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            workers=args.workers,
            progress=False,
            log_every=max(1, args.steps // 5),
            checkpoint_every=10**9,
            device=args.device,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        summary = train(config)
        peak = torch.cuda.max_memory_allocated() / 2**30 if summary["device"].startswith("cuda") else None
        log = (Path(d) / "run" / "train.log").read_text().splitlines()
        last = [line for line in log if " pairs/s " in line][-1]
        warm = [line.split(" the start cost ")[1].split()[0] for line in log if " the start cost " in line]
        rate = float(last.split(" pairs/s ")[1].split()[0])  # the last logging window: start-up, compilation and
        wait = float(last.split(" data wait ")[1].split("%")[0]) / 100  # worker warm-up excluded
    per_pair = flops_per_pair(args.backbone, classes, args.method)
    views = 1 if args.method == "arcface" else 2
    print(
        json.dumps(
            dict(
                backbone=args.backbone,
                method=args.method,
                batch=args.batch,
                steps=summary["steps"],
                precision=args.precision,
                channels_last=args.channels_last,
                compile=args.compile,
                device=summary["device"],
                workers=args.workers,
                classes=classes,
                pairs_per_s=round(rate, 1),
                images_per_s=round(rate * views, 1),
                pairs_per_s_whole_run=summary["pairs_per_s"],
                data_wait_share=round(wait, 3),
                data_wait_share_whole_run=summary["data_wait_share"],
                start_cost_s=float(warm[0]) if warm else None,  # the trainer's warm-up line (runs of 20 steps or more)
                peak_gpu_memory_gib=peak and round(peak, 2),
                gflops_per_pair=round(per_pair / 1e9, 2),
                achieved_tflops=round(rate * per_pair / 1e12, 3),
                mfu_percent=round(100 * rate * per_pair / (args.peak_tflops * 1e12), 2),
            ),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
