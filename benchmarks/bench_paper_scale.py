"""MS1M-ArcFace's shape without its data: what opening, sampling, holding out, landmarks and checkpoints cost at
5,822,653 faces of 85,742 identities, with focusface's real classes.

Run: python benchmarks/bench_paper_scale.py [--images 5822653] [--identities 85742] [--workers 2] [--dir DIR]
It writes an insightface folder of that shape (header record, one image record per face, one identity record per
identity; every record its own bytes, the JPEGs a few dozen rendered faces at --quality, about MS1M's size per face),
then measures, each in a fresh process (peak memory is that process's growth over its start):
  open       InsightFaceDataset + PairedFaces (training keys, holdout excluded) + PairBatchSampler + an epoch's order,
             and the trainer's label check (`check_labels`): seconds and peak memory
  holdout    choosing 500 held-out identities (a tenth of smaller sets) and their validation pairs (`holdout_pairs`)
  workers    memory of each DataLoader worker after some batches (private pages: what copy-on-write duplicated), and the
             loader's pairs/s (decode + mask + flip) per worker
  workers_landmarks  the same with masks fitted to a landmarks table of every face (the one `landmarks` writes)
  landmarks  a landmarks table of every face (`write_npz` as `focusface landmarks` writes it): size, write and open
             time, memory; one mask fitted per lookup
  checkpoint r100 with the 85,742-class head and its SGD momentum: `save_training_state` and a resume's read
The folder is deleted at the end unless --dir is given (then it is kept and reused).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MS1M_IMAGES, MS1M_IDENTITIES = 5_822_653, 85_742


def rss_mib() -> float:
    "This process's resident memory now, MiB."
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _held(identities: int) -> int:
    return min(500, identities // 10)  # the paper setting holds out 500


def build(root: Path, images: int, identities: int, quality: int) -> dict:
    "An insightface folder of `images` faces over `identities` classes (MS1M's header layout)."
    from focusface.images import encode_image
    from focusface.recordio import RecordWriter, pack_record
    from focusface.synthfaces import render_face

    rng = np.random.default_rng(0)
    counts = np.full(identities, images // identities)
    counts[: images % identities] += 1
    half = int(counts.min()) // 2 - 1
    shift = rng.integers(-half, half + 1, identities)  # uneven, as MS1M's are, the same total, two or more each
    counts += shift - np.roll(shift, 1)
    jpegs = [encode_image(render_face(0, i, 0), ".jpg", quality) for i in range(48)]
    first = np.concatenate([[1], 1 + np.cumsum(counts)])  # image keys of identity c: [first[c], first[c + 1])
    root.mkdir(parents=True, exist_ok=True)
    (root / "property").write_text(f"{identities},112,112\n")
    t = time.perf_counter()
    with RecordWriter(root / "train.rec") as w:
        w.write(0, pack_record([float(images + 1), float(images + 1 + identities)]))
        key = 1
        for c in range(identities):
            payloads = [pack_record(float(c), jpegs[(c + j) % len(jpegs)], id=key + j) for j in range(int(counts[c]))]
            for j, p in enumerate(payloads):
                w.write(key + j, p)
            key += int(counts[c])
        for c in range(identities):
            w.write(images + 1 + c, pack_record([float(first[c]), float(first[c + 1])]))
    return dict(
        images=images,
        identities=identities,
        write_s=round(time.perf_counter() - t, 1),
        rec_gib=round((root / "train.rec").stat().st_size / 2**30, 2),
        idx_mib=round((root / "train.idx").stat().st_size / 2**20, 1),
        jpeg_bytes_mean=int(np.mean([len(j) for j in jpegs])),
    )


def measure_open(root: Path, batch: int) -> dict:
    from focusface.datasets import InsightFaceDataset
    from focusface.loaders import PairBatchSampler, PairedFaces, check_labels, holdout_pairs  # noqa: F401 (import cost outside)

    base = rss_mib()
    t = time.perf_counter()
    faces = InsightFaceDataset(root)
    t_faces = time.perf_counter() - t
    t = time.perf_counter()
    ds = PairedFaces(root, exclude_classes=range(_held(faces.num_classes)))
    t_paired = time.perf_counter() - t
    t = time.perf_counter()
    check_labels(ds.faces)
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    sampler = PairBatchSampler(len(ds), batch, epochs=24)
    order = sampler.order(0)
    first = next(iter(sampler))
    t_sampler = time.perf_counter() - t
    return dict(
        open_rec_s=round(t_faces, 2),
        paired_dataset_s=round(t_paired, 2),
        label_check_s=round(t_check, 2),
        sampler_and_epoch_order_s=round(t_sampler, 2),
        training_images=len(ds),
        steps_per_epoch=sampler.steps_per_epoch,
        peak_mib_over_start=round(peak_mib() - base, 0),
        first_batch=len(first),
        order=len(order),
        faces_index_bytes=int(faces.records.keys.nbytes + faces.records.offsets.nbytes + faces.records._ends.nbytes),
        training_keys_bytes=int(ds.keys.nbytes),
    )


def measure_holdout(root: Path) -> dict:
    from focusface.loaders import holdout_pairs

    base = rss_mib()
    from focusface.datasets import read_property

    t = time.perf_counter()
    held, pairs = holdout_pairs(root, identities=_held(read_property(root)[0]), pairs_per_fold=300)
    return dict(
        holdout_s=round(time.perf_counter() - t, 2),
        held_identities=len(held),
        pairs=len(pairs.issame),
        peak_mib_over_start=round(peak_mib() - base, 0),
    )


def _smaps(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":")[0], line.split()[1]
        if name in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
            out[name] = int(value) / 1024
    return out


def measure_workers(root: Path, batch: int, workers: int, batches: int, landmarks: bool = False) -> dict:
    from focusface.datasets import read_property
    from focusface.loaders import PairBatchSampler, PairedFaces, make_loader

    ds = PairedFaces(
        root,
        exclude_classes=range(_held(read_property(root)[0])),
        landmarks=root / "landmarks.npz" if landmarks else None,
    )
    sampler = PairBatchSampler(len(ds), batch, epochs=24)
    loader = make_loader(ds, sampler, workers=workers)
    it = iter(loader)
    for _ in range(2 * workers):
        next(it)  # started and warm
    t, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(it)["label"])
    rate = seen / (time.perf_counter() - t)
    main = _smaps(os.getpid())
    per_worker = [_smaps(w.pid) for w in it._workers]
    return dict(
        workers=workers,
        batch=batch,
        landmarks=landmarks,
        pairs_per_s=round(rate, 1),
        pairs_per_s_per_worker=round(rate / workers, 1),
        main_rss_mib=round(main["Rss"], 0),
        worker_rss_mib=[round(w["Rss"], 0) for w in per_worker],
        worker_private_mib=[round(w["Private_Clean"] + w["Private_Dirty"], 0) for w in per_worker],
        worker_pss_mib=[round(w["Pss"], 0) for w in per_worker],
    )


def measure_landmarks(root: Path, images: int) -> dict:
    from focusface.datasets import source_fingerprint
    from focusface.files import write_npz
    from focusface.landmarks import synthetic_shape68
    from focusface.maskfit import fitted_sampler
    from focusface.maskspec import DEFAULT_SPEC, MaskSampler

    path = root / "landmarks.npz"
    base = rss_mib()
    t = time.perf_counter()
    shape = synthetic_shape68().astype(np.float32)
    landmarks = np.broadcast_to(shape, (images, 68, 2))
    ok = np.ones(images, bool)
    ok[::50] = False
    notes = np.where(ok, "", "no face found in the crop")
    write_npz(
        path,
        dict(
            keys=np.arange(1, images + 1, dtype=np.int64),
            landmarks=landmarks,
            ok=ok,
            notes=notes,
            image_size=np.int64(112),
            fingerprint=np.str_(source_fingerprint(root)),
        ),
        sources=(),
        kind="landmarks file",
    )
    t_write = time.perf_counter() - t
    del landmarks, notes, ok
    write_peak = peak_mib() - base
    base = rss_mib()
    t = time.perf_counter()
    sampler = fitted_sampler(MaskSampler(DEFAULT_SPEC, 0), path, source=root)
    t_open = time.perf_counter() - t
    opened = rss_mib() - base
    keys = np.random.default_rng(0).integers(1, images + 1, 2000)
    t = time.perf_counter()
    for k in keys:
        sampler(int(k), 0)
    per = (time.perf_counter() - t) / len(keys)
    table = sampler.table
    return dict(
        file_gib=round(path.stat().st_size / 2**30, 2),
        write_s=round(t_write, 1),
        write_peak_mib_over_start=round(write_peak, 0),
        open_s=round(t_open, 1),
        resident_after_open_mib=round(opened, 0),
        notes_dtype=str(table.notes.dtype),
        notes_mib=round(table.notes.nbytes / 2**20, 0),
        landmarks_mib=round(table.landmarks.nbytes / 2**20, 0),
        fitted_lookup_ms=round(per * 1000, 3),
    )


def measure_checkpoint(root: Path, classes: int) -> dict:
    import torch

    from focusface.model import FocusFace
    from focusface.runfolder import fuse_sgd, load_training_state, save_training_state
    from focusface.train import _fresh_position
    from focusface.trainconfig import load_config

    config = load_config(train=str(root), backbone="r100", out=str(root / "run"))
    model = FocusFace("r100", classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
    fuse_sgd(optimizer)  # the momentum buffers a running trainer holds
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = root / "checkpoint.pt"
    t = time.perf_counter()
    save_training_state(
        path,
        model,
        optimizer=optimizer,
        scaler=scaler,
        config=config,
        position=_fresh_position(),
        rng=[dict(cpu=torch.get_rng_state(), cuda=None)],
        data=dict(train="paper-scale"),
    )
    t_save = time.perf_counter() - t
    t = time.perf_counter()
    state = load_training_state(path, config)
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    t_load = time.perf_counter() - t
    head = model.identity_classifier.weight
    return dict(
        classes=classes,
        parameters_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        head_parameters_m=round(head.numel() / 1e6, 1),
        file_mib=round(path.stat().st_size / 2**20, 0),
        save_s=round(t_save, 1),
        resume_read_s=round(t_load, 1),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=MS1M_IMAGES)
    ap.add_argument("--identities", type=int, default=MS1M_IDENTITIES)
    ap.add_argument("--batch", type=int, default=480, help="pairs per step (the authors')")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=10, help="batches timed through the loader")
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality of the shared faces")
    ap.add_argument("--dir", help="keep the folder here (and reuse it if it is there)")
    ap.add_argument(
        "--only", nargs="+", default=["open", "holdout", "workers", "landmarks", "workers_landmarks", "checkpoint"]
    )
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # the child process: one measurement
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        root = Path(args.root)
        result = dict(
            open=lambda: measure_open(root, args.batch),
            holdout=lambda: measure_holdout(root),
            workers=lambda: measure_workers(root, args.batch, args.workers, args.batches),
            workers_landmarks=lambda: measure_workers(root, args.batch, args.workers, args.batches, True),
            landmarks=lambda: measure_landmarks(root, args.images),
            checkpoint=lambda: measure_checkpoint(root, args.identities),
        )[args.measure]()
        print(json.dumps(result))
        return
    keep = args.dir is not None
    base = Path(args.dir) if keep else Path(tempfile.mkdtemp(prefix="paper-scale-"))
    root = base / "train"
    try:
        if not (root / "train.idx").is_file():
            print(json.dumps(dict(build=build(root, args.images, args.identities, args.quality))), flush=True)
        for name in args.only:
            cmd = [
                sys.executable,
                __file__,
                "--measure",
                name,
                "--root",
                str(root),
                "--images",
                str(args.images),
                "--identities",
                str(args.identities),
                "--batch",
                str(args.batch),
                "--workers",
                str(args.workers),
                "--batches",
                str(args.batches),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(json.dumps({name: dict(error=out.stderr.strip().splitlines()[-1:])}), flush=True)
            else:
                print(json.dumps({name: json.loads(out.stdout.strip().splitlines()[-1])}), flush=True)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
