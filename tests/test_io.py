import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from focusface.datasets import InsightFaceDataset, pack_folder
from focusface.errors import FormatError
from focusface.evalsets import EvalPairs, read_bin, read_eval_set, read_pairs_folder, write_bin
from focusface.images import decode_image, encode_image
from focusface.inspection import describe
from focusface.recordio import MAGIC, RecordReader, RecordWriter, pack_record, parse_index, scan_records, unpack_record

MAGIC_BYTES = struct.pack("<I", MAGIC)


def _face(seed, size=112):
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    image[size // 4 : size // 2, size // 4 :] = rng.integers(0, 255, 3, dtype=np.uint8)
    return image


def _write_folder(root, people=3, per_person=4, ext=".jpg"):
    for p in range(people):
        d = root / f"id{p}"
        d.mkdir(parents=True)
        for i in range(per_person):
            (d / f"id{p}_{i + 1:04d}{ext}").write_bytes(encode_image(_face(p * 100 + i), ext))


# --- RecordIO ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"abc",
        b"abcd",
        MAGIC_BYTES,
        b"xx" + MAGIC_BYTES,
        MAGIC_BYTES * 3 + b"q",
        bytes(range(256)) * 9 + MAGIC_BYTES,
    ],
)
def test_record_round_trip_with_and_without_splits(tmp_path, payload):
    with RecordWriter(tmp_path / "r.rec") as writer:
        writer.write(0, b"first")
        writer.write(1, payload)
        writer.write(2, b"last")
    reader = RecordReader(tmp_path / "r.rec")
    assert (reader[0], reader[1], reader[2]) == (b"first", payload, b"last")
    assert [data for _, data in scan_records(tmp_path / "r.rec")] == [b"first", payload, b"last"]
    assert os.path.getsize(tmp_path / "r.rec") % 4 == 0


def test_reader_random_access_with_sparse_unordered_keys(tmp_path):
    items = {17: b"a" * 5, 3: b"b" * 9, 250: b"c", 42: MAGIC_BYTES * 2}
    with RecordWriter(tmp_path / "r.rec") as writer:
        for k, v in items.items():
            writer.write(k, v)
    reader = RecordReader(tmp_path / "r.rec")
    assert len(reader) == 4 and 42 in reader and 5 not in reader
    for k in (250, 3, 42, 17):
        assert reader[k] == items[k]
    with pytest.raises(KeyError, match="no record with key 5"):
        reader[5]


def test_reader_survives_pickling_and_fork(tmp_path):
    with RecordWriter(tmp_path / "r.rec") as writer:
        for k in range(50):
            writer.write(k, bytes([k]) * (k + 1))
    reader = RecordReader(tmp_path / "r.rec")
    assert reader[3] == b"\x03" * 4  # opened in this process
    clone = pickle.loads(pickle.dumps(reader))
    assert clone[49] == b"\x31" * 50
    pid = os.fork()
    if pid == 0:  # the child reads through its own descriptor, the parent's offset is untouched
        os._exit(0 if all(reader[k] == bytes([k]) * (k + 1) for k in range(50)) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reader[10] == b"\x0a" * 11


def test_pack_unpack_record_headers():
    header, labels, payload = unpack_record(pack_record(5, b"img", id=3, id2=4))
    assert (header.flag, header.label, header.id, header.id2, labels, payload) == (0, 5.0, 3, 4, 5.0, b"img")
    header, labels, payload = unpack_record(pack_record(np.array([1.5, 2, 3]), b""))
    assert header.flag == 3 and labels.dtype == np.float32 and labels.tolist() == [1.5, 2, 3] and payload == b""
    # float32 labels are exact below 2^24 classes (MS1MV2 has 85,742)
    assert unpack_record(pack_record(85741, b""))[1] == 85741
    with pytest.raises(FormatError, match="shorter than the 24-byte IRHeader"):
        unpack_record(b"short")
    with pytest.raises(FormatError, match="says 5 labels follow"):
        unpack_record(struct.pack("<IfQQ", 5, 0, 0, 0) + b"\0" * 8)


def test_writer_leaves_nothing_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with RecordWriter(tmp_path / "r.rec") as writer:
            writer.write(0, b"x")
            raise RuntimeError("crash half-way")
    assert list(tmp_path.iterdir()) == []
    with RecordWriter(tmp_path / "r.rec") as writer:
        writer.write(0, b"x")
        with pytest.raises(ValueError, match="key 0 written twice"):
            writer.write(0, b"y")


def test_truncated_rec_names_file_and_key(tmp_path):
    with RecordWriter(tmp_path / "r.rec") as writer:
        writer.write(0, b"a" * 100)
        writer.write(1, b"b" * 100)
    data = (tmp_path / "r.rec").read_bytes()
    (tmp_path / "r.rec").write_bytes(data[:-40])
    reader = RecordReader(tmp_path / "r.rec")
    assert reader[0] == b"a" * 100
    with pytest.raises(FormatError, match=r"r\.rec key 1 .*truncated"):
        reader[1]


def test_wrong_magic_names_file_and_key(tmp_path):
    with RecordWriter(tmp_path / "r.rec") as writer:
        writer.write(0, b"a" * 8)
        writer.write(7, b"b" * 8)
    data = bytearray((tmp_path / "r.rec").read_bytes())
    data[16:20] = b"JUNK"
    (tmp_path / "r.rec").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"r\.rec key 7 \(byte 16\): wrong magic"):
        RecordReader(tmp_path / "r.rec")[7]


def test_idx_pointing_past_the_end(tmp_path):
    with RecordWriter(tmp_path / "r.rec") as writer:
        writer.write(0, b"a" * 8)
    (tmp_path / "r.idx").write_text("0\t0\n1\t4096\n")
    with pytest.raises(FormatError, match=r"r\.idx: key 1 \(line 2\) points at byte 4096, past the end"):
        RecordReader(tmp_path / "r.rec")


def test_bad_idx_lines(tmp_path):
    (tmp_path / "a.idx").write_text("0\t0\n1\n")
    with pytest.raises(FormatError, match="line 2 does not hold exactly two numbers"):
        parse_index(tmp_path / "a.idx")
    (tmp_path / "b.idx").write_text("0\t0\n-1\t8\n")
    with pytest.raises(FormatError, match="line 2: unexpected character '-'"):
        parse_index(tmp_path / "b.idx")
    with pytest.raises(FormatError, match="index file not found"):
        parse_index(tmp_path / "absent.idx")


def test_index_parse_matches_python_on_large_numbers(tmp_path):
    rng = np.random.default_rng(0)
    keys, offsets = rng.integers(0, 2**40, 1000), rng.integers(0, 2**50, 1000)
    (tmp_path / "x.idx").write_text("".join(f"{k}\t{o}\n" for k, o in zip(keys, offsets)))
    got_keys, got_offsets = parse_index(tmp_path / "x.idx")
    assert got_keys.tolist() == keys.tolist() and got_offsets.tolist() == offsets.tolist()


# --- insightface dataset folder ------------------------------------------------------------------------------


def test_pack_folder_and_read_back(tmp_path):
    _write_folder(tmp_path / "faces", people=3, per_person=4)
    pack_folder(tmp_path / "faces", tmp_path / "ds")
    ds = InsightFaceDataset(tmp_path / "ds")
    assert (len(ds), ds.num_classes, ds.has_header) == (12, 3, True)
    assert ds.images_per_identity().tolist() == [4, 4, 4]
    assert ds.labels().tolist() == [0] * 4 + [1] * 4 + [2] * 4
    image, label = ds[5]
    assert image.dtype == np.uint8 and image.shape == (112, 112, 3) and label == 1
    # JPEG bytes are stored unchanged: the decoded image is the file's
    original = decode_image((tmp_path / "faces" / "id1" / "id1_0002.jpg").read_bytes())
    assert np.array_equal(image, original)
    assert (tmp_path / "ds" / "identities.tsv").read_text().splitlines()[2] == "2\tid2"
    with pytest.raises(FileExistsError, match="exists"):
        pack_folder(tmp_path / "faces", tmp_path / "ds")


def test_pack_folder_rejects_mixed_sizes_and_leaves_nothing(tmp_path):
    _write_folder(tmp_path / "faces", people=2, per_person=2)
    (tmp_path / "faces" / "id1" / "id1_0009.jpg").write_bytes(encode_image(_face(9, size=96)))
    with pytest.raises(FormatError, match=r"id1_0009\.jpg: 96x96 differs"):
        pack_folder(tmp_path / "faces", tmp_path / "out" / "ds")
    assert list((tmp_path / "out").iterdir()) == []


def test_headerless_rec(tmp_path):
    (tmp_path / "property").write_text("2,112,112\n")
    with RecordWriter(tmp_path / "train.rec") as writer:
        for key in range(4):
            writer.write(key, pack_record([key % 2, 0.0], encode_image(_face(key))))
    ds = InsightFaceDataset(tmp_path)
    assert not ds.has_header and len(ds) == 4
    assert [ds[i][1] for i in range(4)] == [0, 1, 0, 1]
    assert ds.images_per_identity().tolist() == [2, 2]


def test_missing_property_is_explained(tmp_path):
    _write_folder(tmp_path / "faces", people=1, per_person=1)
    pack_folder(tmp_path / "faces", tmp_path / "ds")
    (tmp_path / "ds" / "property").unlink()
    with pytest.raises(FormatError, match=r"ds/property: missing; .*num_classes,height,width"):
        InsightFaceDataset(tmp_path / "ds")


def test_corrupt_jpeg_names_file_and_key(tmp_path):
    (tmp_path / "property").write_text("1,112,112\n")
    with RecordWriter(tmp_path / "train.rec") as writer:
        writer.write(0, pack_record(0, encode_image(_face(0))))
        writer.write(1, pack_record(0, encode_image(_face(1))[:40]))
    ds = InsightFaceDataset(tmp_path)
    ds[0]
    with pytest.raises(
        FormatError, match=r"train\.rec key 1: a JPEG whose header does not give its size .* corrupt or truncated"
    ):
        ds[1]


# --- evaluation .bin -----------------------------------------------------------------------------------------


def test_bin_round_trip_bytes_and_arrays(tmp_path):
    images = [encode_image(_face(i)) for i in range(4)]
    write_bin(tmp_path / "e.bin", images, [True, False])
    pairs = read_bin(tmp_path / "e.bin")
    assert pairs.images == images and pairs.issame.tolist() == [True, False] and pairs.name == "e"
    arrays = [_face(i) for i in range(2)]
    write_bin(tmp_path / "a.bin", arrays, np.array([True]))
    got = read_bin(tmp_path / "a.bin")
    assert all(np.array_equal(a, b) for a, b in zip(got.images, arrays))
    first, second, same = got.pair(0)
    assert same and np.array_equal(first, arrays[0])


def test_python2_style_bin(tmp_path):
    """Python 2 wrote str (bytes) with protocol 2; Python 3 re-creates that shape with _codecs.encode."""
    images = [encode_image(_face(i)) for i in range(2)]
    (tmp_path / "py2.bin").write_bytes(pickle.dumps((images, [True]), protocol=2))
    assert read_bin(tmp_path / "py2.bin").images == images
    # numpy arrays in a protocol-2 pickle need numpy's reconstructors, which are allowed
    (tmp_path / "np.bin").write_bytes(pickle.dumps(([_face(0), _face(1)], [False]), protocol=2))
    assert read_bin(tmp_path / "np.bin").issame.tolist() == [False]


def test_bin_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([RunsCode(), b"x"], [True])))
    with pytest.raises(FormatError, match=r"evil\.bin: refused: the pickle asks for (posix|os)\.system"):
        read_bin(tmp_path / "evil.bin")
    assert not marker.exists()
    # and through the command line, in a separate process, nothing runs either
    out = subprocess.run(
        [sys.executable, "-m", "focusface.cli", "info", str(tmp_path / "evil.bin")], capture_output=True, text=True
    )
    assert out.returncode == 2 and "refused" in out.stderr and not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"bins": []}, "expected a pickled 2-tuple"),
        (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
        (([b"a", "text"], [True]), r"bins\[1\] is str"),
        (([b"a", b"b"], [1]), r"issame_list\[0\] is int"),
        (([np.zeros((2, 2), np.float32), b"b"], [True]), r"bins\[0\] is ndarray float32"),
    ],
)
def test_bin_with_wrong_structure(tmp_path, obj, message):
    (tmp_path / "bad.bin").write_bytes(pickle.dumps(obj))
    with pytest.raises(FormatError, match=message):
        read_bin(tmp_path / "bad.bin")


def test_bin_that_is_not_a_pickle(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(FormatError, match=r"junk\.bin: not a readable evaluation \.bin"):
        read_bin(tmp_path / "junk.bin")


# --- LFW-style folders ---------------------------------------------------------------------------------------


def test_pairs_folder_gives_the_bin_structure(tmp_path):
    _write_folder(tmp_path / "lfw", people=2, per_person=3, ext=".png")
    (tmp_path / "lfw" / "pairs.txt").write_text("1\t2\nid0\t1\t3\nid0\t2\tid1\t3\n")
    pairs = read_eval_set(tmp_path / "lfw")
    assert len(pairs) == 2 and pairs.issame.tolist() == [True, False]
    assert pairs.images[3] == (tmp_path / "lfw" / "id1" / "id1_0003.png").read_bytes()
    images, issame = pairs  # unpacks like read_bin's tuple
    assert len(images) == 4


def test_pairs_file_naming_a_missing_image(tmp_path):
    _write_folder(tmp_path / "lfw", people=1, per_person=2)
    (tmp_path / "lfw" / "pairs.txt").write_text("id0 1 2\nid0 1 7\n")
    with pytest.raises(FormatError, match=r"pairs\.txt:2: image .*id0_0007\.jpg \(or \.png\) not found"):
        read_pairs_folder(tmp_path / "lfw")


def test_eval_pairs_checks_counts():
    with pytest.raises(FormatError, match="3 images for 2 pairs"):
        EvalPairs([b"a", b"b", b"c"], [True, False], name="odd")


# --- real faces and the command line -------------------------------------------------------------------------


def test_lfw_sample_packs_and_describes(lfw_sample, tmp_path):
    pack_folder(lfw_sample / "aligned", tmp_path / "lfw-rec")
    info = describe(tmp_path / "lfw-rec")
    assert (info["images"], info["identities"], info["image_size"]) == (320, 40, [112, 112])
    assert info["images_per_identity"] == {"min": 8, "median": 8.0, "max": 8}


def test_info_command_prints_and_saves_a_contact_sheet(tmp_path):
    _write_folder(tmp_path / "faces", people=2, per_person=3)
    pack_folder(tmp_path / "faces", tmp_path / "ds")
    write_bin(tmp_path / "e.bin", [encode_image(_face(i)) for i in range(6)], [True, False, True])
    for target, expected in ((tmp_path / "ds", "identities: 2"), (tmp_path / "e.bin", "genuine: 2")):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "focusface.cli",
                "info",
                str(target),
                "--sheet",
                str(tmp_path / f"{target.name}.png"),
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert expected in out.stdout
        sheet = decode_image((tmp_path / f"{target.name}.png").read_bytes())
        assert sheet.shape[0] == 112 and sheet.shape[1] == 112 * 6
    out = subprocess.run(
        [sys.executable, "-m", "focusface.cli", "info", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert out.returncode == 2 and "nothing" in out.stderr


def test_pack_command_and_dataloader_workers(tmp_path):
    """From a folder of faces to a rec on the command line, then read by two DataLoader worker processes."""
    import torch

    _write_folder(tmp_path / "faces", people=4, per_person=5)
    out = subprocess.run(
        [sys.executable, "-m", "focusface.cli", "pack", str(tmp_path / "faces"), str(tmp_path / "ds")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "20 images of 4 identities" in out.stdout, out.stderr
    again = subprocess.run(
        [sys.executable, "-m", "focusface.cli", "pack", str(tmp_path / "faces"), str(tmp_path / "ds")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "exists" in again.stderr
    ds = InsightFaceDataset(tmp_path / "ds")
    ds[0]  # the parent opens the file first: workers must not share its descriptor's offset
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    images, labels = zip(*loader)
    labels = torch.cat(labels).tolist()
    assert labels == [i // 5 for i in range(20)]
    assert torch.equal(torch.cat(images)[7], torch.from_numpy(ds[7][0]))


def test_a_training_dataset_reaches_workers_as_shared_maps_not_copies(tmp_path, monkeypatch):
    """Pickled for a loader worker, a PairedFaces sends its index, keys and landmark arrays as the paths of read-only
    memory maps (arrays from 1 MB on; here from 1 byte, the set being small), and the worker's copy gives the same
    training items."""
    import pickle

    from focusface.files import WorkerShared
    from focusface.loaders import PairedFaces
    from focusface.synthdata import make_training_set

    make_training_set(tmp_path / "train", identities=6, images_per_identity=4, workers=0)
    dataset = PairedFaces(tmp_path / "train", seed=3)
    whole = len(pickle.dumps(dataset))
    monkeypatch.setattr(WorkerShared, "SHARE_BYTES", 1)
    wire = pickle.dumps(dataset)
    worker = pickle.loads(wire)
    assert isinstance(worker.keys, np.memmap) and isinstance(worker.faces.records.offsets, np.memmap)
    assert len(wire) < whole
    for index in (0, 7, 23):
        mine, theirs = dataset[(index, 2)], worker[(index, 2)]
        assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)


def test_shared_array_files_go_with_the_object_that_wrote_them(tmp_path, monkeypatch):
    """The files a WorkerShared object writes for its workers are removed when the object is collected, not only
    when the process exits: a long-lived process building many datasets keeps none of the earlier ones' files."""
    import gc
    import pickle

    from focusface.files import WorkerShared
    from focusface.loaders import PairedFaces
    from focusface.synthdata import make_training_set

    make_training_set(tmp_path / "train", identities=6, images_per_identity=4, workers=0)
    monkeypatch.setattr(WorkerShared, "SHARE_BYTES", 1)
    dataset = PairedFaces(tmp_path / "train", seed=3)
    worker = pickle.loads(pickle.dumps(dataset))
    files = [os.path.abspath(path) for _, path in dataset._shared_files.values()]
    assert files and all(os.path.isfile(f) for f in files)
    del dataset
    gc.collect()
    assert not any(os.path.exists(f) for f in files)
    assert worker[(0, 1)]["unmasked"].shape == (112, 112, 3)  # the worker's maps still read
