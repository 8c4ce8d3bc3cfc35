"""Is the masked problem real on the synthetic identities?

Trains the tiny backbone with an ArcFace head on *unmasked* synthetic faces for a few CPU minutes (a plain loop,
not the focusface trainer), then measures 10-fold verification accuracy on held-out identities: both faces
unmasked (U-U), and the second face of every pair masked (U-M, the authors' five mask variants).
Also measures face generation speed (faces/s) with 1 and 2 worker processes.

Run: python benchmarks/bench_synth_masked_gap.py [--identities N] [--images N] [--minutes M]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from focusface.datasets import InsightFaceDataset
from focusface.evalsets import read_bin
from focusface.images import decode_image
from focusface.masks import apply_mask
from focusface.maskspec import DEFAULT_SPEC, MaskSampler
from focusface.metrics import kfold_accuracy
from focusface.model import FocusFace, to_model_input
from focusface.synthdata import make_pairs, make_training_set


def _render_chunk(job):
    from focusface.synthfaces import render_faces

    seed, lo, hi = job
    faces = render_faces(seed, np.arange(lo, hi) // 20, np.arange(lo, hi) % 20)
    return int(faces[:, 56, 56].sum())  # a checksum: the faces themselves stay in the worker


def generation_speed(folder, n=20000):
    import multiprocessing as mp

    import cv2

    from focusface.synthfaces import render_faces

    cv2.setNumThreads(1)
    start = time.perf_counter()
    render_faces(1, np.arange(4000) // 20, np.arange(4000) % 20)
    print(f"rendering (RGB uint8 arrays), one process: {4000 / (time.perf_counter() - start):,.0f} faces/s")
    jobs = [(1, lo, min(lo + 1000, n)) for lo in range(0, n, 1000)]
    with mp.get_context("forkserver").Pool(2) as pool:
        pool.map(_render_chunk, jobs[:2])  # start-up excluded
        start = time.perf_counter()
        pool.map(_render_chunk, jobs)
        print(f"rendering (RGB uint8 arrays), 2 processes: {n / (time.perf_counter() - start):,.0f} faces/s")
    for workers in (1, 2):
        start = time.perf_counter()
        make_training_set(
            folder / f"speed{workers}", seed=1, identities=n // 20, images_per_identity=20, workers=workers
        )
        rate = n / (time.perf_counter() - start)
        print(
            f"make_training_set end to end ({n} faces: render + JPEG + rec writing + pool start-up), "
            f"{workers} worker process(es): {rate:,.0f} faces/s"
        )


def embed_all(model, images, batch=256):
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out.append(model.embed(to_model_input(images[i : i + batch]), flip=True)[0])
    return torch.cat(out).numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-only", action="store_true", help="only measure generation speed")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        generation_speed(d)
        if args.speed_only:
            return
        make_training_set(
            d / "train", seed=args.seed, identities=args.identities, images_per_identity=args.images, workers=2
        )
        make_pairs(
            d / "eval.bin",
            seed=args.seed,
            first_identity=args.identities + 1000,
            identities=200,
            pairs_per_fold=60,
            workers=2,
        )
        train = InsightFaceDataset(d / "train")
        images = np.stack([train[i][0] for i in range(len(train))])
        labels = torch.as_tensor(train.labels())
        pairs = read_bin(d / "eval.bin")
        eval_images = np.stack([decode_image(b) for b in pairs.images])
    sampler = MaskSampler(DEFAULT_SPEC, seed=0)
    masked_eval = eval_images.copy()
    for k in range(1, len(masked_eval), 2):
        masked_eval[k] = apply_mask(eval_images[k], sampler(k))

    model = FocusFace("tiny", num_classes=args.identities, margin="arcface", margin_s=32.0, margin_m=0.4)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batch, steps_done, start = 64, 0, time.perf_counter()
    budget = args.minutes * 60
    rng = np.random.default_rng(args.seed)
    epoch = 0
    while time.perf_counter() - start < budget:
        model.train()
        order = rng.permutation(len(images))
        for i in range(0, len(order) - batch + 1, batch):
            frac = min((time.perf_counter() - start) / budget, 1.0)
            for group in optimiser.param_groups:
                group["lr"] = 0.1 * 0.5 * (1 + np.cos(np.pi * frac))  # cosine decay over the budget
            idx = order[i : i + batch]
            x = to_model_input(images[idx])
            flip = torch.rand(len(idx)) < 0.5
            x[flip] = x[flip].flip(3)
            out = model(x)
            loss = F.cross_entropy(model.identity_classifier(out.identity_embedding, labels[idx]), labels[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps_done += 1
            if time.perf_counter() - start >= budget:
                break
        epoch += 1
        print(f"epoch {epoch}: {steps_done} steps, loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s")
    model.eval()
    e = embed_all(model, eval_images)
    em = embed_all(model, masked_eval)
    uu = kfold_accuracy((e[0::2] * e[1::2]).sum(1), pairs.issame)
    um = kfold_accuracy((e[0::2] * em[1::2]).sum(1), pairs.issame)
    print(
        f"trained {steps_done} steps ({epoch} epochs over {len(images)} unmasked faces of {args.identities} identities) "
        f"in {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} threads"
    )
    print(
        f"held-out identities, 600 pairs, 10-fold accuracy: U-U {uu['accuracy'] * 100:.2f}% (+-{uu['std'] * 100:.2f}), "
        f"U-M {um['accuracy'] * 100:.2f}% (+-{um['std'] * 100:.2f}); gap {100 * (uu['accuracy'] - um['accuracy']):.2f} points"
    )


if __name__ == "__main__":
    main()
