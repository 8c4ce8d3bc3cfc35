"""Guarantee 2, every reader has a budget before it allocates: memory and time are bounded by the input's size or a
stated limit, checked before decoding, with one clear error.

Each hostile input is small; before its fix each one exhausted memory or ran for minutes. The commands run in a
child process under a hard memory limit (`RLIMIT_AS`), so a regression fails the test instead of the machine, and
under a time limit, so it cannot stall the suite."""

import _codecs
import pickle
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from command_line import CLI, refused

from focusface.checkpoints import save_checkpoint
from focusface.evalsets import write_bin
from focusface.images import encode_image
from focusface.model import FocusFace
from focusface.synthfaces import render_faces

MEMORY = 3 << 30  # address space of a command: torch alone maps about 1 GB


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def bounded(*args, timeout=60, cwd=None, **kw):
    "A focusface command under the memory limit and a time limit; (result, seconds)."
    started = time.time()
    out = subprocess.run(
        CLI + [str(a) for a in args],
        capture_output=True,
        text=True,
        preexec_fn=_limited,
        timeout=timeout,
        cwd=cwd,
        **kw,
    )
    return out, time.time() - started


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("budgets")
    faces = render_faces(4, np.arange(20) // 2, np.arange(20) % 2)
    write_bin(d / "eval.bin", [encode_image(f) for f in faces], [True, False] * 5)
    for i, face in enumerate(faces[:8]):
        (d / "faces" / f"p{i // 2}").mkdir(parents=True, exist_ok=True)
        (d / "faces" / f"p{i // 2}" / f"{i}.jpg").write_bytes(encode_image(face))
    save_checkpoint(FocusFace("tiny").eval(), d / "m.pt")
    return d


class _Encode:
    "A pickled call of `_codecs.encode(inner, 'hex')`: each one doubles what it is given."

    def __init__(self, inner):
        self.inner = inner

    def __reduce__(self):
        return (_codecs.encode, (self.inner, "hex"))


def codec_bomb(path: Path, doublings: int = 30) -> Path:
    "A .bin of a few hundred bytes whose first image would be 8 GB: `_codecs.encode` nested `doublings` times."
    image = b"ab" * 4
    for _ in range(doublings):
        image = _Encode(image)
    path.write_bytes(pickle.dumps(([image, image], [True]), protocol=2))
    return path


def reference_bomb(path: Path) -> Path:
    "A 5 MB .bin that names one small JPEG two million times by reference (1.3 GB of images)."
    tiny = encode_image(np.zeros((8, 8, 3), np.uint8))
    path.write_bytes(pickle.dumps(([tiny] * 2_000_000, [True, False] * 500_000), protocol=4))
    return path


@pytest.mark.parametrize("bomb", [codec_bomb, reference_bomb])
@pytest.mark.parametrize("command", ["info", "info --check", "evaluate"])
def test_a_bin_that_would_grow_without_bound_is_refused_before_it_grows(inputs, tmp_path, bomb, command):
    """A 398-byte .bin of nested `_codecs.encode` reached 3-4 GB; one object referenced 2 M times in a 5 MB .bin made
    `info --check` and `evaluate` run for minutes."""
    data = bomb(tmp_path / "set.bin")
    args = {
        "info": ["info", data],
        "info --check": ["info", "--check", data],
        "evaluate": ["evaluate", inputs / "m.pt", data],
    }
    out, seconds = bounded(*args[command])
    refused(out, "set.bin")
    assert seconds < 30, seconds


def test_a_pairs_table_beside_a_bin_is_read_within_its_budget(inputs, tmp_path):
    """A 300 MB junk `eval.pairs.tsv` beside a .bin made `info` use 5.6 GB."""
    (tmp_path / "eval.bin").write_bytes((inputs / "eval.bin").read_bytes())
    with open(tmp_path / "eval.pairs.tsv", "wb") as f:
        for _ in range(100):
            f.write(b"identity_a\tidentity_b\n" + b"x" * (1 << 20) + b"\n")
    out, seconds = bounded("info", tmp_path / "eval.bin")
    refused(out, "eval.pairs.tsv", "not its pairs table")


def lying_landmarks(path: Path) -> Path:
    "A 3 kB landmarks .npz whose compressed member's header claims 375 million int64 (3 GB)."
    header = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<i8", fortran_order=False, shape=(375_000_000,)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("landmarks.npy", header.getvalue() + bytes(2000))
        z.writestr("keys.npy", header.getvalue() + bytes(2000))
    return path


def zeros_landmarks(path: Path) -> Path:
    "An honest compressed .npz of 2.2 GB of zeros in 2 MB: more than a compressed file may take in memory."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("landmarks.npy", "w", force_zip64=True) as m:
        np.lib.format.write_array_header_1_0(m, dict(descr="<f4", fortran_order=False, shape=(4_000_000, 68, 2)))
        block = bytes(1 << 24)
        for _ in range(4_000_000 * 68 * 2 * 4 // len(block)):
            m.write(block)
        m.write(bytes(4_000_000 * 68 * 2 * 4 % len(block)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("npz", [lying_landmarks, zeros_landmarks])
def test_a_landmarks_file_is_checked_before_its_arrays_are_made(inputs, tmp_path, npz):
    """A 2.9 MB landmarks .npz whose compressed member claims 375 M int64 reached 3 GB (map_npz read compressed
    members whole)."""
    landmarks = npz(tmp_path / "lm.npz")
    out, _ = bounded("mask", inputs / "faces", tmp_path / "masked", "--landmarks", landmarks, "--workers", "0")
    refused(out, "lm.npz")
    out, _ = bounded("evaluate", inputs / "m.pt", inputs / "eval.bin", "--landmarks", landmarks)
    refused(out, "lm.npz")


BOMB_YAML = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)  # nine levels of nine: 387 million strings


def test_yaml_aliases_are_refused_before_they_expand(inputs, tmp_path):
    """YAML alias bombs in a train config or params.yaml ran for minutes and grew 28 MB/s."""
    (tmp_path / "bomb.yaml").write_text(BOMB_YAML)
    out, seconds = bounded("train", "--config", tmp_path / "bomb.yaml")
    refused(out, "bomb.yaml", "an alias (*a) is not accepted")
    (tmp_path / "params.yaml").write_text("setting: demo\nseeds: [0]\n" + BOMB_YAML)
    started = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.experiment",
            "check",
            str(tmp_path / "params.yaml"),
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        preexec_fn=_limited,
        timeout=60,
    )
    assert out.returncode != 0 and "alias" in out.stderr and "Traceback" not in out.stderr, out.stderr[-1000:]
    assert time.time() - started < 30 and seconds < 30


def _progressive_stall() -> bytes:
    "A 100 kB JPEG of 10,000 scans: decoding it passes over the image 10,000 times."
    import cv2

    face = render_faces(1, np.arange(1), np.zeros(1, int))[0]
    jpeg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    return jpeg[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x00" * 10_000 + b"\xff\xd9"


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(inputs, tmp_path):
    """A 714 kB progressive JPEG with 20,000 scans took 63 s to decode."""
    (tmp_path / "slow.jpg").write_bytes(_progressive_stall())
    out, seconds = bounded("verify", inputs / "m.pt", tmp_path / "slow.jpg", tmp_path / "slow.jpg")
    refused(out, "slow.jpg", "scans")
    assert seconds < 30


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_large_photo_costs_a_bounded_amount_of_memory(inputs, tmp_path, suffix):
    """An 8000x8000 black JPEG cost 6.1 GB in `verify`, a 62 MP PNG 6.4 GB: faces are searched for in a copy of at
    most 4,096 px a side, and a photo over the stated limit (64 MP, FOCUSFACE_MAX_IMAGE_PIXELS) is refused."""
    photo = tmp_path / f"big{suffix}"
    photo.write_bytes(encode_image(np.zeros((7800, 7800, 3), np.uint8), suffix))
    out, _ = bounded("verify", inputs / "m.pt", photo, photo, timeout=120)
    refused(out, "big", "no face found")  # it ran, within the memory limit
    out, _ = bounded(
        "verify",
        inputs / "m.pt",
        photo,
        photo,
        env=dict(__import__("os").environ, FOCUSFACE_MAX_IMAGE_PIXELS="50000000"),
    )
    refused(out, "more than the 50,000,000 focusface decodes")


def test_absurd_sizes_are_refused_before_any_work(tmp_path):
    """`synth --identities 1000000000000` and params `data.train_identities: 1e12` passed their checks."""
    out, seconds = bounded("synth", tmp_path / "demo", "--train-identities", "1000000000000")
    refused(out, "--train-identities must be at most 10,000,000")
    out, _ = bounded("synth", tmp_path / "demo", "--identities", "4000000", "--images-per-identity", "3")
    refused(out, "a synthetic set holds at most 10,000,000")
    assert not (tmp_path / "demo").exists() and seconds < 30
    params = Path(__file__).parents[1] / "params.yaml"
    text = params.read_text().replace("train_identities: 300", "train_identities: 1000000000000")
    (tmp_path / "params.yaml").write_text(text)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.experiment",
            "check",
            str(tmp_path / "params.yaml"),
            str(tmp_path / "c.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "data.train_identities: must be an integer from 1 to 10,000,000" in out.stderr


def test_workers_are_capped_at_the_cpus_and_it_says_so(inputs, tmp_path):
    """`mask --workers 500` started 500 processes."""
    out, _ = bounded("mask", inputs / "faces", tmp_path / "masked", "--workers", "500", "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "workers=500 is more than the" in out.stderr and "CPUs this process may use" in out.stderr


def test_a_script_that_starts_workers_unguarded_is_told_so_and_does_not_hang(inputs, tmp_path):
    """The README's example run as a plain script, without `if __name__ == "__main__":`, re-ran itself in the worker
    processes and hung for good."""
    call = f"focusface.mask_dataset({str(inputs / 'faces')!r}, {str(tmp_path / 'out')!r}, workers=2, progress=False)"
    (tmp_path / "plain.py").write_text(f"import focusface\n{call}\n")
    out = subprocess.run([sys.executable, "plain.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "plain.py:2 starts worker processes from the script's top level" in out.stderr
    assert 'if __name__ == "__main__":' in out.stderr and not (tmp_path / "out").exists()
    (tmp_path / "guarded.py").write_text(f"import focusface\n\nif __name__ == '__main__':\n    {call}\n")
    out = subprocess.run([sys.executable, "guarded.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and (tmp_path / "out" / "masks.jsonl").is_file(), out.stderr[-2000:]
