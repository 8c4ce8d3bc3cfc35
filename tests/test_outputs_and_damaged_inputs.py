"""Nothing lost, nothing half-written, no traceback: the commands pushed the way hurried users and damaged disks push
them. Each test is one of the failures found by trying (a destination that holds the source, a kill mid-write, a
damaged file...), and failed before the fix."""

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_edits import rehash
from command_line import CLI, run

from focusface.checkpoints import save_checkpoint
from focusface.datasets import write_insightface_folder
from focusface.evalsets import write_bin
from focusface.images import encode_image
from focusface.model import FocusFace


def refused(out, *expected):
    """Exit 2, one line naming the problem, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert all(e in out.stderr for e in expected), out.stderr
    assert len(out.stderr) < 2000, "messages quote bounded text"
    return out.stderr


def _faces(n, size=112, seed=0):
    rng = np.random.default_rng(seed)
    return [encode_image(np.full((size, size, 3), rng.integers(40, 220, 3), np.uint8)) for _ in range(n)]


@pytest.fixture
def dataset(tmp_path):
    """ow/data/train (a rec folder), ow/data/eval.bin and a notes file: a user's data folder."""
    data = tmp_path / "ow" / "data"
    write_insightface_folder(
        data / "train",
        [(i // 3, f) for i, f in enumerate(_faces(9))],
        num_images=9,
        names=["a", "b", "c"],
        image_size=(112, 112),
    )
    write_bin(data / "eval.bin", _faces(20, seed=1), [True, False] * 5)
    (data / "notes.txt").write_text("my notes")
    for i, face in enumerate(_faces(4)):
        (data / "faces" / f"p{i // 2}").mkdir(parents=True, exist_ok=True)
        (data / "faces" / f"p{i // 2}" / f"{i}.jpg").write_bytes(face)
    return data


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. a destination that contains the source
@pytest.mark.parametrize("command", ["mask", "pack"])
def test_a_destination_holding_the_source_is_refused_before_anything_is_touched(dataset, command):
    before = _snapshot(dataset)
    src = dataset / "train" if command == "mask" else dataset / "faces"
    refused(run(command, src, dataset, "--overwrite"), "contains the source", "--overwrite never replaces a source")
    refused(run(command, src, src / "inside"), "lies inside the source")
    assert _snapshot(dataset) == before


# 2. evaluate into an existing folder, and a bad second set
def test_evaluate_checks_every_input_first_and_writes_its_folder_whole(dataset, tmp_path):
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")
    out = tmp_path / "results"
    refused(
        run("evaluate", tmp_path / "m.pt", dataset / "eval.bin", dataset / "missing.bin", "--out", out, "--quiet"),
        "missing.bin",
    )
    assert not out.exists()
    assert (
        run("evaluate", tmp_path / "m.pt", dataset / "eval.bin", "--out", out, "--quiet", "--no-figures").returncode
        == 0
    )
    refused(run("evaluate", tmp_path / "m.pt", dataset / "eval.bin", "--out", out, "--quiet"), "--overwrite")
    (out / "scores" / "old_set.npz").write_bytes(b"left from another run")
    assert (
        run(
            "evaluate", tmp_path / "m.pt", dataset / "eval.bin", "--out", out, "--overwrite", "--quiet", "--no-figures"
        ).returncode
        == 0
    )
    assert sorted(p.name for p in (out / "scores").iterdir()) == ["eval.npz"], "a new run replaces the whole folder"


# 3. a .bin and its manifest are one unit
def test_a_masked_bin_does_not_replace_a_manifest_silently_and_records_its_hash(dataset, tmp_path):
    (tmp_path / "x.masks.jsonl").write_text("somebody's manifest")
    refused(run("mask", dataset / "eval.bin", tmp_path / "x.bin", "--quiet", "--workers", "0"), "x.masks.jsonl exists")
    assert not (tmp_path / "x.bin").exists()
    assert run("mask", dataset / "eval.bin", tmp_path / "y.bin", "--quiet", "--workers", "0").returncode == 0
    header = json.loads((tmp_path / "y.masks.jsonl").read_text().splitlines()[0])
    import hashlib

    assert header["output_sha256"] == hashlib.sha256((tmp_path / "y.bin").read_bytes()).hexdigest()


# 4. two runs to one destination
@pytest.mark.parametrize("kind", ["rec", "bin"])
def test_a_second_run_to_the_same_destination_stops_at_once(dataset, tmp_path, kind):
    if kind == "rec":
        write_insightface_folder(
            tmp_path / "big",
            [(i // 10, f) for i, f in enumerate(_faces(3000))],
            num_images=3000,
            names=[str(i) for i in range(300)],
            image_size=(112, 112),
        )
        src, dst = tmp_path / "big", tmp_path / "masked"
    else:
        write_bin(tmp_path / "big.bin", _faces(3000), [True, False] * 750)
        src, dst = tmp_path / "big.bin", tmp_path / "masked.bin"
    first = subprocess.Popen(
        CLI + ["mask", str(src), str(dst), "--quiet", "--workers", "1"], stderr=subprocess.PIPE, text=True
    )
    lock = dst.with_name(f".{dst.name if kind == 'rec' else 'masked.masks.jsonl'}.focusface.lock")
    deadline = time.time() + 60
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = run("mask", src, dst, "--quiet", "--workers", "1")
    first.wait()
    assert first.returncode == 0, first.stderr.read()
    refused(second, "being written by another focusface run")


# 5. synth checks its counts before it writes, and its root is whole or absent
def test_synth_validates_first(tmp_path):
    refused(
        run("synth", tmp_path / "demo", "--val-identities", "5", "--workers", "0", "--quiet"), "2 identities per fold"
    )
    assert not (tmp_path / "demo").exists()


# 6. a killed run's debris is removed by the next run; 7. outputs get the user's normal permissions
def test_a_killed_run_leaves_no_pool_folders_after_the_next_one(tmp_path):
    """The sockets folder of a killed run's worker pool (Python's pymp-*) is removed by the next run."""
    write_bin(tmp_path / "big.bin", _faces(6000), [True, False] * 1500)
    scratch = Path(tempfile.mkdtemp(prefix="ff", dir="/tmp"))  # short: unix socket paths live in it
    env = dict(os.environ, TMPDIR=str(scratch))
    victim = subprocess.Popen(
        CLI + ["mask", str(tmp_path / "big.bin"), str(tmp_path / "a.bin"), "--workers", "2", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not list(scratch.glob("ffmp-*")) and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed: give it more images"
    left = sorted(p.name for p in scratch.iterdir())
    assert f"ffmp-{victim.pid}" in left and not [n for n in left if n.startswith("pymp-")], left
    assert run("mask", tmp_path / "big.bin", tmp_path / "b.bin", "--workers", "2", "--quiet", env=env).returncode == 0
    left = sorted(p.name for p in scratch.iterdir())
    assert not [n for n in left if n.startswith(("ffmp-", "pymp-"))], left
    shutil.rmtree(scratch)


KILLABLE = {  # the command, and which of its arguments is the destination
    "mask": (lambda d: ["mask", d / "big.bin", d / "out.bin", "--workers", "1", "--quiet"], 2),
    "mask-rec": (lambda d: ["mask", d / "rec", d / "out", "--workers", "1", "--quiet"], 2),
    "pack": (lambda d: ["pack", d / "folder", d / "out"], 2),
    "synth": (
        lambda d: [
            "synth",
            d / "out",
            "--identities",
            "150",
            "--images-per-identity",
            "10",
            "--workers",
            "1",
            "--quiet",
        ],
        1,
    ),
    "evaluate": (
        lambda d: ["evaluate", d / "m.pt", d / "small.bin", "--out", d / "out", "--quiet", "--batch-size", "32"],
        4,
    ),
    "info": (lambda d: ["info", d / "rec", "--sheet", d / "out.png", "--samples", "64"], 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(KILLABLE))
def test_sigkill_at_a_random_moment_leaves_the_destination_whole_or_absent(tmp_path, command):
    write_bin(tmp_path / "big.bin", _faces(2000), [True, False] * 500)
    write_bin(tmp_path / "small.bin", _faces(240), [True, False] * 60)
    save_checkpoint(FocusFace("demo").eval(), tmp_path / "m.pt")
    write_insightface_folder(
        tmp_path / "rec",
        [(i // 10, f) for i, f in enumerate(_faces(1500))],
        num_images=1500,
        names=[str(i) for i in range(150)],
        image_size=(112, 112),
    )
    for i, face in enumerate(_faces(600)):
        (tmp_path / "folder" / f"p{i // 20}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / f"p{i // 20}" / f"{i}.jpg").write_bytes(face)
    make, where = KILLABLE[command]
    args = [str(a) for a in make(tmp_path)]
    started = time.time()
    assert run(*args).returncode == 0  # how long a whole run takes
    whole = time.time() - started
    out = Path(args[where])
    shutil.rmtree(out) if out.is_dir() else (out.unlink(), out.with_suffix(".masks.jsonl").unlink(missing_ok=True))
    victim = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.uniform(0.3, max(0.4, whole * 0.9)))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    if out.exists():  # whole: it finished before the kill, or was renamed into place just in time
        if command == "evaluate":
            assert json.loads((out / "metrics.json").read_text())["small"]
        elif command == "info":
            assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            for part in [out] if command != "synth" else [out / "train", out / "val.bin", out / "eval.bin"]:
                assert run("info", part, "--check", "--quiet").returncode == 0
    again = run(*args, "--overwrite") if out.exists() else run(*args)  # info --sheet too: it never replaces silently
    assert again.returncode == 0, again.stderr
    debris = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and "focusface" in p.name]
    assert not debris, f"temporaries left behind: {debris}"


def test_outputs_have_the_umask_mode(dataset, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")
    assert run("mask", dataset / "eval.bin", tmp_path / "m.bin", "--quiet", "--workers", "0").returncode == 0
    assert run("info", dataset / "train", "--sheet", tmp_path / "sheet.png").returncode == 0
    assert (
        run(
            "evaluate", tmp_path / "m.pt", dataset / "eval.bin", "--out", tmp_path / "r", "--quiet", "--no-figures"
        ).returncode
        == 0
    )
    for path in (
        tmp_path / "m.pt",
        tmp_path / "m.bin",
        tmp_path / "m.masks.jsonl",
        tmp_path / "sheet.png",
        tmp_path / "r" / "metrics.json",
    ):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o777 & ~umask


# 8. empty and degenerate files
def test_empty_and_degenerate_inputs_get_one_clear_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("train.rec", "train.idx"):
        (tmp_path / "empty" / name).write_bytes(b"")
    (tmp_path / "empty" / "property").write_text("1,112,112\n")
    refused(run("info", tmp_path / "empty"), "holds no images")
    refused(run("mask", tmp_path / "empty", tmp_path / "m", "--quiet"), "holds no images")
    (tmp_path / "zero.bin").write_bytes(pickle.dumps(([], [])))
    refused(run("info", tmp_path / "zero.bin"), "no pairs")
    depth = 200_000  # an issame list nested 200,000 deep, written opcode by opcode (pickle itself would recurse)
    bins = pickle.dumps(_faces(2), protocol=2)[2:-1]
    (tmp_path / "deep.bin").write_bytes(b"\x80\x02(" + bins + b"]" * depth + b"\x88" + b"a" * depth + b"t.")
    refused(run("info", tmp_path / "deep.bin"), "deep.bin")
    (tmp_path / "flag.bin").write_bytes(pickle.dumps((_faces(2), ["x" * 5_000_000])))
    refused(run("info", tmp_path / "flag.bin"), "issame_list[0] is str")


# 9. huge and damaged images
def test_huge_and_damaged_images(tmp_path):
    import struct

    from focusface.synthfaces import render_face

    png = bytearray(encode_image(np.zeros((8, 8, 3), np.uint8), ".png"))
    png[16:24] = struct.pack(">II", 12000, 12000)
    write_bin(tmp_path / "huge.bin", [bytes(png)] + _faces(19), [True] * 10)
    refused(
        run("mask", tmp_path / "huge.bin", tmp_path / "h.bin", "--quiet", "--workers", "0"), "12000x12000", "image 0"
    )
    faces = [encode_image(render_face(0, i, 0)) for i in range(20)]
    damaged = bytearray(faces[3])
    damaged[len(damaged) // 2 : len(damaged) // 2 + 2] = b"\xff\xd3"  # decodes, repaired
    faces[3] = bytes(damaged)
    write_bin(tmp_path / "damaged.bin", faces, [True, False] * 5)
    out = run("info", tmp_path / "damaged.bin", "--check", "--quiet")
    assert (
        out.returncode == 1 and "1 damaged" in out.stdout and "image 3" in out.stdout and "Corrupt JPEG" in out.stdout
    )
    out = run("mask", tmp_path / "damaged.bin", tmp_path / "c.bin", "--quiet", "--workers", "1")
    assert out.returncode == 0 and "1 source image(s) are damaged" in out.stderr and ": 3;" in out.stderr
    assert json.loads((tmp_path / "c.masks.jsonl").read_text().splitlines()[0])["damaged"] == [3]


# 10. pairs files
def test_pairs_files_that_are_not_text_or_leave_the_folder(tmp_path):
    (tmp_path / "lfw" / "Ann").mkdir(parents=True)
    for i in (1, 2):
        (tmp_path / "lfw" / "Ann" / f"Ann_{i:04d}.jpg").write_bytes(_faces(1)[0])
    (tmp_path / "lfw" / "pairs.txt").write_bytes("Ann 1 2\nJosé 1 2\n".encode("latin-1"))
    refused(run("info", tmp_path / "lfw"), "pairs.txt", "not UTF-8")
    (tmp_path / "lfw" / "pairs.txt").write_text("Ann 1 ../../etc 2\n")
    refused(run("info", tmp_path / "lfw"), "not a folder name")


# 11. checkpoints
@pytest.mark.parametrize(
    "damage,expected",
    [
        (lambda raw: raw["config"].update(colour=1), "colour"),
        (lambda raw: raw["config"].update(embedding_size=-3), "embedding_size=-3"),
        (
            lambda raw: raw["config"].update(embedding_size=10**9),
            "embedding_size=1000000000, but",
        ),  # not 25 TB allocated
        (lambda raw: raw["state_dict"].update({"head.mask_bn.bias": 5}), "not a tensor"),
        (lambda raw: raw.pop("config"), "needs a 'config'"),
    ],
)
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, damage, expected):
    save_checkpoint(FocusFace("tiny"), tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    damage(raw)
    if expected != "not a tensor":  # hashed again after the damage: the damage itself must be caught, not the hash
        rehash(raw)
    torch.save(raw, tmp_path / "bad.pt")
    refused(run("inspect", tmp_path / "bad.pt"), expected)


def test_flipped_bytes_inside_a_tensor_are_caught_by_the_hash(tmp_path):
    save_checkpoint(FocusFace("tiny"), tmp_path / "m.pt")
    data = bytearray((tmp_path / "m.pt").read_bytes())
    weight = FocusFace("tiny").state_dict()["head.identity_conv.weight"]
    start = data.find(
        torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]["head.identity_conv.weight"]
        .numpy()
        .tobytes()[:64]
    )
    assert start > 0 and weight.numel() > 64
    for i in range(start + 1000, start + 1064):
        data[i] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    refused(run("inspect", tmp_path / "flipped.pt"), "do not match the hash")


# 12. command-line values
def test_bad_command_line_values(tmp_path, dataset):
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")
    if not torch.cuda.is_available():
        refused(run("evaluate", tmp_path / "m.pt", "synthetic", "--device", "cuda"), "no CUDA device")
    refused(run("evaluate", tmp_path / "m.pt", "synthetic", "--device", "banana"), "--device 'banana' is not a device")
    assert run("evaluate", tmp_path / "m.pt", "synthetic", "--batch-size", "0").returncode == 2
    refused(run("evaluate", tmp_path / "m.pt", "synthetic:abc"), "non-negative integer")
    write_bin(tmp_path / "two.bin", _faces(4), [True, False])
    refused(run("evaluate", tmp_path / "m.pt", tmp_path / "two.bin"), "two.bin", "at least 10")
    assert (
        "must be a positive integer"
        in run("info", dataset / "train", "--sheet", tmp_path / "s.png", "--columns", "0").stderr
    )


# 13. manifests and specs
def test_manifests_of_other_data_and_ambiguous_specs(dataset, tmp_path):
    assert run("mask", dataset / "eval.bin", tmp_path / "a.bin", "--quiet", "--workers", "0").returncode == 0
    write_bin(tmp_path / "other.bin", _faces(20, seed=7), [True, False] * 5)
    refused(
        run("mask", tmp_path / "other.bin", tmp_path / "b.bin", "--replay", tmp_path / "a.masks.jsonl", "--quiet"),
        "made from another dataset",
    )
    lines = (tmp_path / "a.masks.jsonl").read_text().splitlines()
    entry = json.loads(lines[1])
    entry["top"] = float("nan")
    (tmp_path / "nan.jsonl").write_text("\n".join([lines[0], json.dumps(entry)] + lines[2:]) + "\n")
    refused(
        run("mask", dataset / "eval.bin", tmp_path / "c.bin", "--replay", tmp_path / "nan.jsonl", "--quiet"),
        "nan.jsonl:2",
        "top",
    )
    refused(run("mask", dataset / "eval.bin", tmp_path / "d.bin", "--code", "surgical-lightblue-red"), "two colours")
    refused(run("mask", dataset / "eval.bin", tmp_path / "d.bin", "--code", "cloth-stripes-dots"), "two textures")
