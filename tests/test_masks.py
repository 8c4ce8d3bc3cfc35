import json
import subprocess
import sys

import numpy as np
import pytest

import focusface.maskspec as maskspec
from focusface.datasets import InsightFaceDataset, pack_folder
from focusface.evalsets import read_bin, write_bin
from focusface.images import decode_image, encode_image
from focusface.maskdata import mask_dataset
from focusface.masks import MaskTransform, apply_mask, mask_alpha, mask_images
from focusface.maskspec import (
    DEFAULT_SPEC,
    MASK_TYPES,
    MaskParams,
    MaskSampler,
    parse_spec,
    read_manifest,
    sample_mask_params,
)
from focusface.template import template_landmarks

ALL_TYPES = ", ".join(MASK_TYPES)


def _face(seed, size=112):
    """A face-like test image: smooth random background with some structure (not a real face)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 220, (8, 8, 3)).astype(np.uint8)
    import cv2

    return cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("size", [112, 160, 96])
@pytest.mark.parametrize("kind", MASK_TYPES)
def test_mask_covers_nose_and_mouth_and_spares_the_eyes(kind, size):
    face = _face(size, size=size)
    assert face.shape == (size, size, 3)
    marks = np.round(template_landmarks(size)).astype(int)
    for key in range(150):
        params = sample_mask_params(kind, seed=size, key=key)
        alpha = mask_alpha(params, size)
        coverage = alpha[marks[:, 1], marks[:, 0]]
        assert (coverage[2:] > 0.99).all(), f"{kind} key {key}: nose/mouth coverage {coverage[2:]}"
        out = apply_mask(face, params)
        for x, y in marks[:2]:  # the eyes and their 3x3 neighbourhood are untouched
            assert np.array_equal(out[y - 1 : y + 2, x - 1 : x + 2], face[y - 1 : y + 2, x - 1 : x + 2]), (
                f"{kind} key {key}"
            )
        assert out.shape == face.shape and out.dtype == np.uint8
        assert not np.array_equal(out, face)


def test_spec_language_and_its_errors():
    assert [c.type for c in parse_spec(DEFAULT_SPEC)] == ["cloth", "surgical", "surgical", "kn95", "n95"]
    assert parse_spec("surgical-#87CEFA")[0].colour == (135, 206, 250)
    with pytest.raises(ValueError, match="unknown mask type 'ffp3'"):
        parse_spec("cloth, ffp3")
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        parse_spec("surgical-mauve")
    with pytest.raises(ValueError, match="names no mask type"):
        parse_spec(" , ")
    # bold: a fixed colour is kept (up to the colour jitter); paper: blended half and half with the material's own
    colours = [sample_mask_params("surgical-#adff2f-bold", 0, k).colour for k in range(50)]
    assert all(abs(c[0] - 173) < 30 and c[1] > 200 and c[2] < 90 for c in colours)
    colours = [sample_mask_params("surgical-#adff2f", 0, k).colour for k in range(50)]
    assert all(200 < c[1] < 245 and 75 < c[1] - c[2] < 125 and c[0] < c[1] for c in colours)
    # the default mix draws all five variants
    kinds = {
        (p.type, p.colour[1] > p.colour[2] + 60) for p in (sample_mask_params(DEFAULT_SPEC, 0, k) for k in range(300))
    }
    assert {"cloth", "surgical", "kn95", "n95"} <= {t for t, _ in kinds} and ("surgical", True) in kinds


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((112, 112), np.uint8), r"RGB uint8 image \(H, W, 3\)"),
        (np.zeros((112, 112, 4), np.uint8), r"RGB uint8 image"),
        (np.zeros((112, 112, 3), np.float32), r"RGB uint8 image"),
        (np.zeros((112, 300, 3), np.uint8), "not an aligned face crop"),
        (np.zeros((20, 20, 3), np.uint8), "not an aligned face crop"),
    ],
)
def test_bad_images_are_refused(image, message):
    with pytest.raises(ValueError, match=message):
        apply_mask(image, sample_mask_params("surgical", 0, 0))


def test_same_seed_and_key_give_the_same_bytes_in_any_order():
    faces = np.stack([_face(i) for i in range(6)])
    sampler = MaskSampler(ALL_TYPES, seed=11)
    first, params = mask_images(faces, range(6), sampler)
    order = [5, 2, 0, 4, 1, 3]
    shuffled, _ = mask_images(faces[order], order, MaskSampler(ALL_TYPES, seed=11))
    for i, k in enumerate(order):
        assert shuffled[i].tobytes() == first[k].tobytes()
    other, _ = mask_images(faces, range(6), MaskSampler(ALL_TYPES, seed=12))
    assert any(o.tobytes() != f.tobytes() for o, f in zip(other, first))
    assert maskspec.key_to_int("a/b.jpg") == maskspec.key_to_int("a/b.jpg") != maskspec.key_to_int("a/c.jpg")


def test_transform_draws_a_new_mask_each_epoch_but_is_keyed():
    face = _face(0)
    transform = MaskTransform(ALL_TYPES, seed=3)
    epoch0 = transform(face, 17)
    assert np.array_equal(transform(face, 17), epoch0)
    transform.set_epoch(1)
    assert not np.array_equal(transform(face, 17), epoch0)
    fixed = MaskTransform(ALL_TYPES, seed=3, new_mask_each_epoch=False)
    fixed.set_epoch(5)
    assert np.array_equal(fixed(face, 17), apply_mask(face, sample_mask_params(ALL_TYPES, 3, 17)))


def test_mask_follows_the_faces_light():
    params = MaskParams("surgical", colour=(200.0, 200.0, 200.0), shading=0.8)
    dark, bright = np.full((112, 112, 3), 60, np.uint8), np.full((112, 112, 3), 200, np.uint8)
    alpha = mask_alpha(params) > 0.99
    assert apply_mask(dark, params)[alpha].mean() < apply_mask(bright, params)[alpha].mean() - 10
    side_lit = np.tile(np.linspace(40, 220, 112, dtype=np.uint8)[None, :, None], (112, 1, 3))
    lit = apply_mask(side_lit, params).astype(float)
    left, right = lit[:, 30:45][alpha[:, 30:45]].mean(), lit[:, 67:82][alpha[:, 67:82]].mean()
    assert right > left + 10, (left, right)
    # but features under the mask do not show through: a dark 'mouth' changes the mask by at most a little
    mouth = bright.copy()
    mouth[85:100, 40:72] = 20
    diff = np.abs(apply_mask(mouth, params).astype(int) - apply_mask(bright, params).astype(int))[85:100, 40:72]
    assert diff.max() < 25


def test_manifest_params_round_trip_exactly():
    params = sample_mask_params(ALL_TYPES, 9, 1234)
    line = maskspec.manifest_line(1234, params)
    data = json.loads(line)
    assert data.pop("key") == 1234 and MaskParams.from_dict(data) == params
    with pytest.raises(ValueError, match="unknown mask parameters"):
        MaskParams.from_dict({**params.to_dict(), "sparkle": 1})


# --- offline masking ---------------------------------------------------------------------------------------


def _folder(root, people=3, per_person=4):
    for p in range(people):
        (root / f"p{p}").mkdir(parents=True)
        for i in range(per_person):
            (root / f"p{p}" / f"p{p}_{i + 1:04d}.jpg").write_bytes(encode_image(_face(p * 10 + i)))
    return root


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rec_masking_is_identical_for_any_worker_count_and_replays(tmp_path):
    pack_folder(_folder(tmp_path / "faces"), tmp_path / "rec")
    outs = []
    for workers in (0, 1, 2):
        mask_dataset(
            tmp_path / "rec", tmp_path / f"m{workers}", spec=ALL_TYPES, seed=4, workers=workers, progress=False
        )
        outs.append(_tree_bytes(tmp_path / f"m{workers}"))
    assert outs[0] == outs[1] == outs[2]
    src, out = InsightFaceDataset(tmp_path / "rec"), InsightFaceDataset(tmp_path / "m2")
    assert len(out) == len(src) and out.has_header and out.num_classes == src.num_classes
    assert out.labels().tolist() == src.labels().tolist()
    assert out.images_per_identity().tolist() == src.images_per_identity().tolist()
    assert not np.array_equal(out[0][0], src[0][0])
    header, entries = read_manifest(tmp_path / "m2" / "masks.jsonl")
    assert header["spec"] == ALL_TYPES and header["seed"] == 4 and sorted(entries) == [int(k) for k in src.image_keys]
    mask_dataset(
        tmp_path / "rec", tmp_path / "replayed", replay=tmp_path / "m2" / "masks.jsonl", workers=2, progress=False
    )
    replayed = _tree_bytes(tmp_path / "replayed")
    assert {k: v for k, v in replayed.items() if k != "masks.jsonl"} == {
        k: v for k, v in outs[2].items() if k != "masks.jsonl"
    }


@pytest.mark.parametrize("protocol", ["um", "mm"])
def test_bin_masking_protocols(tmp_path, protocol):
    images = [encode_image(_face(i)) for i in range(8)]
    write_bin(tmp_path / "e.bin", images, [True, False, True, False])
    info = mask_dataset(
        tmp_path / "e.bin", tmp_path / f"{protocol}.bin", protocol=protocol, seed=1, workers=2, progress=False
    )
    out = read_bin(tmp_path / f"{protocol}.bin")
    assert out.issame.tolist() == [True, False, True, False]
    masked = [a != b for a, b in zip(out.images, images)]
    if protocol == "um":  # exactly one image of every pair: the second (the probe)
        assert masked == [False, True] * 4 and info["masked"] == 4
    else:
        assert all(masked) and info["masked"] == 8
    header, entries = read_manifest(tmp_path / f"{protocol}.masks.jsonl")
    assert header["protocol"] == protocol and sorted(entries) == [i for i, m in enumerate(masked) if m]
    mask_dataset(tmp_path / "e.bin", tmp_path / "again.bin", protocol=protocol, seed=1, workers=0, progress=False)
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / f"{protocol}.bin").read_bytes()
    mask_dataset(
        tmp_path / "e.bin",
        tmp_path / "replay.bin",
        replay=tmp_path / f"{protocol}.masks.jsonl",
        workers=1,
        progress=False,
    )
    assert (tmp_path / "replay.bin").read_bytes() == (tmp_path / f"{protocol}.bin").read_bytes()


def test_image_folder_masking_and_replay(tmp_path):
    _folder(tmp_path / "faces", people=2, per_person=3)
    (tmp_path / "faces" / "pairs.txt").write_text("p0 1 2\np0 1 p1 3\n")
    mask_dataset(tmp_path / "faces", tmp_path / "m", workers=2, progress=False)
    mask_dataset(tmp_path / "faces", tmp_path / "r", replay=tmp_path / "m" / "masks.jsonl", workers=0, progress=False)
    m, r = _tree_bytes(tmp_path / "m"), _tree_bytes(tmp_path / "r")
    assert m.keys() == r.keys() and all(m[k] == r[k] for k in m if k != "masks.jsonl")
    assert m["pairs.txt"] == (tmp_path / "faces" / "pairs.txt").read_bytes()
    assert decode_image(m["p1/p1_0002.jpg"]).shape == (112, 112, 3)


def test_existing_destination_is_refused_unless_overwrite(tmp_path):
    _folder(tmp_path / "faces", people=1, per_person=2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists"):
        mask_dataset(tmp_path / "faces", tmp_path / "out", workers=0, progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="a folder focusface did not write"):  # not a masked copy: never replaced
        mask_dataset(tmp_path / "faces", tmp_path / "out", workers=0, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    mask_dataset(tmp_path / "faces", tmp_path / "new", workers=0, progress=False)
    mask_dataset(tmp_path / "faces", tmp_path / "new", workers=0, progress=False, overwrite=True, seed=1)
    assert (tmp_path / "new" / "masks.jsonl").is_file() and '"seed": 1' in (
        tmp_path / "new" / "masks.jsonl"
    ).read_text()


@pytest.mark.parametrize("kind", ["rec", "bin", "images"])
def test_crash_half_way_leaves_no_output(tmp_path, monkeypatch, kind):
    _folder(tmp_path / "faces", people=3, per_person=4)
    if kind == "rec":
        pack_folder(tmp_path / "faces", tmp_path / "src")
        src, dst = tmp_path / "src", tmp_path / "out" / "masked"
    elif kind == "bin":
        write_bin(tmp_path / "src.bin", [encode_image(_face(i)) for i in range(12)], [True] * 6)
        src, dst = tmp_path / "src.bin", tmp_path / "out" / "masked.bin"
    else:
        src, dst = tmp_path / "faces", tmp_path / "out" / "masked"
    (tmp_path / "out").mkdir()
    calls = {"n": 0}
    import focusface.maskdata as maskdata

    real = maskdata.apply_mask

    def flaky(image, params):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("power cut")
        return real(image, params)

    monkeypatch.setattr(maskdata, "apply_mask", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        mask_dataset(src, dst, workers=0, progress=False)
    assert list((tmp_path / "out").iterdir()) == [], "nothing may be left behind, not even temporaries"


def test_replay_errors(tmp_path):
    _folder(tmp_path / "a", people=1, per_person=2)
    _folder(tmp_path / "b", people=2, per_person=2)
    mask_dataset(tmp_path / "a", tmp_path / "ma", workers=0, progress=False)
    with pytest.raises(ValueError, match="made from another dataset"):
        mask_dataset(tmp_path / "b", tmp_path / "mb", replay=tmp_path / "ma" / "masks.jsonl", workers=0, progress=False)
    lines = (tmp_path / "ma" / "masks.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    header["renderer"] = 999
    (tmp_path / "old.jsonl").write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match="renderer version 999"):
        read_manifest(tmp_path / "old.jsonl")


def test_mask_command_line(tmp_path):
    write_bin(tmp_path / "e.bin", [encode_image(_face(i)) for i in range(4)], [True, False])

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "focusface.cli", "mask", *map(str, a)], capture_output=True, text=True
        )

    out = run(tmp_path / "e.bin", tmp_path / "um.bin", "--protocol", "um", "--quiet", "--code", "kn95, cloth-stripes")
    assert out.returncode == 0 and "2 of 4 images masked" in out.stdout, out.stderr
    again = run(tmp_path / "e.bin", tmp_path / "um.bin", "--quiet")
    assert again.returncode == 2 and "exists" in again.stderr and "--overwrite" in again.stderr
    bad = run(tmp_path / "e.bin", tmp_path / "x.bin", "--code", "surgical, ffp2")
    assert bad.returncode == 2 and "unknown mask type 'ffp2'" in bad.stderr


def test_masks_of_earlier_manifests_replay_byte_for_byte():
    """Entries written before the paper style (no jaw, cheek, fittings, texture_strength) draw the same bytes, and the
    bold style samples the same parameters as the sampler of then."""
    import hashlib
    import json
    from pathlib import Path

    import cv2

    from focusface.maskspec import MaskParams

    fixture = json.loads((Path(__file__).parent / "fixtures" / "masks" / "bold_v1.json").read_text())
    face = cv2.resize(
        np.random.default_rng(5).integers(40, 220, (8, 8, 3)).astype(np.uint8),
        (112, 112),
        interpolation=cv2.INTER_CUBIC,
    )
    assert len(fixture["masks"]) == 15
    for item in fixture["masks"]:
        entry = dict(item["entry"])
        key = entry.pop("key")
        params = MaskParams.from_dict(entry)
        assert hashlib.sha256(apply_mask(face, params).tobytes()).hexdigest() == item["sha256"], key
        kind, index = key.split("/")
        assert sample_mask_params(f"{kind}-bold", 3, int(index)) == params, key
        assert sample_mask_params(kind, 3, int(index)) != params, key  # the default style is the paper's now


def test_paper_style_draws_no_loops_but_a_named_valve():
    face = _face(1)
    valve, plain = sample_mask_params("n95-valve", 0, 7), sample_mask_params("n95-novalve", 0, 7)
    assert valve.fittings is False and valve.valve and not plain.valve
    assert not np.array_equal(apply_mask(face, valve), apply_mask(face, plain))  # the valve is drawn
    surgical = sample_mask_params("surgical", 0, 7)
    outside = mask_alpha(surgical) == 0  # no ear loops outside the mask body in the paper style
    assert np.array_equal(apply_mask(face, surgical)[outside], face[outside])
    bold = sample_mask_params("surgical-bold", 0, 7)
    assert not np.array_equal(apply_mask(face, bold)[mask_alpha(bold) == 0], face[mask_alpha(bold) == 0])
