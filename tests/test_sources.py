"""One source type per dataset kind: every command reads a dataset the same way, so they agree on what it holds."""

import json

import numpy as np
import pytest

from focusface.datasets import BinSource, FolderSource, PairsSource, RecSource, open_dataset, write_insightface_folder
from focusface.evalsets import write_bin
from focusface.images import encode_image
from focusface.inspection import check_images, describe
from focusface.maskdata import mask_dataset

FACES = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(4)]


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "flat").mkdir()
    for i, face in enumerate(FACES):
        (tmp_path / "flat" / f"{i}.png").write_bytes(encode_image(face))
    for i, face in enumerate(FACES):
        (tmp_path / "nested" / f"id{i // 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "nested" / f"id{i // 2}" / f"{i}.png").write_bytes(encode_image(face))
    write_insightface_folder(
        tmp_path / "rec",
        [(i // 2, encode_image(f)) for i, f in enumerate(FACES)],
        num_images=4,
        names=["a", "b"],
        image_size=(112, 112),
    )
    write_bin(tmp_path / "set.bin", [encode_image(f) for f in FACES], np.array([True, False]))
    return tmp_path


def test_each_kind_has_its_type(folders):
    types = {name: type(open_dataset(folders / name)) for name in ("flat", "nested", "rec", "set.bin")}
    assert types == dict(flat=FolderSource, nested=FolderSource, rec=RecSource, **{"set.bin": BinSource})
    (folders / "nested" / "pairs.txt").write_text("1\n")
    assert isinstance(open_dataset(folders / "nested"), PairsSource)


@pytest.mark.parametrize("name", ["flat", "nested", "rec"])
def test_info_mask_and_check_agree_on_a_folder_of_any_layout(folders, name):
    """A flat image folder was read by `info --check` and `embed` but refused by `mask`: now every command reads it."""
    source = open_dataset(folders / name)
    assert describe(folders / name)["images"] == len(source) == 4
    assert check_images(folders / name) == (4, [])
    summary = mask_dataset(folders / name, folders / f"{name}-masked", workers=0, progress=False)
    assert summary["masked"] == 4
    header = json.loads((folders / f"{name}-masked" / "masks.jsonl").read_text().splitlines()[0])
    assert header["fingerprint"] == source.fingerprint()  # the manifest names the dataset the way the others do
    masked = open_dataset(folders / f"{name}-masked")
    assert masked.keys == source.keys and all(masked.read(i)[1] != source.read(i)[1] for i in range(4))


def test_a_pairs_folder_is_read_as_pairs_and_masked_as_files(folders):
    (folders / "nested" / "pairs.txt").write_text("1\nid0 0 1\nid0 0 id1 0\n")
    source = open_dataset(folders / "nested")
    assert source.paired and source.files().keys == ["id0/0.png", "id0/1.png", "id1/2.png", "id1/3.png"]
    copy = folders / "pairs-masked"
    mask_dataset(folders / "nested", copy, workers=0, progress=False)
    assert (copy / "pairs.txt").read_text() == (folders / "nested" / "pairs.txt").read_text()
