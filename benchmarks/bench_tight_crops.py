"""Faces that fill the frame: how many photos MTCNN finds a face in without and with `find_faces`' second search in a
padded copy (`FRAME_PAD`), on the RWMFD sample's real masked photos and on tight crops made like MFR2's 160x160
photos (the LFW sample's aligned faces, unmasked and masked by MaskTheFace, scaled to 160x160: the face fills the
frame). Prints one JSON line per set and setting; `--sheet` writes a contact sheet of the faces only the second
search finds in RWMFD, to look at.

Run: python benchmarks/bench_tight_crops.py [--sheet /tmp/padded.png]   (FOCUSFACE_LFW_SAMPLE, FOCUSFACE_RWMFD_SAMPLE)
"""

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from focusface.align import FRAME_PAD, align_face, default_aligner, find_faces
from focusface.images import decode_image


def photos(folder: Path, size: int | None = None):
    "(name, RGB image) of every .jpg/.png under `folder`, scaled to `size` x `size` when given."
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png")):
        image = decode_image(path.read_bytes())
        yield str(path.relative_to(folder)), image if size is None else cv2.resize(image, (size, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", help="a PNG of the RWMFD faces found only in the padded copy")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    aligner = default_aligner("mtcnn")
    sets = {}
    if os.environ.get("FOCUSFACE_RWMFD_SAMPLE"):
        sets["RWMFD photos"] = (Path(os.environ["FOCUSFACE_RWMFD_SAMPLE"]) / "photos", None)
    if os.environ.get("FOCUSFACE_LFW_SAMPLE"):
        lfw = Path(os.environ["FOCUSFACE_LFW_SAMPLE"])
        sets["LFW aligned, 160x160"] = (lfw / "aligned", 160)
        sets["LFW MaskTheFace, 160x160"] = (lfw / "maskthefaced" / "images", 160)
    if not sets:
        raise SystemExit("set FOCUSFACE_RWMFD_SAMPLE and/or FOCUSFACE_LFW_SAMPLE")
    tiles = []
    for name, (folder, size) in sets.items():
        counts, started, total = {0.0: 0, FRAME_PAD: 0}, time.perf_counter(), 0
        for rel, image in photos(folder, size):
            total += 1
            first = find_faces(aligner, image, pad=0.0)
            counts[0.0] += bool(first)
            if first:
                counts[FRAME_PAD] += 1
                continue
            second = find_faces(aligner, image, pad=FRAME_PAD)
            counts[FRAME_PAD] += bool(second)
            if second and args.sheet and size is None:
                tiles.append(cv2.resize(align_face(image, second[0].landmarks), (80, 80)))
        line = dict(
            set=name,
            photos=total,
            found_without_padding=counts[0.0],
            found_with_padding=counts[FRAME_PAD],
            frame_pad=FRAME_PAD,
            seconds=round(time.perf_counter() - started, 1),
        )
        print(json.dumps(line), flush=True)
    if args.sheet and tiles:
        columns = 10
        sheet = np.zeros((80 * ((len(tiles) + columns - 1) // columns), 80 * columns, 3), np.uint8)
        for i, tile in enumerate(tiles):
            sheet[80 * (i // columns) : 80 * (i // columns + 1), 80 * (i % columns) : 80 * (i % columns + 1)] = tile
        cv2.imwrite(args.sheet, sheet[:, :, ::-1])


if __name__ == "__main__":
    main()
