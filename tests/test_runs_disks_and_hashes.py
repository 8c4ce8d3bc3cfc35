"""Training folders, full disks and hashes: every writer checks every path its command reads; a training folder is
locked and only a run's folder is replaced; a full disk leaves nothing half-written and says where; files without
their hashes are refused; odd values get one line. Each test failed before its fix (the second round of trying
the commands as a careless user would; the later rounds are the guarantee files, test_nothing_lost.py and others)."""

import json
import os
import subprocess
import time

import numpy as np
import pytest
from checkpoint_edits import rehash
from command_line import CLI, refused, run
from command_line import train_args as _train_args

from focusface.evalsets import write_bin
from focusface.images import encode_image
from focusface.synthdata import make_training_set


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel2") / "train"
    make_training_set(root, identities=8, images_per_identity=4, workers=0)
    return root


def test_train_never_empties_a_folder_that_holds_its_config_or_is_not_a_run(faces, tmp_path):
    """`train --config cfgdir/my.yaml out=cfgdir --overwrite` deleted my.yaml and other.yaml, trained, then failed."""
    cfgdir = tmp_path / "cfgdir"
    cfgdir.mkdir()
    (cfgdir / "my.yaml").write_text("backbone: demo\nepochs: 1\n")
    (cfgdir / "other.yaml").write_text("mine\n")
    refused(
        run("train", "--config", cfgdir / "my.yaml", *_train_args(faces, cfgdir), "--overwrite"), "cfgdir", "my.yaml"
    )
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "paper.tex").write_text("\\section{}")
    refused(run("train", *_train_args(faces, notes), "--overwrite"), "focusface did not write", "paper.tex")
    assert sorted(p.name for p in cfgdir.iterdir()) == ["my.yaml", "other.yaml"] and (notes / "paper.tex").is_file()


def test_a_second_train_run_to_one_folder_stops_at_once_and_deletes_nothing(faces, tmp_path):
    """Two runs to one `out` both trained (interleaving train.log); a second with --overwrite deleted the first's folder."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        CLI + ["train", *_train_args(faces, out, epochs=30)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / "train.log").is_file() and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "train.log").is_file(), "the first run did not start"
        for extra in ([], ["--overwrite"], ["--resume"]):
            started = time.time()
            refused(run("train", *_train_args(faces, out, epochs=30), *extra), "being written by another focusface run")
            assert time.time() - started < 30, "it stops before reading the data"
        assert (out / "train.log").is_file() and first.poll() is None, "the first run and its folder are untouched"
    finally:
        first.kill()
        first.wait()


def test_overrides_may_follow_the_flags(faces, tmp_path):
    out = run("train", "--config", "/nonexistent.yaml", "--overwrite", "max_steps=1", "lr=1e-3")
    refused(out, "/nonexistent.yaml: config file not found")  # parsed, then the config is the problem (not argparse)


def test_info_sheet_never_replaces_a_file_silently(tmp_path):
    data = tmp_path / "eval.bin"
    write_bin(data, [encode_image(np.full((112, 112, 3), 90, np.uint8))] * 20, [True, False] * 5)
    (tmp_path / "sheet.png").write_bytes(b"my drawing")
    refused(run("info", data, "--sheet", tmp_path / "sheet.png"), "sheet.png exists", "--overwrite")
    assert (tmp_path / "sheet.png").read_bytes() == b"my drawing"
    refused(run("info", data, "--sheet", data, "--overwrite"), "is the source")
    refused(run("info", data, "--sheet", tmp_path / "sheet.png", "--overwrite"), "a file focusface did not write")
    assert (tmp_path / "sheet.png").read_bytes() == b"my drawing"
    assert run("info", data, "--sheet", tmp_path / "ours.png").returncode == 0
    assert (
        run("info", data, "--sheet", tmp_path / "ours.png", "--overwrite").returncode == 0
    )  # a contact sheet: replaced
    assert (tmp_path / "ours.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def small_disk(tmpfs):
    "A 1 MB file system that a write can fill."
    return tmpfs("size=1m")


def test_a_full_disk_leaves_no_masked_bin_without_its_manifest(tmp_path, small_disk):
    """`mask` of a .bin onto a disk that fills left the .bin without its manifest, and the rerun was refused."""
    rng = np.random.default_rng(0)
    images = [encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(120)]  # ~3 MB
    write_bin(tmp_path / "set.bin", images, [True, False] * 30)
    out = run("mask", tmp_path / "set.bin", small_disk / "set.mm.bin", "--workers", "0", "--quiet")
    refused(out, "disk is full", "set.mm.bin")
    assert sorted(p.name for p in small_disk.iterdir()) == [], "no .bin, no manifest, no temporary, no lock"


def test_a_full_disk_stops_embed_with_a_message_not_a_bus_error(tmp_path, small_disk):
    """`embed` died with SIGBUS through a memory-mapped temporary and left it filling the disk."""
    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    save_checkpoint(FocusFace("tiny", embedding_size=512).eval(), tmp_path / "m.pt")
    write_bin(tmp_path / "big.bin", [encode_image(np.full((112, 112, 3), 90, np.uint8))] * 2000, [True, False] * 500)
    out = run("embed", tmp_path / "m.pt", tmp_path / "big.bin", small_disk / "e.npz", "--quiet")  # 4 MB of embeddings
    refused(out, "e.npz", "MB")
    assert out.returncode != -7 and sorted(p.name for p in small_disk.iterdir()) == []


def test_a_manifest_or_checkpoint_without_its_hash_is_refused_and_a_development_format_too(tmp_path):
    """A manifest whose fingerprint, or a checkpoint whose sha256, was simply deleted replayed or loaded without a word."""
    import torch

    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    rng = np.random.default_rng(1)
    write_bin(
        tmp_path / "set.bin",
        [encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(20)],
        [True, False] * 5,
    )
    assert run("mask", tmp_path / "set.bin", tmp_path / "a.bin", "--workers", "0", "--quiet").returncode == 0
    lines = (tmp_path / "a.masks.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    del header["fingerprint"]
    (tmp_path / "edited.jsonl").write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    refused(
        run("mask", tmp_path / "set.bin", tmp_path / "b.bin", "--replay", tmp_path / "edited.jsonl", "--quiet"),
        "edited.jsonl",
        "no fingerprint",
    )
    del header["sampler"]  # nor without the sampler version as well (a development format, never released)
    (tmp_path / "older.jsonl").write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    refused(
        run("mask", tmp_path / "set.bin", tmp_path / "c.bin", "--replay", tmp_path / "older.jsonl", "--quiet"),
        "older.jsonl",
        "no fingerprint",
    )
    save_checkpoint(FocusFace("tiny"), tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    del raw["sha256"]
    torch.save(raw, tmp_path / "nohash.pt")
    refused(run("inspect", tmp_path / "nohash.pt"), "nohash.pt", "without its sha256 hash")
    raw["focusface_checkpoint"] = 1  # a development format (the weights' hash only), never released: not read
    del raw["extra_sha256"]
    torch.save(raw, tmp_path / "format1.pt")
    refused(run("inspect", tmp_path / "format1.pt"), "format1.pt", "format 1 is not supported")


def test_landmarks_belong_to_their_dataset_and_damage_is_reported(tmp_path):
    """`mask demo/train ... --landmarks lfw.npz` used another dataset's landmarks ("320 masks fitted"); `landmarks` on a
    rec with a damaged JPEG said "320 look right" with only a libjpeg line on stderr."""
    pytest.importorskip("dlib")
    from focusface.datasets import write_insightface_folder
    from focusface.synthfaces import render_faces

    faces = [encode_image(f) for f in render_faces(2, np.arange(6), np.zeros(6, int))]
    cut = faces[3][: len(faces[3]) * 2 // 3]  # a JPEG cut short: libjpeg repairs it, with a warning
    write_insightface_folder(
        tmp_path / "a",
        [(i, f) for i, f in enumerate(faces[:3] + [cut] + faces[4:])],
        num_images=6,
        names=[str(i) for i in range(6)],
        image_size=(112, 112),
    )
    write_insightface_folder(
        tmp_path / "b",
        [(i, f) for i, f in enumerate(faces)],
        num_images=6,
        names=[str(i) for i in range(6)],
        image_size=(112, 112),
    )
    out = run("landmarks", tmp_path / "a", tmp_path / "a.npz", "--quiet")
    assert out.returncode == 0 and "1 source image(s) are damaged" in out.stderr, out.stderr
    refused(
        run(
            "mask",
            tmp_path / "b",
            tmp_path / "b-masked",
            "--landmarks",
            tmp_path / "a.npz",
            "--workers",
            "0",
            "--quiet",
        ),
        "a.npz",
        "another dataset",
    )
    assert not (tmp_path / "b-masked").exists()
    assert run("landmarks", tmp_path / "b", tmp_path / "b.npz", "--quiet").returncode == 0  # its own: fitted
    out = run(
        "mask", tmp_path / "b", tmp_path / "b-masked", "--landmarks", tmp_path / "b.npz", "--workers", "0", "--quiet"
    )
    assert out.returncode == 0 and "fitted to their landmarks" in out.stdout, out.stderr


def test_odd_values_and_files_get_one_clear_line(tmp_path):
    """Tracebacks and unclear messages of the first trial: a 25-TB embedding_size, opsets out of range, a file name
    in another encoding, a plain malicious pickle (after a torch warning), an ONNX file given to inspect."""
    import pickle

    import torch

    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    save_checkpoint(FocusFace("tiny"), tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    raw["config"]["embedding_size"] = 10**9
    rehash(raw)  # hashed as if written so: the size check, not the hash, must refuse it
    torch.save(raw, tmp_path / "huge.pt")
    started = time.time()
    refused(run("inspect", tmp_path / "huge.pt"), "embedding_size=1000000000, but")
    assert time.time() - started < 30
    for opset in ("99", "3"):
        refused(run("export", tmp_path / "m.pt", tmp_path / "m.onnx", "--opset", opset), "opset must be an ONNX opset")
    odd = tmp_path / os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    (odd / "p0").mkdir(parents=True)
    (odd / "p0" / "0.jpg").write_bytes(encode_image(np.full((112, 112, 3), 90, np.uint8)))
    (tmp_path / os.fsdecode(b"ids\xe9") / os.fsdecode(b"ren\xe9e")).mkdir(parents=True)
    (tmp_path / os.fsdecode(b"ids\xe9") / os.fsdecode(b"ren\xe9e") / "0.jpg").write_bytes(
        encode_image(np.full((112, 112, 3), 90, np.uint8))
    )
    refused(
        run("mask", tmp_path / os.fsdecode(b"ids\xe9"), tmp_path / "masked", "--workers", "0", "--quiet"),
        "not a UTF-8 file name",
    )
    refused(run("pack", tmp_path / os.fsdecode(b"ids\xe9"), tmp_path / "packed"), "not a UTF-8 file name")

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": RunsCode()}, protocol=4))
    said = refused(run("inspect", tmp_path / "evil.pt"), "not a PyTorch weight file", "may be unsafe")
    assert "Warning" not in said and not (tmp_path / "pwned").exists()
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x032.0")
    refused(run("inspect", tmp_path / "m.onnx"), "an ONNX model, not a PyTorch weight file")
    write_bin(tmp_path / "x.bin", [encode_image(np.full((112, 112, 3), 90, np.uint8))] * 20, [True, False] * 5)
    refused(
        run("mask", tmp_path / "x.bin", tmp_path / "y.bin", "--spec", "surgical-pink-polka"),
        "mask --spec 'surgical-pink-polka': unknown colour 'polka'",
    )  # said once, not twice
    refused(
        run("evaluate", tmp_path / "m.pt", "synthetic", "--device", "tpu"), "--device 'tpu'"
    )  # the flag, not device=


def test_odd_values_of_the_third_sweep_get_one_clear_line(tmp_path):
    """A negative seed was a NumPy traceback; --quality 500 was taken silently; an output under a file said 'File
    exists'; a flat folder given to pack said 'no images found'; '--opset abc' spoke of '_positive'."""

    def usage_error(out, expected):  # argparse's: the usage, then one line
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert expected in out.stderr.strip().splitlines()[-1], out.stderr

    write_bin(tmp_path / "x.bin", [encode_image(np.full((112, 112, 3), 90, np.uint8))] * 20, [True, False] * 5)
    usage_error(
        run("mask", tmp_path / "x.bin", tmp_path / "y.bin", "--seed", "-1"),
        "--seed: must be an integer, 0 or more, got -1",
    )
    (tmp_path / "faces" / "p0").mkdir(parents=True)
    (tmp_path / "faces" / "p0" / "0.jpg").write_bytes(encode_image(np.full((112, 112, 3), 90, np.uint8)))
    refused(
        run("pack", tmp_path / "faces", tmp_path / "packed", "--quality", "500"),
        "--quality must be an integer in [1, 100]",
    )
    (tmp_path / "a_file").write_text("")
    refused(run("mask", tmp_path / "x.bin", tmp_path / "a_file" / "y.bin"), "a_file is a file, not a folder")
    refused(
        run("pack", tmp_path / "faces" / "p0", tmp_path / "packed"),
        "1 image(s) at its top level, none in an identity folder",
    )
    usage_error(
        run("export", tmp_path / "m.pt", tmp_path / "m.onnx", "--opset", "abc"),
        "--opset: must be a positive integer, got 'abc'",
    )
    refused(run("synth", tmp_path / "demo", "--eval-pairs-per-fold", "3"), "--eval-pairs-per-fold must be even")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "faces", "x.bin"]  # nothing written


def test_the_python_api_raises_focusface_errors_at_its_boundary(tmp_path):
    from focusface.checkpoints import save_checkpoint
    from focusface.errors import FocusFaceError
    from focusface.inference import verify
    from focusface.maskdata import mask_dataset
    from focusface.model import FocusFace

    write_bin(tmp_path / "s.bin", [encode_image(np.full((112, 112, 3), 90, np.uint8))] * 20, [True, False] * 5)
    with pytest.raises(FocusFaceError, match="quality must be an integer"):
        mask_dataset(tmp_path / "s.bin", tmp_path / "o.bin", quality="high", workers=0, progress=False)
    with pytest.raises(FocusFaceError, match="seed must be an integer"):
        mask_dataset(tmp_path / "s.bin", tmp_path / "o.bin", seed="abc", workers=0, progress=False)
    model = FocusFace("tiny").eval()
    with pytest.raises(FocusFaceError, match="uint8"):
        model.embed_faces(np.zeros((1, 112, 112, 3), np.float32))
    save_checkpoint(model, tmp_path / "m.pt")
    face = tmp_path / "f.png"
    face.write_bytes(encode_image(np.full((112, 112, 3), 90, np.uint8), ".png"))
    with pytest.raises(FocusFaceError, match="threshold must be"):
        verify(tmp_path / "m.pt", face, face, threshold=True)
    assert not (tmp_path / "o.bin").exists()
