"""The default and the landmark-fitted masks against MaskTheFace's on the LFW development sample (skipped without
it): geometry always, overlap and the effect on dlib's recognizer where dlib is installed (`focusface[align]`)."""

import numpy as np
import pytest

from focusface.errors import FocusFaceError
from focusface.maskfidelity import compare_geometry, overlap, read_maskthefaced, recognizer_effect, sample_landmarks


@pytest.fixture(scope="module")
def fitted_landmarks(request):
    "Landmarks of the sample faces MaskTheFace masked (dlib's predictor on the fixed box), or a skip."
    from conftest import LFW_SAMPLE

    if LFW_SAMPLE is None or not (LFW_SAMPLE / "maskthefaced").is_dir():
        pytest.skip("the LFW development sample is absent")
    pytest.importorskip("dlib", reason='dlib is not installed: pip install "focusface[align]"')
    rows = [r for r in read_maskthefaced(LFW_SAMPLE) if r["status"] == "masked"]
    return rows, sample_landmarks(LFW_SAMPLE, rows)


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
    (tmp_path / "maskthefaced" / "variants.tsv").write_text(
        "# file\tvariant\tstatus\tcoverage\na/a_1.jpg\tN95\tmasked\n"
    )
    with pytest.raises(FocusFaceError, match=r"variants.tsv, line 2: expected 4 tab-separated fields"):
        read_maskthefaced(tmp_path)


def test_fitted_masks_sit_where_maskthefaced_puts_them(lfw_sample, fitted_landmarks):
    rows, landmarks = fitted_landmarks
    assert len(landmarks) == len(rows)  # every face's landmarks pass the check
    geometry = compare_geometry(lfw_sample, rows, styles=("fitted",), landmarks=landmarks)
    mtf, fitted = geometry["maskthefaced"]["all"], geometry["fitted"]["all"]
    assert abs(fitted["coverage"] - mtf["coverage"]) <= 2.0 and abs(fitted["top"] - mtf["top"]) <= 1.5, (fitted, mtf)
    iou = overlap(lfw_sample, rows, styles=("paper", "fitted"), landmarks=landmarks)
    assert iou["fitted"].mean() > iou["paper"].mean() + 0.05, {k: v.mean() for k, v in iou.items()}
    # without landmarks the fitted style is the paper style (the template fallback), never no mask
    assert np.array_equal(overlap(lfw_sample, rows[:5], styles=("fitted",))["fitted"], iou["paper"][:5])


@pytest.mark.slow
def test_default_and_fitted_masks_hurt_a_recognizer_as_maskthefaced_does(lfw_sample, fitted_landmarks):
    rows, landmarks = fitted_landmarks
    effect = recognizer_effect(lfw_sample, rows, styles=("paper", "fitted"), landmarks=landmarks)
    assert effect["genuine_pairs"] > 2000 and effect["impostor_pairs"] > 8000
    for style in ("paper", "fitted"):
        assert 0.85 <= effect[f"genuine_drop_{style}"] / effect["genuine_drop_maskthefaced"] <= 1.15, (style, effect)
        assert effect[f"impostor_mm_{style}"] <= effect["impostor_mm_maskthefaced"] + 0.005, (style, effect)
    # fitting to the face's shape is what brings the impostors closer to MaskTheFace's
    assert effect["impostor_mm_fitted"] < effect["impostor_mm_paper"], effect
