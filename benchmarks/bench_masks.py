"""Mask rendering speed: one 112x112 mask on one core, and offline masking of a rec with worker processes.

Run: python benchmarks/bench_masks.py [--images N]
Faces come from the LFW development sample when $FOCUSFACE_LFW_SAMPLE points at it, otherwise synthetic.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from focusface.images import decode_image, encode_image
from focusface.maskdata import mask_dataset
from focusface.masks import apply_mask
from focusface.maskspec import MASK_TYPES, sample_mask_params
from focusface.recordio import RecordWriter, pack_record

LFW = Path(os.environ.get("FOCUSFACE_LFW_SAMPLE", "/nonexistent")) / "aligned"


def faces():
    if LFW.is_dir():
        return [p.read_bytes() for p in sorted(LFW.glob("*/*.jpg"))], "LFW sample"
    rng = np.random.default_rng(0)
    return [
        encode_image(cv2.resize(rng.integers(40, 220, (8, 8, 3), dtype=np.uint8), (112, 112))) for _ in range(64)
    ], "synthetic"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20000)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    jpegs, origin = faces()
    images = [decode_image(j) for j in jpegs[:64]]
    print(f"faces: {origin}; {os.cpu_count()} cores; opencv {cv2.__version__}, numpy {np.__version__}")
    for kind in MASK_TYPES:
        params = [sample_mask_params(kind, 0, k) for k in range(2000)]
        apply_mask(images[0], params[0])
        start = time.perf_counter()
        for i, p in enumerate(params):
            apply_mask(images[i % len(images)], p)
        render = (time.perf_counter() - start) / len(params)
        start = time.perf_counter()
        for k in range(2000):
            sample_mask_params(kind, 0, k)
        sample = (time.perf_counter() - start) / 2000
        print(
            f"{kind:>8}: render {render * 1000:.3f} ms, sample params {sample * 1000:.3f} ms per 112x112 image (one core)"
        )

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "rec"
        src.mkdir()
        (src / "property").write_text("1000,112,112\n")
        with RecordWriter(src / "train.rec", src / "train.idx") as writer:
            for key in range(args.images):
                writer.write(key, pack_record(key % 1000, jpegs[key % len(jpegs)]))
        for workers in (1, 2):
            start = time.perf_counter()
            mask_dataset(src, Path(d) / f"masked{workers}", workers=workers, progress=False)
            rate = args.images / (time.perf_counter() - start)
            print(
                f"offline masking of a {args.images}-image rec (decode + mask + JPEG encode + write + manifest), "
                f"{workers} worker(s): {rate:,.0f} images/s"
            )


if __name__ == "__main__":
    main()
