"""Guarantee 1, nothing lost by design: `--overwrite` replaces only an output of the same kind that focusface wrote,
and never before the new output is ready.

Every command that writes is tried on destinations it must not replace (a git clone, a finished training run, a
user's own file of the same suffix) and on its own earlier output, which it must replace. A training run that
replaces another keeps the old one until its own first checkpoint. Each case failed before its fix (the issue that
asked for these rules lists them)."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from command_line import CLI, refused, run, train_args

from focusface.checkpoints import save_checkpoint
from focusface.evalsets import write_bin
from focusface.files import output_kind
from focusface.images import encode_image
from focusface.model import FocusFace
from focusface.synthdata import make_training_set
from focusface.synthfaces import render_faces


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    "Faces (a folder by identity), a training rec, an evaluation .bin, a checkpoint and a finished training run."
    d = tmp_path_factory.mktemp("inputs")
    faces = render_faces(3, np.arange(12) // 3, np.arange(12) % 3)
    for i, face in enumerate(faces):
        (d / "faces" / f"p{i // 3}").mkdir(parents=True, exist_ok=True)
        (d / "faces" / f"p{i // 3}" / f"p{i // 3}_{i % 3 + 1:04d}.jpg").write_bytes(encode_image(face))
    make_training_set(d / "train", identities=8, images_per_identity=4, workers=0)
    write_bin(d / "eval.bin", [encode_image(f) for f in faces[:4]] * 5, [True, False] * 5)
    save_checkpoint(FocusFace("tiny").eval(), d / "m.pt")
    done = run("train", *train_args(d / "train", d / "run", max_steps=2))
    assert done.returncode == 0, done.stderr
    return d


def git_clone(path: Path) -> Path:
    (path / ".git").mkdir(parents=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "README.md").write_text("my project\n")
    return path


def snapshot(path: Path) -> dict:
    "Every file under `path` (or `path` itself) with its bytes."
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# command: (its arguments with the destination as DST, the kind of output it writes, whether DST is a file)
WRITERS = {
    "pack": (lambda d: ["pack", d / "faces", "DST"], "insightface folder", None),
    "mask a folder": (lambda d: ["mask", d / "faces", "DST", "--workers", "0", "--quiet"], "masked copy", None),
    "mask a .bin": (lambda d: ["mask", d / "eval.bin", "DST", "--workers", "0", "--quiet"], "masked .bin", ".bin"),
    "synth": (
        lambda d: (
            ["synth", "DST", *"--identities 4 --images-per-identity 2 --val-identities 20".split()]
            + [*"--eval-identities 20 --eval-pairs-per-fold 2 --workers 0 --quiet".split()]
        ),
        "synthetic dataset",
        None,
    ),
    "align": (lambda d: ["align", d / "faces", "DST", "--workers", "0", "--quiet"], "aligned folder", None),
    "evaluate": (
        lambda d: ["evaluate", d / "m.pt", d / "eval.bin", "--out", "DST", "--no-figures", "--quiet"],
        "evaluation",
        None,
    ),
    "embed": (lambda d: ["embed", d / "m.pt", d / "faces", "DST", "--quiet"], "embeddings file", ".npz"),
    "export": (lambda d: ["export", d / "m.pt", "DST"], "ONNX model", ".onnx"),
    "info --sheet": (lambda d: ["info", d / "eval.bin", "--sheet", "DST"], "contact sheet", ".png"),
    "landmarks": (lambda d: ["landmarks", d / "faces", "DST", "--quiet"], "landmarks file", ".npz"),
    "train": (lambda d: ["train", *train_args(d / "train", "DST", max_steps=1)], "training run", None),
}


def command(inputs, name, dst) -> list:
    return [str(a).replace("DST", str(dst)) for a in WRITERS[name][0](inputs)]


def needs(name):
    if name == "landmarks":
        pytest.importorskip("dlib")
    if name == "export":
        pytest.importorskip("onnxruntime")


def foreign(tmp_path, suffix) -> list[Path]:
    "Destinations focusface did not write: a git clone, and for a file output a user's file of the same suffix."
    made = [git_clone(tmp_path / f"clone{suffix or ''}")]  # a folder named as the output would be
    if suffix:
        mine = tmp_path / f"mine{suffix}"
        mine.write_bytes(b"\x89PNG\r\n\x1a\n my drawing" if suffix == ".png" else b"PK\x03\x04 my own file")
        made.append(mine)
    return made


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_overwrite_never_replaces_what_focusface_did_not_write(inputs, tmp_path, name):
    """`pack faces REPO --overwrite` replaced a whole git clone, `info --sheet` a user's picture; every writer refused
    such a destination only without --overwrite."""
    needs(name)
    _, kind, suffix = WRITERS[name]
    for dst in foreign(tmp_path, suffix):
        before = snapshot(dst)
        refused(run(*command(inputs, name, dst), "--overwrite"), str(dst), "focusface did not write")
        assert snapshot(dst) == before, f"{name} changed {dst}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(WRITERS) - {"train"}))
def test_overwrite_never_replaces_a_training_run(inputs, tmp_path, name):
    """`evaluate model.pt set.bin --out RUN --overwrite` replaced a finished training run."""
    needs(name)
    run_copy = tmp_path / "run"
    subprocess.run(["cp", "-a", str(inputs / "run"), str(run_copy)], check=True)
    before = snapshot(run_copy)
    target = run_copy / "model.pt" if WRITERS[name][2] else run_copy
    refused(run(*command(inputs, name, target), "--overwrite"), str(target))
    assert snapshot(run_copy) == before


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_overwrite_replaces_an_output_of_its_own_kind(inputs, tmp_path, name):
    """The rule keeps `--overwrite` useful: a command's own earlier output is replaced, and carries its kind."""
    needs(name)
    _, kind, suffix = WRITERS[name]
    dst = tmp_path / f"out{suffix or ''}"
    first = run(*command(inputs, name, dst))
    assert first.returncode == 0, first.stderr[-2000:]
    assert output_kind(dst) == kind
    refused(run(*command(inputs, name, dst)), "exists" if name != "train" else "holds another run")
    again = run(*command(inputs, name, dst), "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert output_kind(dst) == kind


def test_a_checkpoint_is_never_replaced_by_a_contact_sheet(inputs, tmp_path):
    """`info X --sheet model.pt --overwrite` replaced a checkpoint with a PNG."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes((inputs / "m.pt").read_bytes())
    refused(run("info", inputs / "eval.bin", "--sheet", checkpoint, "--overwrite"), "model.pt", "not a contact sheet")
    assert checkpoint.read_bytes() == (inputs / "m.pt").read_bytes()


def test_a_typo_in_a_replacing_run_costs_nothing(inputs, tmp_path):
    """`train ... train=nonexistent --overwrite` deleted the finished run (model.pt, best.pt, checkpoint.pt) before it
    found that the data was missing: every check now runs before anything is moved."""
    finished = tmp_path / "run"
    subprocess.run(["cp", "-a", str(inputs / "run"), str(finished)], check=True)
    before = snapshot(finished)
    for typo in (
        dict(train=tmp_path / "nonexistent"),
        dict(val=tmp_path / "missing.bin"),
        dict(init=tmp_path / "x.pt"),
    ):
        args = train_args(inputs / "train", finished, max_steps=1, **{k: str(v) for k, v in typo.items()})
        refused(run("train", *args, "--overwrite"), next(iter(typo.values())).name)
        assert snapshot(finished) == before, typo
    refused(run("train", *train_args(inputs / "train", finished, precision="fp16"), "--overwrite"), "CUDA")
    assert snapshot(finished) == before


def test_a_replacement_that_fails_before_its_first_checkpoint_puts_the_old_run_back(inputs, tmp_path):
    """A replacing run whose loss is not finite at its first step stops; the run it was to replace is back as it was."""
    finished = tmp_path / "run"
    subprocess.run(["cp", "-a", str(inputs / "run"), str(finished)], check=True)
    before = snapshot(finished)
    out = run("train", *train_args(inputs / "train", finished, lr="1e30", max_steps=3), "--overwrite")
    assert out.returncode == 2 and "not finite" in out.stderr, out.stderr
    assert snapshot(finished) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no run left aside, no temporary"


@pytest.mark.slow
def test_a_replacement_killed_before_its_first_checkpoint_leaves_the_old_run_whole(inputs, tmp_path):
    """SIGKILL between the start of a replacing run and its first checkpoint: the old run is whole (aside), and the
    next run in that folder puts it back before anything else."""
    finished = tmp_path / "run"
    subprocess.run(["cp", "-a", str(inputs / "run"), str(finished)], check=True)
    before = snapshot(finished)
    make_training_set(tmp_path / "long", identities=8, images_per_identity=60, workers=0)  # 60 steps an epoch
    args = train_args(tmp_path / "long", finished, epochs=2, checkpoint_every=100000, workers=0)
    victim = subprocess.Popen(CLI + ["train", *args, "--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (finished / "train.log").is_file() or "step 3/" not in (finished / "train.log").read_text():
        assert victim.poll() is None and time.time() < deadline, victim.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    aside = tmp_path / ".run.focusface-previous"
    assert not (finished / "checkpoint.pt").exists(), sorted(p.name for p in finished.iterdir())
    assert snapshot(aside) == before, "the old run waits aside, whole"
    out = run("train", *train_args(inputs / "train", finished, max_steps=1))  # without --overwrite: the old run is back
    assert out.returncode == 2 and "put back the run" in out.stderr and "holds another run" in out.stderr, out.stderr
    assert snapshot(finished) == before and sorted(p.name for p in tmp_path.iterdir()) == ["long", "run"]


def test_the_first_checkpoint_of_a_replacement_settles_it(inputs, tmp_path):
    finished = tmp_path / "run"
    subprocess.run(["cp", "-a", str(inputs / "run"), str(finished)], check=True)
    out = run("train", *train_args(inputs / "train", finished, max_steps=2, seed=5), "--overwrite")
    assert out.returncode == 0, out.stderr
    assert json.loads((finished / "summary.json").read_text())["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and output_kind(finished) == "training run"


@pytest.mark.parametrize("dst", [".", "..", "/"])
def test_the_folder_a_command_runs_in_is_never_a_destination(inputs, tmp_path, dst):
    """`pack SRC .` said "PosixPath('.') has an empty name"; `align SRC ..` said "Device or resource busy"."""
    out = run("pack", inputs / "faces", dst, "--overwrite", cwd=tmp_path)
    refused(out, "the folder this command runs in")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_destination_that_is_a_link_is_refused(inputs, tmp_path):
    """`out=` a symbolic link to a finished run trained through the link into the run."""
    (tmp_path / "link").symlink_to(inputs / "run")
    before = snapshot(inputs / "run")
    refused(run("train", *train_args(inputs / "train", tmp_path / "link"), "--overwrite"), "symbolic link")
    refused(run("evaluate", inputs / "m.pt", inputs / "eval.bin", "--out", tmp_path / "link", "--overwrite"), "link")
    assert snapshot(inputs / "run") == before


@pytest.fixture
def read_only(tmpfs):
    "A read-only file system."
    return tmpfs("size=1m,ro")


@pytest.mark.parametrize("name", ["evaluate", "pack", "embed", "mask a .bin", "train", "synth"])
def test_a_read_only_destination_is_refused_before_any_work(inputs, read_only, name):
    """Read-only destinations named a hidden temporary path and gave no advice; `evaluate` failed only after the
    whole computation."""
    needs(name)
    dst = read_only / ("out" + (WRITERS[name][2] or ""))
    started = time.time()
    refused(run(*command(inputs, name, dst)), str(dst), "cannot be written", "does not let this process write")
    assert time.time() - started < 30
