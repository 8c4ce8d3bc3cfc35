"""Throughput of the paired training loader: decode + on-the-fly mask + flip, both views, batched.

Run: python benchmarks/bench_loader.py [--workers 2] [--pairs 6000] [--batch 128]
The rec is made of synthetic faces (JPEG, 112x112), or of the LFW development sample when
$FOCUSFACE_LFW_SAMPLE points at it (--lfw). Prints pairs/s in one process and through the DataLoader.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from focusface.datasets import pack_folder
from focusface.loaders import PairBatchSampler, PairedFaces, make_loader
from focusface.synthdata import make_training_set


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pairs", type=int, default=6000, help="pairs to time through the DataLoader")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lfw", action="store_true", help="real LFW crops instead of synthetic faces")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if args.lfw:
            source = Path(os.environ.get("FOCUSFACE_LFW_SAMPLE", "/nonexistent")) / "aligned"
            pack_folder(source, Path(d) / "train")
            what = f"LFW sample ({source})"
        else:
            make_training_set(Path(d) / "train", identities=300, images_per_identity=20, workers=2)
            what = "synthetic faces"
        ds = PairedFaces(Path(d) / "train", seed=0)
        n = min(500, len(ds))
        t = time.perf_counter()
        for i in range(n):
            ds[(i, 0)]
        print(f"{what}, {len(ds)} images; one process, no loader: {n / (time.perf_counter() - t):,.0f} pairs/s")
        for workers in args.workers:
            epochs = -(-args.pairs // len(ds)) + 2
            loader = make_loader(ds, PairBatchSampler(len(ds), args.batch, epochs=epochs), workers=workers)
            it = iter(loader)
            next(it)
            next(it)  # workers started and warm
            t, seen = time.perf_counter(), 0
            for batch in it:
                seen += len(batch["label"])
                if seen >= args.pairs:
                    break
            print(
                f"DataLoader, {workers} worker(s), batch {args.batch}: {seen / (time.perf_counter() - t):,.0f} pairs/s"
            )


if __name__ == "__main__":
    main()
