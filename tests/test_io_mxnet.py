"""focusface against the files mxnet 1.9.1 wrote and read (tests/fixtures/mxnet, made by make_fixtures.py).

mxnet is never imported here: its outcome was recorded in mxnet_reads.json when the fixtures were made.
"""

import hashlib
import json
import sys

import numpy as np
import pytest
from conftest import REPO

from focusface.datasets import InsightFaceDataset
from focusface.images import decode_image
from focusface.recordio import RecordReader, RecordWriter, pack_record, unpack_record

FIXTURES = REPO / "tests" / "fixtures" / "mxnet"
sys.path.insert(0, str(FIXTURES))
import records  # noqa: E402

MX = json.loads((FIXTURES / "mxnet_reads.json").read_text())


def _labels_as_json(labels):
    return labels.tolist() if isinstance(labels, np.ndarray) else float(labels)


@pytest.mark.parametrize(
    "name, recs", [("mxnet_header", records.header_records()), ("mxnet_flat", records.flat_records())]
)
def test_focusface_reads_mxnets_file_to_the_byte(name, recs):
    reader = RecordReader(FIXTURES / f"{name}.rec", FIXTURES / f"{name}.idx")
    assert [int(k) for k in reader.keys] == [key for key, *_ in recs]
    for key, labels, payload, id_ in recs:
        raw = reader[key]
        assert raw == pack_record(labels, payload, id=id_)
        header, got_labels, got_payload = unpack_record(raw)
        assert got_payload == payload and header.id == id_
        assert np.array_equal(np.asarray(got_labels, np.float32), np.asarray(labels, np.float32))
        # and what mxnet itself read from its file
        seen = MX[name][str(key)]
        assert hashlib.sha256(raw).hexdigest() == seen["record_sha256"]
        assert (header.flag, header.id, header.id2) == (seen["flag"], seen["id"], seen["id2"])
        np.testing.assert_array_equal(np.float32(_labels_as_json(got_labels)), np.float32(seen["label"]))
        if payload:
            image = decode_image(got_payload)
            assert list(image.shape) == seen["shape"]
            # same JPEG, decoders may round differently by one grey level at most; sums stay within 0.5%
            np.testing.assert_allclose([int(image[..., c].sum()) for c in range(3)], seen["rgb_sum"], rtol=5e-3)


def test_split_records_are_in_the_fixture():
    data = (FIXTURES / "mxnet_header.rec").read_bytes()
    flags, pos = [], 0
    while pos < len(data):
        lrec = int.from_bytes(data[pos + 4 : pos + 8], "little")
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        flags.append(cflag)
        pos += 8 + (length + 3) // 4 * 4 if cflag in (0, 3) else 8 + length
    assert flags.count(1) == 2 and flags.count(2) == 1 and flags.count(3) == 2, flags


def test_focusface_writes_mxnets_bytes(tmp_path):
    with RecordWriter(tmp_path / "ff.rec", tmp_path / "ff.idx") as writer:
        for key, labels, payload, id_ in records.header_records():
            writer.write(key, pack_record(labels, payload, id=id_))
    assert (tmp_path / "ff.rec").read_bytes() == (FIXTURES / "mxnet_header.rec").read_bytes()
    assert (tmp_path / "ff.idx").read_bytes() == (FIXTURES / "mxnet_header.idx").read_bytes()
    # the committed focusface-written file is today's output too, and mxnet read it identically
    assert (tmp_path / "ff.rec").read_bytes() == (FIXTURES / "focusface_header.rec").read_bytes()
    assert MX["focusface_header_file_identical_to_mxnet"] is True
    assert MX["focusface_header"] == MX["mxnet_header"]


def test_mxnet_read_focusfaces_packed_folder():
    ds = InsightFaceDataset(FIXTURES / "focusface_packed")
    seen = MX["focusface_packed"]
    assert ds.has_header and len(ds) == 6 and ds.num_classes == 2
    assert seen["0"]["flag"] == 2 and seen["0"]["label"] == [7.0, 9.0]
    for i in range(len(ds)):
        key = int(ds.image_keys[i])
        image, label = ds[i]
        assert seen[str(key)]["label"] == float(label) and seen[str(key)]["shape"] == list(image.shape)
        assert hashlib.sha256(ds.records[key]).hexdigest() == seen[str(key)]["record_sha256"]
    assert [seen["7"]["label"], seen["8"]["label"]] == [[1.0, 4.0], [4.0, 7.0]]
    assert ds.images_per_identity().tolist() == [3, 3]
