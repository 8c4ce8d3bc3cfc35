import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from focusface.metrics import curve, kfold_accuracy, pyeer_metrics, rates_at, verification_metrics


def brute_force(genuine, impostor):
    """Every metric by looping over all candidate thresholds (each distinct score, and +inf)."""
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    candidates = sorted(set(genuine.tolist()) | set(impostor.tolist())) + [math.inf]
    points = [((impostor >= t).mean(), (genuine < t).mean(), t) for t in candidates]

    def lowest_fnmr(target):
        return min(fnmr for fmr, fnmr, _ in points if fmr <= target + 1e-12)

    eer = None
    for (fa, na, _), (fb, nb, _) in zip(points, points[1:]):
        if fa >= na and fb < nb:
            frac = (fa - na) / ((fa - na) - (fb - nb))
            eer = fa + frac * (fb - fa)
            break
    auc = sum(float(g > i) + 0.5 * float(g == i) for g in genuine for i in impostor) / (len(genuine) * len(impostor))
    g_mean, i_mean, spread = genuine.mean(), impostor.mean(), genuine.var() + impostor.var()
    return dict(
        eer=eer,
        fmr100=lowest_fnmr(0.01),
        fmr1000=lowest_fnmr(0.001),
        zero_fmr=lowest_fnmr(0.0),
        auc=auc,
        g_mean=g_mean,
        i_mean=i_mean,
        fdr=(g_mean - i_mean) ** 2 / spread if spread else math.inf,
        d_prime=abs(g_mean - i_mean) / math.sqrt(spread / 2) if spread else math.inf,
    )


scores = st.lists(st.integers(0, 12).map(lambda v: v / 12), min_size=1, max_size=40)  # coarse values: many ties


@settings(max_examples=300, deadline=None)
@given(genuine=scores, impostor=scores)
def test_metrics_agree_with_brute_force_on_tied_scores(genuine, impostor):
    ours, ref = verification_metrics(genuine, impostor), brute_force(genuine, impostor)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_g=st.integers(1, 300), n_i=st.integers(1, 600))
def test_metrics_agree_with_brute_force_on_random_scores(seed, n_g, n_i):
    "Every example is compared: the sizes stop where the brute force (n_g x n_i) stops being quick, not past it."
    rng = np.random.default_rng(seed)
    genuine, impostor = rng.normal(0.5, 0.2, n_g), rng.normal(0.0, 0.2, n_i)
    ours, ref = verification_metrics(genuine, impostor), brute_force(genuine, impostor)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_known_values_and_thresholds():
    m = verification_metrics([0.9, 0.8, 0.7, 0.4], [0.1, 0.2, 0.3, 0.5, 0.7])
    assert m["zero_fmr"] == 0.5 and m["threshold_zero_fmr"] == 0.8
    assert m["auc"] == pytest.approx(17.5 / 20)
    perfect = verification_metrics([0.9, 0.8], [0.1, 0.2])
    assert perfect["eer"] == 0 and perfect["fmr1000"] == 0 and perfect["auc"] == 1
    worst = verification_metrics([0.1, 0.2], [0.8, 0.9])
    assert worst["eer"] == 1 and worst["auc"] == 0 and worst["zero_fmr"] == 1
    at = rates_at([0.9, 0.8, 0.7, 0.4], [0.1, 0.2, 0.3, 0.5, 0.7], [0.5, 0.75])
    assert at["fmr"] == [0.4, 0.0] and at["fnmr"] == [0.25, 0.5]


def test_bad_scores():
    with pytest.raises(ValueError, match="no impostor scores"):
        verification_metrics([0.5], [])
    with pytest.raises(ValueError, match="NaN"):
        verification_metrics([0.5, float("nan")], [0.1])


def test_curve_points_are_exact_operating_points():
    rng = np.random.default_rng(1)
    genuine, impostor = rng.normal(0.6, 0.1, 2000), rng.normal(0.1, 0.1, 50000)
    c = curve(genuine, impostor, points=200)
    t, fmr, fnmr = map(np.array, (c["threshold"], c["fmr"], c["fnmr"]))
    assert len(t) < 450 and (np.diff(fmr) <= 0).all() and (np.diff(fnmr) >= 0).all()
    k = len(t) // 3
    assert fmr[k] == (impostor >= t[k]).mean() and fnmr[k] == (genuine < t[k]).mean()
    assert fmr.min() == 0 and fnmr.max() == 1 and fmr.max() == 1


def _insightface_reference(embeddings1, embeddings2, actual_issame, nrof_folds=10):
    """insightface's calculate_roc accuracy, written independently: sklearn KFold, squared L2 distance."""
    from sklearn.model_selection import KFold

    thresholds = np.arange(0, 4, 0.01)
    diff = embeddings1 - embeddings2
    dist = np.sum(np.square(diff), 1)
    accuracy = []
    for train_set, test_set in KFold(n_splits=nrof_folds, shuffle=False).split(np.arange(len(actual_issame))):
        acc_train = [np.mean(np.less(dist[train_set], t) == actual_issame[train_set]) for t in thresholds]
        best = int(np.argmax(acc_train))
        accuracy.append(np.mean(np.less(dist[test_set], thresholds[best]) == actual_issame[test_set]))
    return float(np.mean(accuracy)), float(np.std(accuracy))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kfold_accuracy_matches_insightfaces_procedure(seed):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(seed)
    n = 600
    issame = np.tile(np.repeat([True, False], 30), 10)
    base = rng.normal(size=(n, 32))
    e1 = base + 0.1 * rng.normal(size=(n, 32))
    e2 = np.where(issame[:, None], base + rng.normal(size=(n, 32)) * 0.9, rng.normal(size=(n, 32)))
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 /= np.linalg.norm(e2, axis=1, keepdims=True)
    ref_acc, ref_std = _insightface_reference(e1, e2, issame)
    ours = kfold_accuracy((e1 * e2).sum(1), issame)
    assert ours["accuracy"] == pytest.approx(ref_acc, abs=1e-9) and ours["std"] == pytest.approx(ref_std, abs=1e-9)
    assert 0.6 < ours["accuracy"] < 1.0  # a non-trivial case


def _pyeer(genuine, impostor):
    import warnings

    from pyeer.eer_info import get_eer_stats  # the real package, pinned in the dev extra (pyeer==0.5.6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyeer warns on curves that never cross, and on AUC < 0.5
        s = get_eer_stats(list(genuine), list(impostor))
    return dict(
        eer=s.eer,
        fmr100=s.fmr100,
        fmr1000=s.fmr1000,
        zero_fmr=s.fmr0,
        g_mean=s.gmean,
        i_mean=s.imean,
        auc=s.auc,
        d_prime=s.decidability,
    )


def _score_sets():
    "100 random score sets of 2,000 + 2,000 (half rounded to two decimals: ties), and degenerate ones."
    rng = np.random.default_rng(2021)
    for k in range(100):
        genuine, impostor = rng.normal(0.6, 0.15, 2000), rng.normal(0.1, 0.15, 2000)
        if k % 2:
            genuine, impostor = genuine.round(2), impostor.round(2)
        yield genuine, impostor
    yield np.array([0.5]), np.array([0.5])  # one score each, tied
    yield np.ones(10), np.zeros(10)  # perfectly separated
    yield np.zeros(10), np.ones(10)  # inverted: the curves never cross
    yield np.full(7, 0.3), np.full(9, 0.3)  # everything tied
    yield rng.integers(0, 3, 50) / 2, rng.integers(0, 3, 60) / 2  # three values in all


def test_pyeer_variants_equal_pyeer_itself():
    """pyeer_metrics and the pyeer variants of verification_metrics reproduce pyeer 0.5.6 to 1e-12."""
    checked = 0
    for genuine, impostor in _score_sets():
        ours, theirs = pyeer_metrics(genuine, impostor), _pyeer(genuine, impostor)
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(float(value), abs=1e-12), (key, ours[key], value)
        strict = verification_metrics(genuine, impostor)
        assert strict["fmr100_pyeer"] == pytest.approx(float(theirs["fmr100"]), abs=1e-12)
        assert strict["fmr1000_pyeer"] == pytest.approx(float(theirs["fmr1000"]), abs=1e-12)
        checked += 1
    assert checked == 105


def test_pyeer_tie_breaking_takes_the_first_of_equally_close_fmrs():
    """Equally close FMRs (1.5% and 0.5% around 1%): pyeer takes the lower threshold. Taking the lower FMR instead
    (an earlier focusface rule) gives 0.5 here, not pyeer's 0.0."""
    impostor = np.concatenate([np.linspace(0.0, 0.5, 197), [0.7, 0.7, 0.9]])
    genuine = np.array([0.65, 0.95])
    assert _pyeer(genuine, impostor)["fmr100"] == 0.0
    assert pyeer_metrics(genuine, impostor)["fmr100"] == 0.0
    assert verification_metrics(genuine, impostor)["fmr100_pyeer"] == 0.0
