"""Guarantee 3, nothing silently wrong: where the inputs contradict each other or the request, the command says so,
in one line naming what, instead of going on with a plausible result. Each case went on without a word before."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from command_line import refused, run, train_args

from focusface.checkpoints import save_checkpoint
from focusface.datasets import source_fingerprint
from focusface.evalsets import write_bin
from focusface.files import write_npz
from focusface.images import encode_image
from focusface.landmarks import FACE_BOX, synthetic_shape68
from focusface.model import FocusFace
from focusface.synthdata import make_training_set
from focusface.synthfaces import render_faces


def pairs_folder(root: Path, people: int = 4, per_person: int = 3, genuine_first: bool = False) -> Path:
    "An LFW-style folder: `people` x `per_person` photos and a pairs.txt that names each photo in several pairs."
    faces = render_faces(6, np.repeat(np.arange(people), per_person), np.tile(np.arange(per_person), people))
    for i, face in enumerate(faces):
        who = f"P{i // per_person}"
        (root / who).mkdir(parents=True, exist_ok=True)
        (root / who / f"{who}_{i % per_person + 1:04d}.png").write_bytes(encode_image(face, ".png"))
    genuine = [f"P{p}\t1\t{j}" for p in range(people) for j in range(2, per_person + 1)] * 2
    impostor = [f"P{p}\t1\tP{(p + 1) % people}\t{j}" for p in range(people) for j in range(1, per_person + 1)] * 2
    lines = genuine + impostor if genuine_first else [x for pair in zip(genuine, impostor) for x in pair]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(FocusFace("tiny").eval(), path)
    return path


def test_resuming_onto_other_data_is_refused_with_what_changed(tmp_path):
    """`--resume` onto replaced data of the same shape resumed without a word; with another class count it was a
    traceback."""
    make_training_set(tmp_path / "train", identities=8, images_per_identity=4, workers=0)
    first = run("train", *train_args(tmp_path / "train", tmp_path / "run", epochs=3, checkpoint_every=2, max_steps=2))
    assert first.returncode == 0, first.stderr
    for seed, identities in ((7, 8), (0, 9)):  # the same shape from another seed; another class count
        make_training_set(tmp_path / "other", seed=seed, identities=identities, images_per_identity=4, workers=0)
        subprocess.run(["rm", "-rf", str(tmp_path / "train")], check=True)
        (tmp_path / "other").rename(tmp_path / "train")
        out = run("train", *train_args(tmp_path / "train", tmp_path / "run", epochs=3, checkpoint_every=2), "--resume")
        refused(
            out, "checkpoint.pt: the run was trained on other data", f"train {tmp_path / 'train'} is not what it was"
        )


@pytest.fixture(scope="module")
def eval_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    faces = render_faces(8, np.arange(20) // 2, np.arange(20) % 2)
    write_bin(d / "set.bin", [encode_image(f) for f in faces], [True, False] * 5)
    return d / "set.bin"


def test_a_u_m_copy_is_not_taken_for_the_m_m_copy(model, eval_bin, tmp_path):
    """A U-M masked copy given as `--masked` was used as the M-M copy although its manifest says `protocol: um`."""
    assert run("mask", eval_bin, tmp_path / "um.bin", "--protocol", "um", "--workers", "0", "--quiet").returncode == 0
    out = run("evaluate", model, eval_bin, "--masked", tmp_path / "um.bin", "--protocols", "mm")
    refused(out, "um.bin: a U-M copy", "--masked must be the M-M copy")
    assert run("mask", eval_bin, tmp_path / "mm.bin", "--workers", "0", "--quiet").returncode == 0
    assert run("evaluate", model, eval_bin, "--masked", tmp_path / "mm.bin", "--protocols", "mm").returncode == 0


def test_a_replay_that_contradicts_its_flags_is_refused(eval_bin, tmp_path):
    """`mask --replay` silently overrode `--protocol` and `--code`."""
    assert run("mask", eval_bin, tmp_path / "um.bin", "--protocol", "um", "--workers", "0", "--quiet").returncode == 0
    manifest = tmp_path / "um.masks.jsonl"
    refused(
        run("mask", eval_bin, tmp_path / "a.bin", "--replay", manifest, "--protocol", "mm"),
        "--protocol 'mm' contradicts",
    )
    refused(
        run("mask", eval_bin, tmp_path / "b.bin", "--replay", manifest, "--spec", "n95"), "--spec 'n95' contradicts"
    )
    same = run("mask", eval_bin, tmp_path / "c.bin", "--replay", manifest, "--protocol", "um", "--quiet")
    assert same.returncode == 0, same.stderr  # saying what the manifest says is no contradiction
    assert (tmp_path / "c.bin").read_bytes() == (tmp_path / "um.bin").read_bytes()


def test_a_pairs_folder_is_never_masked_u_m_as_if_it_were_m_m(tmp_path):
    """`mask PAIRS_FOLDER --protocol um` masked all 320 images and recorded `protocol: mm`."""
    pairs_folder(tmp_path / "lfw")
    refused(run("mask", tmp_path / "lfw", tmp_path / "out", "--protocol", "um"), "lfw is a pairs folder")
    assert not (tmp_path / "out").exists()


def test_embed_of_a_pairs_folder_embeds_each_photo_once_keyed_by_its_file(model, tmp_path):
    """`embed model.pt PAIRS_FOLDER out.npz` wrote 480 entries keyed 0..479 (pairs, duplicates, no file names)."""
    pairs_folder(tmp_path / "lfw", people=4, per_person=3)
    out = run("embed", model, tmp_path / "lfw", tmp_path / "e.npz", "--quiet")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "e.npz") as z:
        keys = list(z["keys"])
    assert len(keys) == 12 and keys == sorted(keys) and keys[0] == "P0/P0_0001.png"


def test_a_pairs_file_with_its_genuine_pairs_first_gets_folds_that_hold_both(model, tmp_path):
    """`evaluate` on a pairs.txt whose genuine pairs all come first gave 47% U-U accuracy (each fold held one class)."""
    pairs_folder(tmp_path / "sorted", people=10, per_person=3, genuine_first=True)
    out = run("evaluate", model, tmp_path / "sorted", "--protocols", "uu", "--out", tmp_path / "ev", "--no-figures")
    assert out.returncode == 0, out.stderr
    assert "sorted: the genuine and impostor pairs are not mixed along the file" in out.stdout, out.stdout
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["sorted"]["uu"]["folds"] == "stratified"


def test_a_pairs_table_that_contradicts_its_bin_is_refused(eval_bin, tmp_path):
    """An `eval.pairs.tsv` whose same/different flags contradict the .bin was accepted."""
    (tmp_path / "set.bin").write_bytes(eval_bin.read_bytes())
    rows = [f"{i}\t{2 * i}\t{2 * i if i % 2 == 0 else 2 * i + 1}\t{1 - i % 2}" for i in range(10)]
    rows[3] = "3\t6\t6\t1"  # the .bin says impostor
    (tmp_path / "set.pairs.tsv").write_text("fold\tidentity_a\tidentity_b\tsame\n" + "\n".join(rows) + "\n")
    refused(run("info", tmp_path / "set.bin"), "set.pairs.tsv:5: pair 3 is genuine here and impostor in the .bin")


def _landmarks(path: Path, source: Path | None, shape: np.ndarray, keys) -> Path:
    arrays = dict(
        keys=np.array(keys),
        landmarks=np.broadcast_to(np.asarray(shape, np.float32), (len(keys), 68, 2)).copy(),
        ok=np.ones(len(keys), bool),
        notes=np.array([""] * len(keys)),
        image_size=np.array(112),
        box=np.array(FACE_BOX, np.float32),
        source=np.array(str(source)),
    )
    if source is not None:
        arrays["fingerprint"] = np.array(source_fingerprint(source))
    write_npz(path, arrays, sources=(), kind="landmarks file")
    return path


def test_landmarks_say_whose_faces_they_describe_and_are_checked_again(eval_bin, tmp_path):
    """A landmarks file without a fingerprint, from another dataset, was used; landmarks of 1e30 marked ok gave
    "200 masks fitted"; all-NaN landmarks were a traceback."""
    keys = list(range(20))
    orphan = _landmarks(tmp_path / "orphan.npz", None, synthetic_shape68(), keys)
    refused(run("mask", eval_bin, tmp_path / "a.bin", "--landmarks", orphan), "records no fingerprint")
    for name, shape in (("far", np.full((68, 2), 1e30)), ("nan", np.full((68, 2), np.nan))):
        marks = _landmarks(tmp_path / f"{name}.npz", eval_bin, shape, keys)
        out = run("mask", eval_bin, tmp_path / f"{name}.bin", "--landmarks", marks, "--workers", "0", "--quiet")
        assert out.returncode == 0 and "0 masks fitted to their landmarks, 20 kept the template's" in out.stdout, out


def test_contradictory_mask_labels_are_refused(model, tmp_path):
    """A later contradictory line in mfr2_labels.txt won."""
    pairs_folder(tmp_path / "mfr2", people=4, per_person=3)
    lines = [f"P{i // 3}, {i % 3 + 1}, {'no-mask' if i % 2 else 'surgical'}" for i in range(12)] + ["P0, 1, n95"]
    (tmp_path / "mfr2" / "mfr2_labels.txt").write_text("\n".join(lines) + "\n")
    refused(
        run("evaluate", model, tmp_path / "mfr2"),
        "mfr2_labels.txt:13: P0 image 1 is 'n95' here and 'surgical' at line 1",
    )


def test_names_that_would_break_the_lists_are_refused(tmp_path):
    """`pack` wrote names with tabs and newlines into identities.tsv."""
    face = encode_image(np.full((112, 112, 3), 90, np.uint8))
    for name in ("Ann\tLee", "Bob\nSmith"):
        (tmp_path / "faces" / name).mkdir(parents=True)
        (tmp_path / "faces" / name / "1.jpg").write_bytes(face)
    refused(run("pack", tmp_path / "faces", tmp_path / "packed"), "holds a control character")
    assert not (tmp_path / "packed").exists()


def test_a_run_given_held_out_pairs_leaves_their_identities_out(tmp_path):
    """`val=outputs/data/val.bin` without `holdout=` trained on the validation identities without a word: the ids
    travel beside the pairs now (val.holdout.txt), and a run on that training set leaves them out by itself."""
    from focusface.loaders import holdout_pairs, write_holdout

    make_training_set(tmp_path / "train", identities=30, images_per_identity=4, workers=0)
    held, pairs = holdout_pairs(tmp_path / "train", identities=20, pairs_per_fold=2, seed=0)
    write_bin(tmp_path / "val.bin", pairs.images, pairs.issame)
    write_holdout(tmp_path / "val.holdout.txt", held, tmp_path / "train")
    out = run("train", *train_args(tmp_path / "train", tmp_path / "run", val=tmp_path / "val.bin", max_steps=1))
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "40 images of 30 identities" in log and "20 identities held out for validation" in log, log
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"holdout: {tmp_path / 'val.holdout.txt'}" in config
