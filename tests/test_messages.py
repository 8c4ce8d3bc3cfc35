"""Guarantee 4, one line that names the thing and what to do: each of these inputs was a traceback or a message that
blamed the wrong thing (the issue that asked for these rules lists them)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from command_line import CLI, refused, run, train_args

import focusface
from focusface.checkpoints import save_checkpoint
from focusface.errors import FocusFaceError
from focusface.evalsets import write_bin
from focusface.images import encode_image
from focusface.model import FocusFace
from focusface.synthdata import make_training_set


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("messages")
    make_training_set(d / "train", identities=8, images_per_identity=4, workers=0)
    make_training_set(d / "one", identities=1, images_per_identity=4, workers=0)
    faces = [encode_image(np.full((112, 112, 3), 10 * i, np.uint8)) for i in range(20)]
    write_bin(d / "eval.bin", faces, [True, False] * 5)
    save_checkpoint(FocusFace("tiny").eval(), d / "m.pt")
    return d


TRAINING = {  # what a user typed: (the override, what the line must say)
    "lr_steps=[a,b]": ("lr_steps=[a,b]", "lr_steps must be a list of numbers"),
    "a 22-digit seed": ("seed=1234567890123456789012", "seed must be less than 2**63"),
    "lr=.inf": ("lr=.inf", "lr must be a finite number, got inf"),
    "embedding_size=10**12": ("embedding_size=1000000000000", "embedding_size must be at most 8,192"),
}


@pytest.mark.parametrize("case", sorted(TRAINING))
def test_odd_training_values_are_named(data, tmp_path, case):
    override, said = TRAINING[case]
    refused(run("train", *train_args(data / "train", tmp_path / "run"), override), said)
    assert not (tmp_path / "run").exists()


def test_an_evaluation_bin_given_as_training_set_is_named_as_such(data, tmp_path):
    """`train=eval.bin` said "dataset folder not found"."""
    refused(run("train", *train_args(data / "eval.bin", tmp_path / "run")), "eval.bin: a file, not an insightface")


def test_one_identity_is_said_as_such(data, tmp_path):
    """A training set of one identity spoke of `num_classes must be ... >= 2`."""
    refused(run("train", *train_args(data / "one", tmp_path / "run")), "1 identity: a face recognizer", "at least 2")


def test_a_property_that_claims_a_trillion_classes_is_refused_before_allocating(data, tmp_path):
    """A `property` claiming 10^12 classes was an allocator error."""
    subprocess.run(["cp", "-r", str(data / "train"), str(tmp_path / "train")], check=True)
    (tmp_path / "train" / "property").write_text("1000000000000,112,112\n")
    refused(run("info", tmp_path / "train"), "property: 1,000,000,000,000 classes")
    refused(run("train", *train_args(tmp_path / "train", tmp_path / "run")), "1,000,000,000,000 classes")


def test_an_index_line_that_points_into_another_record_is_named(data, tmp_path):
    """An `.idx` line pointing at offset 0 blamed key 0 (the record it pointed into), not the damaged line."""
    subprocess.run(["cp", "-r", str(data / "train"), str(tmp_path / "train")], check=True)
    lines = (tmp_path / "train" / "train.idx").read_text().splitlines()
    lines[5] = lines[5].split("\t")[0] + "\t0"
    (tmp_path / "train" / "train.idx").write_text("\n".join(lines) + "\n")
    refused(run("info", tmp_path / "train"), "train.idx: key 5 (line 6) points at byte 0, where key 0 (line 1) starts")


def test_a_deeply_nested_threshold_file_is_refused(data, tmp_path):
    """A 100,000-deep JSON threshold file was a RecursionError."""
    (tmp_path / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    face = tmp_path / "face.png"
    face.write_bytes(encode_image(np.full((112, 112, 3), 90, np.uint8), ".png"))
    refused(
        run("verify", data / "m.pt", face, face, "--threshold", tmp_path / "metrics.json"),
        "not readable as an evaluation's metrics.json",
    )


@pytest.mark.parametrize(
    "call, said",
    [
        (lambda: focusface.verify(None, "a.jpg", "b.jpg"), "a checkpoint is the path of a file"),
        (lambda: focusface.create_backbone(None), "unknown backbone None"),
        (lambda: focusface.create_backbone("r50", embedding_size=10**12), "embedding_size must be an integer from 1"),
        (lambda: focusface.load_checkpoint(None), "a checkpoint is the path of a file"),
    ],
    ids=["verify(None)", "create_backbone(None)", "embedding_size=10**12", "load_checkpoint(None)"],
)
def test_the_python_api_names_what_it_was_given(call, said):
    with pytest.raises(FocusFaceError, match=said.replace("(", r"\(").replace("*", r"\*")):
        call()


@pytest.fixture
def small_disk(tmpfs):
    "A 2 MB file system that a checkpoint fills."
    return tmpfs("size=2m")


def test_a_full_disk_during_a_checkpoint_is_said_as_such(data, small_disk):
    """A full disk during a checkpoint was torch's `inline_container.cc` RuntimeError."""
    out = run("train", *train_args(data / "train", small_disk / "run", backbone="tiny", max_steps=2))
    refused(out, "checkpoint.pt: the disk is full")
    assert not [p for p in (small_disk / "run").iterdir() if p.name.startswith(".checkpoint.pt")], "no temporary left"


def test_a_killed_loader_worker_is_said_as_such(data, tmp_path):
    """A DataLoader worker killed by the OOM killer was a traceback."""
    make_training_set(tmp_path / "long", identities=8, images_per_identity=60, workers=0)
    marker = uuid.uuid4().hex
    env = dict(os.environ, FOCUSFACE_TEST_MARKER=marker)
    args = train_args(tmp_path / "long", tmp_path / "run", workers=2, epochs=50)
    victim = subprocess.Popen(
        CLI + ["train", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while (
        not (tmp_path / "run" / "train.log").exists() or "step 2/" not in (tmp_path / "run" / "train.log").read_text()
    ):
        assert victim.poll() is None and time.time() < deadline, victim.stderr.read()[-2000:]
        time.sleep(0.05)
    workers = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and marker.encode() in (p / "environ").read_bytes():
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                workers += [int(p.name)] if ppid not in (victim.pid, 1) and ppid != os.getpid() else []
        except OSError:
            pass
    assert workers, "no loader worker found"
    os.kill(workers[0], signal.SIGKILL)  # what the out-of-memory killer does
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert "a data loader worker died" in err and "lower workers (now 2)" in err, err


def test_a_variant_name_dvc_would_refuse_is_named_by_the_parameters_check(tmp_path):
    """A variant named `../../evil` (or starting from itself) reached DVC's own errors first. DVC builds its stages
    from params.yaml before any stage runs, so the check that says it in focusface's words runs on its own."""
    import yaml

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["variants"]["../../evil"] = dict(init_from="random", method="arcface")
    params["variants"]["self"] = dict(init_from="self", method="arcface")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run(
        [sys.executable, "-m", "focusface.experiment", "check", str(tmp_path / "params.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "variants.../../evil: a variant name is letters, digits and _" in out.stderr
    assert "variants.self.init_from: a circle of starts (self -> self)" in out.stderr, out.stderr
