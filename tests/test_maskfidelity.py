"""The default masks against MaskTheFace's on the LFW development sample (skipped without it): geometry always,
the effect on dlib's recognizer where dlib is installed (`pip install "focusface[fidelity]"`)."""
import numpy as np
import pytest

from focusface.files import FocusFaceError
from focusface.maskfidelity import compare_geometry, read_maskthefaced, recognizer_effect


def test_default_masks_match_maskthefaced_geometry(lfw_sample):
    sample = lfw_sample
    geometry = compare_geometry(sample, read_maskthefaced(sample), styles=("paper", "bold"))
    mtf, paper, bold = (geometry[s]["all"] for s in ("maskthefaced", "paper", "bold"))
    assert mtf["n"] == paper["n"] > 300
    assert abs(paper["coverage"] - mtf["coverage"]) <= 2.0, (paper, mtf)
    assert abs(paper["top"] - mtf["top"]) <= 1.5, (paper, mtf)
    assert abs(paper["left"] - mtf["left"]) <= 3 and abs(paper["right"] - mtf["right"]) <= 3, (paper, mtf)
    # the first look was larger and higher: the calibration is what brings the default within the bounds
    assert bold["coverage"] - mtf["coverage"] > 3 and mtf["top"] - bold["top"] >= 2, (bold, mtf)


def test_a_damaged_variants_table_is_named(tmp_path):
    with pytest.raises(FocusFaceError, match="FOCUSFACE_LFW_SAMPLE"):
        read_maskthefaced(tmp_path)
    (tmp_path / "maskthefaced").mkdir()
    (tmp_path / "maskthefaced" / "variants.tsv").write_text("# file\tvariant\tstatus\tcoverage\na/a_1.jpg\tN95\tmasked\n")
    with pytest.raises(FocusFaceError, match=r"variants.tsv, line 2: expected 4 tab-separated fields"):
        read_maskthefaced(tmp_path)


@pytest.mark.slow
def test_default_masks_hurt_a_recognizer_as_maskthefaced_does(lfw_sample):
    sample = lfw_sample
    pytest.importorskip("dlib", reason='dlib is not installed: pip install "focusface[fidelity]"')
    effect = recognizer_effect(sample, read_maskthefaced(sample), styles=("paper",))
    assert effect["genuine_pairs"] > 2000 and effect["impostor_pairs"] > 8000
    ratio = effect["genuine_drop_paper"] / effect["genuine_drop_maskthefaced"]
    assert 0.85 <= ratio <= 1.15, effect
    assert effect["impostor_mm_paper"] <= effect["impostor_mm_maskthefaced"] + 0.005, effect
