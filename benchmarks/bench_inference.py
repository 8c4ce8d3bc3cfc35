"""Using a trained model, on this machine: onnxruntime against PyTorch for r100, `focusface embed` on a rec of
10,000 aligned images (throughput and peak memory against a rec of 1,000), and photo alignment per image.

Run: python benchmarks/bench_inference.py [--images 10000] [--backbone r18] [--skip-onnx] [--skip-embed] [--photos 80]
The alignment line needs the LFW development sample (FOCUSFACE_LFW_SAMPLE) and dlib (focusface[align]).
"""

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def onnx_against_pytorch(backbone: str, batch: int, repeat: int = 3):
    import onnxruntime

    from focusface.inference import InferenceModel, export_onnx
    from focusface.model import FocusFace

    model = FocusFace(backbone).eval()
    with tempfile.TemporaryDirectory() as d:
        info = export_onnx(model, Path(d) / "m.onnx")
        session = onnxruntime.InferenceSession(str(Path(d) / "m.onnx"), providers=["CPUExecutionProvider"])
        x = torch.rand(batch, 3, 112, 112) * 2 - 1
        wrapper = InferenceModel(model).eval()

        def rate(fn):
            fn()  # warm-up
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return batch / sorted(times)[len(times) // 2]

        with torch.inference_mode():
            torch_rate = rate(lambda: wrapper(x))
        ort_rate = rate(lambda: session.run(None, {"faces": x.numpy()}))
        e, _ = session.run(None, {"faces": x.numpy()})
        with torch.inference_mode():
            ref = wrapper(x)[0].numpy()
    print(
        f"{backbone} batch {batch}: PyTorch {torch_rate:.1f} images/s, onnxruntime {ort_rate:.1f} images/s "
        f"(median of {repeat}); export check max |diff| {max(info['max_abs_diff'].values()):.1e}, "
        f"on this batch {np.abs(e - ref).max():.1e}; file {info['bytes'] / 1e6:.0f} MB"
    )


def make_rec(root: Path, n: int):
    from focusface.datasets import write_insightface_folder
    from focusface.images import encode_image

    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(50)]
    write_insightface_folder(
        root,
        ((i * 100 // n, images[i % 50]) for i in range(n)),
        num_images=n,
        names=[f"id{i}" for i in range(100)],
        image_size=(112, 112),
    )


def embed_run(checkpoint: Path, rec: Path, out: Path, batch: int):
    "Wall time and peak RSS of `focusface embed` in a child process (its own memory only)."
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.cli",
            "embed",
            str(checkpoint),
            str(rec),
            str(out),
            "--batch-size",
            str(batch),
            "--no-flip",
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    bar = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "embedding" in line]
    return wall, max(peak, before) / 1024, proc.stdout.strip(), bar[-1].strip() if bar else "(no progress bar)"


def embedding(backbone: str, images: int, batch: int):
    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        save_checkpoint(FocusFace(backbone).eval(), d / "model.pt")
        for n in (images // 10, images):
            make_rec(d / f"rec{n}", n)
            wall, peak_mb, said, bar = embed_run(d / "model.pt", d / f"rec{n}", d / f"e{n}.npz", batch)
            print(
                f"embed {n:>6} images ({backbone}, batch {batch}, no flip): {wall:.1f} s, {n / wall:.1f} images/s, "
                f"peak RSS of the process {peak_mb:.0f} MB; output {os.path.getsize(d / f'e{n}.npz') / 1e6:.1f} MB"
            )
            print(f"    {said}")
            print(f"    last progress line: {bar}")


def alignment(limit: int = 80):
    from focusface.align import DlibAligner, align_face
    from focusface.images import decode_image

    sample = Path(os.environ.get("FOCUSFACE_LFW_SAMPLE", "/nonexistent"))
    if not (sample / "raw").is_dir():
        print("alignment: skipped (no LFW development sample; set FOCUSFACE_LFW_SAMPLE)")
        return
    photos = sorted((sample / "raw").glob("*/*.jpg"))[:limit]
    raws = [decode_image(p.read_bytes()) for p in photos]
    for upsample in (0, 1):
        aligner = DlibAligner(upsample=upsample)
        start = time.perf_counter()
        for raw in raws:
            faces = aligner.detect(raw)
            if faces:
                align_face(raw, faces[0].landmarks)
        per = (time.perf_counter() - start) / len(raws) * 1000
        print(
            f"align a 250x250 photo (HOG detection upsampled {upsample}x + 68 landmarks + warp): {per:.1f} ms per photo"
        )
    from focusface.landmarks import FACE_BOX, check_landmarks
    from focusface.maskfit import fit_mask_params
    from focusface.masks import apply_mask
    from focusface.maskspec import MaskSampler

    aligner = DlibAligner()
    files = sorted((sample / "aligned").glob("*/*.jpg"))[:limit]
    crops = [decode_image(p.read_bytes()) for p in files]
    start = time.perf_counter()
    shapes = [aligner.landmarks_in_box(crop, FACE_BOX) for crop in crops]
    landmarks_ms = (time.perf_counter() - start) / len(crops) * 1000
    sampler = MaskSampler()
    start = time.perf_counter()
    for key, (crop, shape) in enumerate(zip(crops, shapes)):
        params = sampler(key)
        apply_mask(crop, params if check_landmarks(shape) else fit_mask_params(params, shape))
    fit_ms = (time.perf_counter() - start) / len(crops) * 1000
    print(
        f"68 landmarks on an aligned crop in a fixed box (no detection): {landmarks_ms:.2f} ms per face; "
        f"check + fit + draw the mask: {fit_ms:.2f} ms; together {landmarks_ms + fit_ms:.2f} ms per face"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--backbone", default="r18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--photos", type=int, default=80, help="LFW sample photos and crops timed for alignment")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    if not args.skip_onnx:
        onnx_against_pytorch("r100", batch=16)
    if not args.skip_embed:
        embedding(args.backbone, args.images, args.batch)
    alignment(args.photos)


if __name__ == "__main__":
    main()
