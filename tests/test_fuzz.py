"""Every reader, fed damaged copies of valid files (random truncation, flipped bytes, changed structure), either
succeeds or raises a FocusFaceError: never another exception, never a hang, never unbounded memory."""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focusface.checkpoints import load_checkpoint, save_checkpoint
from focusface.datasets import InsightFaceDataset, write_insightface_folder
from focusface.errors import FocusFaceError
from focusface.evalsets import read_bin, read_pairs_folder, write_bin
from focusface.files import write_npz
from focusface.images import decode_image, encode_image
from focusface.inspection import check_images, describe
from focusface.landmarks import LandmarkTable
from focusface.maskspec import MaskParams, manifest_header, manifest_line, parse_spec, read_manifest
from focusface.model import FocusFace

# The same examples on every run (CI stays deterministic); FOCUSFACE_FUZZ_EXAMPLES=2000 FOCUSFACE_FUZZ_RANDOM=1 for a
# longer hunt. No deadline: a damaged header may announce an image up to the 64-megapixel limit, which then decodes
# (bounded, but slow); memory stays bounded by that limit.
FUZZ = settings(
    max_examples=int(os.environ.get("FOCUSFACE_FUZZ_EXAMPLES", 40)),
    deadline=None,
    derandomize=not os.environ.get("FOCUSFACE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FACES = [encode_image(np.full((112, 112, 3), v, np.uint8)) for v in (30, 90, 150, 210)]


def damage(data: bytes, draw) -> bytes:
    "A random truncation, some flipped bytes, or a cut-and-splice of the file."
    data = bytearray(data)
    how = draw(st.sampled_from(["truncate", "flip", "splice", "flip+truncate"]))
    if "flip" in how and data:
        for _ in range(draw(st.integers(1, 64))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    if "truncate" in how:
        data = data[: draw(st.integers(0, len(data)))]
    if how == "splice" and len(data) > 8:
        a = draw(st.integers(0, len(data) - 1))
        b = draw(st.integers(a, len(data)))
        data = data[:a] + data[b:] + data[a:b]
    return bytes(data)


@contextmanager
def damaged_copy(files, name: str, data):
    "The path of a damaged copy of one of the valid files, in a folder removed afterwards."
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, name)
        path.write_bytes(damage(files[name], data.draw))
        yield path


def survives(read):
    "Run a reader: success, or a FocusFaceError; anything else fails the test."
    try:
        read()
    except FocusFaceError:
        pass


class Valid(dict):
    "The valid files the tests damage (a short repr: hypothesis prints the arguments of a failing example)."

    def __repr__(self):
        return f"<valid files: {sorted(self)}>"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    write_insightface_folder(
        d / "rec", [(i // 2, f) for i, f in enumerate(FACES)], num_images=4, names=["a", "b"], image_size=(112, 112)
    )
    write_bin(d / "set.bin", FACES * 5, [True, False] * 5)
    save_checkpoint(FocusFace("tiny", embedding_size=16, mask_embedding_size=4), d / "m.pt")  # small: ~0.6 MB
    (d / "manifest.jsonl").write_text(
        "\n".join(
            [json.dumps(manifest_header(kind="bin", spec="surgical", seed=0))]
            + [manifest_line(k, MaskParams("surgical")) for k in range(4)]
        )
        + "\n"
    )
    write_npz(
        d / "landmarks.npz",
        sources=(),
        kind="landmarks file",
        arrays=dict(
            keys=np.arange(4),
            landmarks=np.zeros((4, 68, 2), np.float32),
            ok=np.ones(4, bool),
            notes=np.array([""] * 4),
            image_size=np.array(112),
            box=np.zeros(4, np.float32),
            source=np.array("fuzz"),
            fingerprint=np.array("0123456789abcdef"),
        ),
    )
    return Valid(
        {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()},
        rec={n: (d / "rec" / n).read_bytes() for n in ("train.rec", "train.idx", "property")},
    )


def _read_everything(root):
    ds = InsightFaceDataset(root)
    for i in range(len(ds)):
        ds[i]
    describe(root)


@FUZZ
@given(data=st.data(), part=st.sampled_from(["train.rec", "train.idx", "property"]))
def test_rec_folder(files, data, part):
    with tempfile.TemporaryDirectory() as d:
        for name, content in files["rec"].items():
            Path(d, name).write_bytes(damage(content, data.draw) if name == part else content)
        survives(lambda: _read_everything(d))


@FUZZ
@given(data=st.data())
def test_bin(files, data):
    with damaged_copy(files, "set.bin", data) as path:
        survives(lambda: [decode_image(im) for im in read_bin(path).images])
        survives(lambda: check_images(path))


@FUZZ
@given(data=st.data())
def test_pairs_folder(files, data):
    with tempfile.TemporaryDirectory() as d:
        for who in ("Ann", "Bob"):
            Path(d, who).mkdir()
            for i in (1, 2):
                Path(d, who, f"{who}_{i:04d}.jpg").write_bytes(FACES[i])
        Path(d, "pairs.txt").write_bytes(damage(b"2 1\nAnn 1 2\nAnn 1 Bob 2\n", data.draw))
        survives(lambda: read_pairs_folder(d))


@FUZZ
@given(data=st.data())
def test_manifest(files, data):
    with damaged_copy(files, "manifest.jsonl", data) as path:
        survives(lambda: read_manifest(path))


@FUZZ
@given(data=st.data())
def test_checkpoint(files, data):
    with damaged_copy(files, "m.pt", data) as path:
        survives(lambda: load_checkpoint(path))


@FUZZ
@given(data=st.data())
def test_landmarks_file(files, data):
    with damaged_copy(files, "landmarks.npz", data) as path:
        survives(lambda: [LandmarkTable(path).get(k) for k in range(5)])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=80) | st.from_regex(r"[a-zA-Z0-9#, -]{0,40}", fullmatch=True))
def test_spec_strings(text):
    survives(lambda: parse_spec(text))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "colour",
                "top",
                "bottom",
                "width",
                "angle",
                "texture",
                "texture_period",
                "valve",
                "texture_seed",
                "shading",
                "extra",
            ]
        ),
        st.none()
        | st.booleans()
        | st.integers(-(10**6), 10**6)
        | st.floats(allow_nan=True)
        | st.text(max_size=8)
        | st.lists(st.floats(allow_nan=True), max_size=4),
    )
)
def test_mask_parameters_from_any_json(values):
    survives(lambda: MaskParams.from_dict(values))


def _announcing(kind: str, width: int, height: int) -> bytes:
    "A small real image whose header is patched to announce width x height (the decoder would allocate for that)."
    import struct

    import cv2

    image = np.full((16, 24, 3), 120, np.uint8)
    if kind == "jpeg_stray_byte":  # a stray byte before the frame header: libjpeg skips it and reads the frame
        data = bytearray(encode_image(image, ".jpg"))
        sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        return bytes(data[:sof] + b"\x00" + data[sof:])
    if kind == "webp_lossless":
        data = bytearray(cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
        data[21:25] = ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
        return bytes(data)
    if kind == "webp_lossy":
        data = bytearray(cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes())
        data[26:30] = struct.pack("<HH", width, height)
        return bytes(data)
    if kind == "webp_extended":  # a VP8X header before the lossy frame, as encoders write for metadata
        lossy = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
        vp8x = (
            b"VP8X"
            + struct.pack("<I", 10)
            + b"\x00\x00\x00\x00"
            + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little")
        )
        body = b"WEBP" + vp8x + lossy[12:]
        return b"RIFF" + struct.pack("<I", len(body)) + body
    if kind == "bmp":
        data = bytearray(cv2.imencode(".bmp", image)[1].tobytes())
        data[18:26] = struct.pack("<ii", width, -height)
        return bytes(data)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["jpeg_stray_byte", "webp_lossless", "webp_lossy", "webp_extended", "bmp"])
def test_a_huge_announced_size_is_refused_before_decoding(kind):
    """A 12000x12000 WebP of 256 KB, or a JPEG with a stray byte before its frame header, decoded to 7.1 GB."""
    import tracemalloc

    data = _announcing(kind, 12000, 12000)
    tracemalloc.start()
    with pytest.raises(FocusFaceError, match="12000x12000"):
        decode_image(data, source=kind)
    assert tracemalloc.get_traced_memory()[1] < 20 << 20
    tracemalloc.stop()
    assert decode_image(_announcing(kind, 24, 16)).shape == (16, 24, 3)  # the same header, honest: decodes


def test_a_bin_that_repeats_one_object_is_refused_before_it_is_copied(tmp_path):
    """A 2.1 MB pickle of [bytearray(2 MiB)] * 4000 became 8 GB when each reference was copied."""
    import pickle
    import resource

    block = bytearray(2 << 20)
    (tmp_path / "memo.bin").write_bytes(pickle.dumps(([block] * 4000, [True, False] * 1000), protocol=5))  # BYTEARRAY8
    assert (tmp_path / "memo.bin").stat().st_size < 3 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FocusFaceError, match="repeats objects by reference"):
        read_bin(tmp_path / "memo.bin")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # kB: nothing near 8 GB was made


@FUZZ
@given(
    data=st.data(),
    kind=st.sampled_from(["jpeg_stray_byte", "webp_lossless", "webp_lossy", "webp_extended", "bmp"]),
    width=st.integers(1, 60000),
    height=st.integers(1, 60000),
)
def test_image_headers_of_any_size_are_bounded(data, kind, width, height):
    """Any announced size, any damage: refused, or decoded within the pixel limit."""
    from focusface.images import MAX_IMAGE_PIXELS

    try:
        image = decode_image(damage(_announcing(kind, width, height), data.draw))
    except FocusFaceError:
        return
    assert image.shape[0] * image.shape[1] <= MAX_IMAGE_PIXELS
