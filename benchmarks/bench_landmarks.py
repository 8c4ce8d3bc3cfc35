"""`focusface landmarks` in worker processes: images/s of the 68-landmark model on aligned synthetic crops.

Run: python benchmarks/bench_landmarks.py [--images 3000] [--workers 0 1 2]
Prints images/s for each worker count and the time MS1M-ArcFace's 5.8 million faces would take at that rate.
"""

import argparse
import tempfile
import time
from pathlib import Path

from focusface.alignfolder import compute_landmarks
from focusface.synthdata import make_training_set


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        make_training_set(Path(d) / "train", identities=args.images // 10, images_per_identity=10, workers=2)
        for workers in args.workers:
            t = time.perf_counter()
            info = compute_landmarks(Path(d) / "train", Path(d) / f"lm{workers}.npz", workers=workers)
            rate = info["images"] / (time.perf_counter() - t)
            print(
                f"{workers} worker(s): {info['images']:,} images in {time.perf_counter() - t:.1f} s, {rate:,.0f} images/s "
                f"({info['ok']:,} accepted); MS1M-ArcFace's 5,822,653 faces: {5_822_653 / rate / 3600:.1f} h"
            )


if __name__ == "__main__":
    main()
