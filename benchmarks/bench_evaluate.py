"""Evaluation's embedding rate: the images of an evaluation set decoded, masked (M-M: every image) and embedded with
flip, as `focusface evaluate` does, with a given number of decode workers. Prints one JSON line per setting.

Run: python benchmarks/bench_evaluate.py [--set outputs/data/demo/eval.bin] [--model outputs/runs/focusface/seed0/model.pt]
                                         [--workers 0 2] [--device cpu] [--batch 128] [--images 4000]
Without a model file it embeds with a randomly initialised `demo` backbone (the demo pipeline's).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from focusface.checkpoints import load_checkpoint
from focusface.evalsets import read_eval_set
from focusface.evaluate import decode_workers, embed_images
from focusface.maskspec import MaskSampler
from focusface.model import FocusFace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="outputs/data/demo/eval.bin")
    parser.add_argument("--model", default="outputs/runs/focusface/seed0/model.pt")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=4000, help="the first N images of the set")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_checkpoint(args.model) if Path(args.model).is_file() else FocusFace("demo")
    model = model.to(device).eval()
    pairs = read_eval_set(args.set)
    images = pairs.images[: args.images]
    sampler = MaskSampler(seed=0)
    embed_images(model, images[:256], batch_size=args.batch, device=device, workers=0)  # warm: first-call costs
    for workers in args.workers:
        started = time.perf_counter()
        embed_images(model, images, sampler=sampler, batch_size=args.batch, device=device, workers=workers)
        seconds = time.perf_counter() - started
        line = dict(
            workers=decode_workers(workers, device),
            device=str(device),
            images=len(images),
            images_per_s=round(len(images) / seconds, 1),
            torch_threads=torch.get_num_threads(),
            machine=platform.processor() or platform.machine(),
        )
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
