import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Real faces for development live outside the repository, never inside it; scripts/test points
# FOCUSFACE_LFW_SAMPLE at their usual place (see README).
LFW_SAMPLE = Path(os.environ["FOCUSFACE_LFW_SAMPLE"]) if os.environ.get("FOCUSFACE_LFW_SAMPLE") else None
RWMFD_SAMPLE = Path(os.environ["FOCUSFACE_RWMFD_SAMPLE"]) if os.environ.get("FOCUSFACE_RWMFD_SAMPLE") else None


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one thread per xdist worker: two workers on two cores, no oversubscription


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def lfw_sample() -> Path:
    if LFW_SAMPLE is None or not (LFW_SAMPLE / "aligned").is_dir():
        pytest.skip(
            f"the LFW development sample is absent ({LFW_SAMPLE or 'FOCUSFACE_LFW_SAMPLE is not set'}); "
            "set FOCUSFACE_LFW_SAMPLE to its folder (scripts/test does)"
        )
    return LFW_SAMPLE


@pytest.fixture
def rwmfd_sample() -> Path:
    if RWMFD_SAMPLE is None or not (RWMFD_SAMPLE / "photos").is_dir():
        pytest.skip(
            f"the RWMFD sample of real masked photos is absent ({RWMFD_SAMPLE or 'FOCUSFACE_RWMFD_SAMPLE is not set'}); "
            "set FOCUSFACE_RWMFD_SAMPLE to its folder (scripts/test does)"
        )
    return RWMFD_SAMPLE


@pytest.fixture(scope="session")
def mtcnn():
    from focusface.align import MtcnnAligner
    from focusface.errors import FocusFaceError

    try:
        return MtcnnAligner()
    except FocusFaceError as e:
        pytest.skip(str(e))


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts small file systems for a test: `tmpfs("size=1m,ro")` is a tmpfs with those options under `tmp_path`,
    unmounted afterwards (mounting needs root: elsewhere the test is skipped, saying why)."""
    mounts = []

    def mount(options: str) -> Path:
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}) here ({made.stderr.decode().strip()[:80]})")
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
