import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Real faces for development live outside the repository, never inside it; scripts/test points
# FOCUSFACE_LFW_SAMPLE at their usual place (see README).
LFW_SAMPLE = Path(os.environ["FOCUSFACE_LFW_SAMPLE"]) if os.environ.get("FOCUSFACE_LFW_SAMPLE") else None


if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one thread per xdist worker: two workers on two cores, no oversubscription


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def lfw_sample() -> Path:
    if LFW_SAMPLE is None or not (LFW_SAMPLE / "aligned").is_dir():
        pytest.skip(f"the LFW development sample is absent ({LFW_SAMPLE or 'FOCUSFACE_LFW_SAMPLE is not set'}); "
                    "set FOCUSFACE_LFW_SAMPLE to its folder (scripts/test does)")
    return LFW_SAMPLE
