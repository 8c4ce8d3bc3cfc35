"""Masks fitted to landmarks: the landmarks file, and its use by `mask`, `evaluate` and the trainer's masking."""

import json

import numpy as np
import pytest

from focusface.cli import main
from focusface.errors import FocusFaceError
from focusface.evalsets import read_bin, write_bin
from focusface.files import write_npz
from focusface.images import decode_image, encode_image
from focusface.landmarks import FACE_BOX, LandmarkTable
from focusface.maskdata import mask_dataset
from focusface.maskfit import FittedSampler, fit_mask_params
from focusface.maskspec import MaskSampler, read_manifest
from focusface.template import TEMPLATE_LANDMARKS


def _face_shape(widen=0.0):
    "68 landmarks of an aligned face drawn from the template (a jaw line around the nose line)."
    shape = np.zeros((68, 2))
    shape[36:42], shape[42:48], shape[30], shape[48], shape[54] = TEMPLATE_LANDMARKS
    nose_x = float(TEMPLATE_LANDMARKS[2, 0])
    shape[27:31, 0] = nose_x
    shape[27:30, 1] = [52, 58, 64]
    jaw_y = np.linspace(50, 120, 9)
    shape[0:9] = np.stack([np.linspace(nose_x - 38 - widen, nose_x, 9), jaw_y], 1)
    shape[8:17] = np.stack([np.linspace(nose_x, nose_x + 38 + widen, 9), jaw_y[::-1]], 1)
    return shape


def _landmarks_file(path, keys, shapes, ok=None, notes=None, *, source):
    "A landmarks file for the dataset at `source` (its fingerprint), as `focusface landmarks` writes one."
    from focusface.datasets import source_fingerprint

    n = len(keys)
    write_npz(
        path,
        dict(
            keys=np.array(keys),
            landmarks=np.asarray(shapes, np.float32),
            ok=np.ones(n, bool) if ok is None else np.array(ok),
            notes=np.array([""] * n if notes is None else notes),
            image_size=np.array(112),
            box=np.array(FACE_BOX, np.float32),
            source=np.array(str(source)),
            fingerprint=np.array(source_fingerprint(source)),
        ),
        sources=(),
        kind="landmarks file",
    )
    return path


@pytest.fixture
def pair_set(tmp_path):
    rng = np.random.default_rng(0)
    faces = [
        encode_image(np.clip(rng.normal(150, 30, (112, 112, 3)), 0, 255).astype(np.uint8), ".png") for _ in range(40)
    ]
    write_bin(tmp_path / "set.bin", faces, [True, False] * 10)  # 20 pairs: two per fold of the 10-fold accuracy
    return tmp_path / "set.bin"


def test_mask_with_landmarks_fits_records_and_replays_without_them(pair_set, tmp_path):
    shapes = [_face_shape(widen=3.0 * (i % 3)) for i in range(40)]
    ok = [i != 5 for i in range(40)]
    notes = ["" if i != 5 else "the five points lie 12.0 px from the template's" for i in range(40)]
    marks = _landmarks_file(tmp_path / "set.landmarks.npz", list(range(40)), shapes, ok, notes, source=pair_set)
    info = mask_dataset(pair_set, tmp_path / "fitted.bin", spec="surgical", workers=0, progress=False, landmarks=marks)
    assert (info["fitted"], info["template"]) == (39, 1)
    header, entries = read_manifest(info["manifest"])
    assert header["landmarks_sha256"] == LandmarkTable(marks).sha256
    assert header["template_fallbacks"] == {"5": notes[5]}
    template = MaskSampler("surgical", seed=0)
    assert entries[5] == template(5)  # rejected landmarks: the template mask
    assert entries[1] == fit_mask_params(template(1), shapes[1])  # the others fitted
    assert entries[2].width > entries[0].width  # a wider jaw, a wider mask
    fitted, plain = read_bin(tmp_path / "fitted.bin"), read_bin(pair_set)
    assert all(a != b for a, b in zip(fitted.images, plain.images))  # every face masked, the fallback too
    again = mask_dataset(pair_set, tmp_path / "again.bin", replay=info["manifest"], workers=0, progress=False)
    assert read_bin(tmp_path / "again.bin").images == fitted.images  # the replay needs no landmarks
    assert again["masked"] == 40
    with pytest.raises(FocusFaceError, match="does not apply"):
        mask_dataset(pair_set, tmp_path / "x.bin", replay=info["manifest"], landmarks=marks, workers=0)


def test_evaluate_and_the_command_line_take_landmarks(pair_set, tmp_path, capsys):
    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    marks = _landmarks_file(tmp_path / "lm.npz", list(range(40)), [_face_shape()] * 40, source=pair_set)
    save_checkpoint(FocusFace("tiny"), tmp_path / "m.pt")
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "m.pt"),
                str(pair_set),
                "--protocols",
                "um",
                "--out",
                str(tmp_path / "ev"),
                "--no-figures",
                "--quiet",
                "--landmarks",
                str(marks),
            ]
        )
        == 0
    )
    header = json.loads((tmp_path / "ev" / "masks" / "set.um.jsonl").read_text().splitlines()[0])
    assert header["landmarks"] == str(marks) and header["template_fallbacks"] == {}
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "m.pt"),
                str(pair_set),
                "--protocols",
                "um",
                "--no-figures",
                "--quiet",
                "--landmarks",
                str(marks),
                str(marks),
            ]
        )
        == 2
    )
    assert "2 landmarks files (--landmarks) for 1 evaluation sets" in capsys.readouterr().err  # the flag, as typed
    assert (
        main(
            [
                "mask",
                str(pair_set),
                str(tmp_path / "m.bin"),
                "--workers",
                "0",
                "--quiet",
                "--landmarks",
                str(tmp_path / "missing.npz"),
            ]
        )
        == 2
    )
    assert "missing.npz: landmarks file not found" in capsys.readouterr().err


def test_the_trainers_masks_follow_the_landmarks(tmp_path):
    from focusface.loaders import PairedFaces
    from focusface.synthdata import make_training_set
    from focusface.trainconfig import load_config

    make_training_set(tmp_path / "train", identities=2, images_per_identity=2, workers=0, progress=False)
    data = PairedFaces(tmp_path / "train")
    keys = [int(k) for k in data.keys]
    marks = _landmarks_file(tmp_path / "lm.npz", keys, [_face_shape(widen=8.0)] * len(keys), source=tmp_path / "train")
    fitted = PairedFaces(tmp_path / "train", landmarks=marks)
    assert isinstance(fitted.sampler, FittedSampler)
    assert fitted.sampler(keys[0], 0) == fit_mask_params(data.sampler(keys[0], 0), _face_shape(widen=8.0))
    assert np.array_equal(data[0]["unmasked"], fitted[0]["unmasked"])
    assert not np.array_equal(data[0]["masked"], fitted[0]["masked"])
    with pytest.raises(FocusFaceError, match="one or the other"):
        load_config(None, train=str(tmp_path / "train"), landmarks=str(marks), masked_train=str(tmp_path / "train"))


def test_landmarks_of_real_aligned_faces(lfw_sample, tmp_path, capsys):
    from focusface.align import DlibAligner

    try:
        DlibAligner()
    except FocusFaceError as e:
        pytest.skip(str(e))
    import shutil

    source = sorted((lfw_sample / "aligned").iterdir())[0]
    person = tmp_path / "faces" / source.name  # one identity of the sample, as root/<identity>/<image>
    shutil.copytree(source, person)
    assert main(["landmarks", str(person.parent), str(tmp_path / "lm.npz"), "--quiet"]) == 0
    assert "landmarks of 8 images; 8 look right" in capsys.readouterr().out
    table = LandmarkTable(tmp_path / "lm.npz")
    first = f"{person.name}/{sorted(p.name for p in person.iterdir())[0]}"
    shape, why = table.get(first)
    assert why == "" and shape.shape == (68, 2)
    five = np.array([shape[36:42].mean(0), shape[42:48].mean(0), shape[30], shape[48], shape[54]])
    assert np.linalg.norm(five - TEMPLATE_LANDMARKS, axis=1).mean() < 4  # an aligned face: near the template
    assert (
        main(
            [
                "mask",
                str(person.parent),
                str(tmp_path / "masked"),
                "--workers",
                "0",
                "--quiet",
                "--landmarks",
                str(tmp_path / "lm.npz"),
            ]
        )
        == 0
    )
    assert "8 masks fitted to their landmarks, 0 kept the template's shape" in capsys.readouterr().out
    masked = decode_image((tmp_path / "masked" / first).read_bytes())
    assert np.abs(masked.astype(int) - decode_image((person.parent / first).read_bytes())).mean() > 5


def test_a_training_run_says_how_many_masks_follow_landmarks(tmp_path):
    from focusface.loaders import PairedFaces
    from focusface.synthdata import make_training_set
    from focusface.train import train
    from focusface.trainconfig import load_config

    make_training_set(tmp_path / "train", identities=4, images_per_identity=4, workers=0, progress=False)
    keys = [int(k) for k in PairedFaces(tmp_path / "train").keys]
    ok = [i % 4 != 0 for i in range(len(keys))]  # every fourth face's landmarks rejected
    marks = _landmarks_file(
        tmp_path / "lm.npz",
        keys,
        [_face_shape()] * len(keys),
        ok,
        ["" if o else "bad" for o in ok],
        source=tmp_path / "train",
    )
    summary = train(
        load_config(
            train=str(tmp_path / "train"),
            out=str(tmp_path / "run"),
            backbone="tiny",
            epochs=1,
            batch_size=8,
            lr_batch=8,
            workers=0,
            progress=False,
            landmarks=str(marks),
            max_steps=1,
        )
    )
    assert summary["landmarks"] == dict(file=str(marks), fitted=12, template=4)
    assert (
        "12 training images get masks fitted to their landmarks, 4 keep the template's"
        in (tmp_path / "run" / "train.log").read_text()
    )


def test_landmarks_in_worker_processes_are_those_of_one_process(tmp_path):
    """`focusface landmarks --workers 2` splits the images into chunks for two processes (600 images: 3 chunks) and
    writes the same file as one process: every array equal, in the images' order."""
    pytest.importorskip("dlib", reason="the landmark model needs dlib (focusface[align])")
    from focusface.alignfolder import compute_landmarks
    from focusface.synthdata import make_training_set

    make_training_set(tmp_path / "train", identities=60, images_per_identity=10, workers=0)
    one = compute_landmarks(tmp_path / "train", tmp_path / "one.npz", workers=0)
    assert main(["landmarks", str(tmp_path / "train"), str(tmp_path / "two.npz"), "--workers", "2", "--quiet"]) == 0
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a.files == b.files
        for name in a.files:
            assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name
    assert one["images"] == 600 and one["ok"] > 500
