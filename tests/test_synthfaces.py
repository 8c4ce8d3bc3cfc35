import subprocess
import sys

import numpy as np
import pytest

from focusface.datasets import InsightFaceDataset
from focusface.evalsets import read_bin
from focusface.synthdata import make_pairs, make_training_set, sample_pairs
from focusface.synthfaces import render_face, render_faces, sample_identity, sample_nuisance
from focusface.template import TEMPLATE_LANDMARKS


def test_faces_do_not_depend_on_batch_or_order():
    who, which = np.array([3, 3, 7, 1, 3]), np.array([0, 5, 2, 2, 9])
    batch = render_faces(11, who, which)
    for i in range(5):
        assert batch[i].tobytes() == render_face(11, int(who[i]), int(which[i])).tobytes()
    reversed_batch = render_faces(11, who[::-1], which[::-1])
    assert np.array_equal(reversed_batch[::-1], batch)
    assert not np.array_equal(render_face(12, 3, 0), batch[0])  # the seed matters
    assert not np.array_equal(batch[0], batch[1])  # two images of one identity differ (nuisance)


def test_identity_and_nuisance_are_functions_of_their_keys():
    a, b = sample_identity(5, 42), sample_identity(5, 42)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    assert sample_nuisance(5, 42, 1).angle == sample_nuisance(5, 42, 1).angle != sample_nuisance(5, 42, 2).angle
    with pytest.raises(ValueError, match="non-negative"):
        sample_identity(0, -1)


def test_landmarks_stay_on_the_template():
    distances = np.array(
        [
            np.linalg.norm(render_face(0, i // 4, i % 4, with_landmarks=True)[1] - TEMPLATE_LANDMARKS, axis=1)
            for i in range(400)
        ]
    )
    assert distances.mean() <= 3.0, distances.mean()
    assert np.percentile(distances, 99) < 9.0


def test_identity_shows_above_and_below_the_mask_line():
    """Two identities differ both in the eye region and in the mouth region (same nuisance keys)."""
    upper, lower = [], []
    for i in range(20):
        a, b = render_face(0, 2 * i, 0).astype(float), render_face(0, 2 * i + 1, 0).astype(float)
        upper.append(np.abs(a[40:60, 25:87] - b[40:60, 25:87]).mean())
        lower.append(np.abs(a[75:105, 30:82] - b[75:105, 30:82]).mean())
    assert np.mean(upper) > 15 and np.mean(lower) > 15


def test_training_set_is_identical_for_any_worker_count(tmp_path):
    make_training_set(tmp_path / "w0", seed=3, identities=6, images_per_identity=5, workers=0)
    make_training_set(tmp_path / "w2", seed=3, identities=6, images_per_identity=5, workers=2)
    for name in ("train.rec", "train.idx", "property"):
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    ds = InsightFaceDataset(tmp_path / "w2")
    assert (len(ds), ds.num_classes, ds.has_header) == (30, 6, True)
    assert ds.images_per_identity().tolist() == [5] * 6 and ds.labels().tolist() == [i // 5 for i in range(30)]
    image, label = ds[7]
    assert image.shape == (112, 112, 3) and label == 1
    with pytest.raises(FileExistsError):
        make_training_set(tmp_path / "w2", identities=2, images_per_identity=2, workers=0)


def test_pairs_follow_the_lfw_design(tmp_path):
    pairs = sample_pairs(0, first_identity=100, identities=40, folds=10, pairs_per_fold=8)
    assert len(pairs) == 80
    folds = np.array([p[0] for p in pairs])
    same = np.array([p[5] for p in pairs])
    assert all(same[folds == f].sum() == 4 for f in range(10))
    ids_of = [set(x for p in pairs if p[0] == f for x in (p[1], p[3])) for f in range(10)]
    assert all(not (ids_of[i] & ids_of[j]) for i in range(10) for j in range(i + 1, 10)), (
        "folds must not share identities"
    )
    assert all(100 <= x < 140 for s in ids_of for x in s)
    assert all(p[1] == p[3] and p[2] != p[4] for p in pairs if p[5]) and all(p[1] != p[3] for p in pairs if not p[5])
    make_pairs(tmp_path / "e.bin", seed=0, first_identity=100, identities=40, pairs_per_fold=8, workers=2)
    read = read_bin(tmp_path / "e.bin")
    assert len(read) == 80 and read.issame.tolist() == same.tolist()
    first, second, is_same = read.pair(0)
    assert is_same and first.shape == (112, 112, 3)
    assert (tmp_path / "e.pairs.tsv").read_text().count("\n") == 81
    with pytest.raises(ValueError, match="must be even"):
        sample_pairs(0, 0, 40, pairs_per_fold=7)
    with pytest.raises(ValueError, match="at least 2 identities per fold"):
        sample_pairs(0, 0, 10, folds=10)


def test_synth_command(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.cli",
            "synth",
            str(tmp_path / "demo"),
            "--identities",
            "4",
            "--images-per-identity",
            "3",
            "--val-identities",
            "20",
            "--eval-identities",
            "20",
            "--eval-pairs-per-fold",
            "4",
            "--workers",
            "0",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "train:" in out.stdout and (tmp_path / "demo" / "eval.bin").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "focusface.cli", "synth", str(tmp_path / "x"), "--identities", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--identities: must be a positive integer" in bad.stderr
