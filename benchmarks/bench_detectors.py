"""Face detectors on real masked photos: how many they find, how well they place the five points, how fast.

    python benchmarks/bench_detectors.py --out benchmarks/results [--detectors mtcnn,dlib,dlib0]

with $FOCUSFACE_LFW_SAMPLE and $FOCUSFACE_RWMFD_SAMPLE pointing at the two development samples (as scripts/test sets
them).

Measured, for each detector (`mtcnn`: focusface.mtcnn, the default; `dlib`: dlib's HOG detector upsampled once,
the default before; `dlib0`: not upsampled; `dlib_cnn`: dlib's CNN (MMOD) detector from face-recognition-models,
slow):
- the RWMFD sample (real photos of people in masks, no identities): photos with at least one face found, faces found;
- the LFW sample's 320 raw photos, unmasked and with one of focusface's masks drawn into each at its reference five
  points (`focusface.align.mask_photo`, the paper's five variants): photos with a face found, and on the unmasked
  ones the distance of the five points found to the reference points (mean, 95th percentile; the reference is
  dlib's 68-point model, so it favours dlib's own points);
- milliseconds per photo on one core (one onnxruntime / OpenCV thread), over all the photos above.
Writes `detectors.json` and `detectors.md` into --out.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


class _DlibCnn:
    "dlib's CNN (MMOD) face detector with the 68-point predictor in its boxes, behind the aligner interface."

    name, smallest_face = "dlib_cnn", 40

    def __init__(self):
        from focusface.align import DlibAligner, import_dlib

        dlib, models = import_dlib()
        self.cnn = dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
        self.shapes = DlibAligner(upsample=0)

    def detect(self, image):
        from focusface.align import Face, rank_faces
        from focusface.template import five_points

        faces = []
        for d in self.cnn(np.ascontiguousarray(image), 1):
            box = (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())
            shape = self.shapes.landmarks_in_box(image, box)
            faces.append(Face(box, float(d.confidence), five_points(shape), shape))
        return rank_faces(faces, image.shape)


def make(name):
    from focusface.align import DlibAligner, MtcnnAligner

    return dict(
        mtcnn=lambda: MtcnnAligner(threads=1),
        dlib=lambda: DlibAligner(upsample=1),
        dlib0=lambda: DlibAligner(upsample=0),
        dlib_cnn=_DlibCnn,
    )[name]()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--detectors", default="mtcnn,dlib,dlib0")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    from focusface.align import mask_photo, read_reference_landmarks
    from focusface.images import decode_image
    from focusface.maskspec import DEFAULT_SPEC, MaskSampler

    if not (os.environ.get("FOCUSFACE_LFW_SAMPLE") and os.environ.get("FOCUSFACE_RWMFD_SAMPLE")):
        raise SystemExit("set FOCUSFACE_LFW_SAMPLE and FOCUSFACE_RWMFD_SAMPLE to the two development samples")
    lfw, rwmfd = Path(os.environ["FOCUSFACE_LFW_SAMPLE"]), Path(os.environ["FOCUSFACE_RWMFD_SAMPLE"])
    photos = sorted(p for p in (rwmfd / "photos").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    reference = read_reference_landmarks(lfw)
    raw = {name: decode_image((lfw / "raw" / name).read_bytes(), name) for name in reference}
    sampler = MaskSampler(DEFAULT_SPEC, seed=0)
    masked = {name: mask_photo(image, reference[name], sampler(k)) for k, (name, image) in enumerate(raw.items())}
    street = [decode_image(p.read_bytes(), str(p)) for p in photos]
    results = {}
    for name in args.detectors.split(","):
        aligner = make(name)
        seconds, count = 0.0, 0

        def detect(image):
            nonlocal seconds, count
            start = time.perf_counter()
            faces = aligner.detect(image)
            seconds += time.perf_counter() - start
            count += 1
            return faces

        found_street = [detect(image) for image in street]
        errors, found_lfw = [], 0
        for photo_name, image in raw.items():
            faces = detect(image)
            if not faces:
                continue
            found_lfw += 1
            best = min(faces, key=lambda f: np.linalg.norm(f.landmarks - reference[photo_name], axis=1).mean())
            errors.append(np.linalg.norm(best.landmarks - reference[photo_name], axis=1))
        found_masked = sum(bool(detect(image)) for image in masked.values())
        errors = np.array(errors)
        results[name] = dict(
            rwmfd_photos=len(street),
            rwmfd_found=sum(bool(f) for f in found_street),
            rwmfd_faces=sum(len(f) for f in found_street),
            lfw_photos=len(raw),
            lfw_found=found_lfw,
            lfw_masked_found=found_masked,
            five_point_mean_px=float(errors.mean()),
            five_point_p95_px=float(np.percentile(errors, 95)),
            ms_per_photo=1000 * seconds / count,
        )
        r = results[name]
        print(
            f"{name:>8}: RWMFD {r['rwmfd_found']}/{r['rwmfd_photos']} photos ({r['rwmfd_faces']} faces); LFW "
            f"{r['lfw_found']}/{r['lfw_photos']} unmasked, {r['lfw_masked_found']}/{r['lfw_photos']} masked; five points "
            f"{r['five_point_mean_px']:.2f} px mean, {r['five_point_p95_px']:.2f} px p95; {r['ms_per_photo']:.1f} ms a photo",
            flush=True,
        )
    labels = dict(
        mtcnn="MTCNN (focusface.mtcnn, the default)",
        dlib="dlib HOG, upsampled once (the default before)",
        dlib0="dlib HOG, not upsampled",
        dlib_cnn="dlib CNN (MMOD), upsampled once",
    )
    lines = [
        "| detector | RWMFD photos with a face | faces found | LFW unmasked found | LFW masked found | five points: mean / p95 px | ms a photo (1 core) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {labels[name]} | {r['rwmfd_found']} of {r['rwmfd_photos']} ({100 * r['rwmfd_found'] / r['rwmfd_photos']:.1f}%) | "
            f"{r['rwmfd_faces']} | {r['lfw_found']} of {r['lfw_photos']} | {r['lfw_masked_found']} of {r['lfw_photos']} | "
            f"{r['five_point_mean_px']:.2f} / {r['five_point_p95_px']:.2f} | {r['ms_per_photo']:.1f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detectors.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "detectors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
