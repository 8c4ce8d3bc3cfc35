"""Checks that need a CUDA device; skipped (with the reason) on machines without one."""

import pytest
import torch

from focusface.evaluate import evaluate
from focusface.model import FocusFace

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_evaluation_on_gpu_matches_cpu(tmp_path):
    torch.manual_seed(0)
    model = FocusFace("tiny").eval()
    cpu = evaluate(model, "synthetic", None, device="cpu", figures=False)
    gpu = evaluate(model, "synthetic", None, device="cuda", figures=False)
    for protocol in ("uu", "um", "mm"):
        assert gpu["synthetic0"][protocol]["eer"] == pytest.approx(cpu["synthetic0"][protocol]["eer"], abs=0.01)
