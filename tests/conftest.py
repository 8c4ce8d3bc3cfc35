import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Real faces for development live beside the repository, never inside it (see README).
LFW_SAMPLE = Path(os.environ.get("FOCUSFACE_LFW_SAMPLE", REPO.parent / "shared" / "data" / "lfw-sample"))


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one thread per xdist worker: two workers on two cores, no oversubscription


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def lfw_sample() -> Path:
    if not (LFW_SAMPLE / "aligned").is_dir():
        pytest.skip(f"the LFW development sample is absent ({LFW_SAMPLE}/aligned); set FOCUSFACE_LFW_SAMPLE to use it")
    return LFW_SAMPLE
