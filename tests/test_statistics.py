"""The statistics behind the report's intervals and paired tests, against definitions written out the slow way: the
weighted replicates against repeating pairs and the brute-force metrics, the person-clustered test against its
double sum over every two pairs that share a person, and a .bin's people from the pairs.txt it was made from."""

import math
from fractions import Fraction

import numpy as np
import pytest
from command_line import refused, run
from hypothesis import given, settings
from hypothesis import strategies as st
from test_metrics import brute_force

from focusface.evalsets import read_eval_set, write_bin
from focusface.images import encode_image
from focusface.metrics import (
    HEADLINE_METRICS,
    bootstrap_weights,
    clustered_difference_test,
    confidence_intervals,
    kfold_accuracy,
    kfold_folds,
    paired_test,
    replicate_metrics,
)


def tenfold_accuracy_of_repeated_pairs(scores, same, weight):
    """insightface's 10-fold accuracy on the set that holds each pair `weight` times in its own fold, written out
    pair by pair: the first best distance threshold on the other folds, genuine and impostor pairs each counted in
    their share of the set's pairs (a kind without any weight left out)."""
    fold = kfold_folds(same)[0]
    grid = np.arange(0, 4, 0.01)
    right_at = ((2 - 2 * scores)[None, :] < grid[:, None]) == same[None, :]  # (thresholds, pairs)

    def accuracy(part, t):  # exact fractions: equal accuracies tie, as insightface's counts do
        total, shares = Fraction(0), 0
        for kind in (True, False):
            members = part & (same == kind)
            mass = int(weight[members].sum())
            if mass:
                total += int(members.sum()) * Fraction(int(weight[members & right_at[t]].sum()), mass)
                shares += int(members.sum())
        return total / shares if shares else None

    folds = []
    for k in range(10):
        train = [accuracy(fold != k, t) for t in range(grid.size)]
        best = max(range(grid.size), key=lambda t: (train[t] is not None, train[t] or 0, -t))  # the first best
        tested = accuracy(fold == k, best)
        if tested is not None:
            folds.append(float(tested))
    return np.mean(folds)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), pairs=st.integers(10, 30))
def test_each_replicate_is_the_metrics_of_its_repeated_pairs(data, pairs):
    """A replicate weighs pairs; its EER, FMR100, FMR1000 must be those of the set that repeats each pair as often
    (many ties: scores on a coarse grid), and its accuracy the 10-fold protocol run again on those repeated pairs."""
    draw = lambda strategy: np.array(data.draw(st.lists(strategy, min_size=pairs, max_size=pairs)))  # noqa: E731
    same, scores = draw(st.booleans()), draw(st.integers(0, 8)) / 8
    weights = np.stack([draw(st.integers(0, 3)) for _ in range(3)])
    fast = replicate_metrics(scores, same, weights, chunk=2)
    for r, w in enumerate(weights):
        rows = np.repeat(np.arange(pairs), w)
        if not (same[rows].any() and (~same[rows]).any()):
            assert all(math.isnan(fast[k][r]) for k in HEADLINE_METRICS)
            continue
        slow = brute_force(scores[rows][same[rows]], scores[rows][~same[rows]])
        for k in ("eer", "fmr100", "fmr1000"):
            assert fast[k][r] == pytest.approx(slow[k], abs=1e-12), (k, r)
        assert fast["accuracy"][r] == pytest.approx(tenfold_accuracy_of_repeated_pairs(scores, same, w), abs=1e-12)


def test_a_replicate_of_every_pair_once_is_the_10_fold_accuracy():
    rng = np.random.default_rng(4)
    for same in (rng.random(600) < 0.5, np.r_[np.ones(57, bool), np.zeros(543, bool)]):  # contiguous, stratified
        scores = rng.normal(np.where(same, 0.5, 0.1), 0.2)
        once = replicate_metrics(scores, same, np.ones((1, same.size), int))["accuracy"][0]
        assert once == pytest.approx(kfold_accuracy(scores, same)["accuracy"], abs=1e-12)


def test_both_people_weights_follow_each_persons_draws():
    people = np.array([["a", "a"], ["a", "b"], ["b", "c"], ["c", "c"]])
    weights = bootstrap_weights(people, n=500, seed=3)
    draws = bootstrap_weights(np.array(["a", "b", "c"]), n=500, seed=3)  # the same draws, one person per pair
    a, b, c = draws.T
    assert np.array_equal(weights, np.stack([a, np.maximum(a + b - 1, 0), np.maximum(b + c - 1, 0), c], 1))
    with pytest.raises(Exception, match="people of shape"):
        confidence_intervals(np.zeros(5), np.ones(5, bool), people)


@pytest.mark.parametrize("seed", range(5))
def test_the_clustered_test_is_its_double_sum_over_pairs_that_share_a_person(seed):
    rng = np.random.default_rng(seed)
    pairs, count = int(rng.integers(20, 90)), int(rng.integers(4, 15))
    people = rng.integers(0, count, (pairs, 2))
    people[: pairs // 3, 1] = people[: pairs // 3, 0]  # genuine pairs: one person
    seeds = int(rng.integers(1, 4))
    a, b = rng.random((seeds, pairs)) < 0.8, rng.random((seeds, pairs)) < 0.7
    d = (a.astype(float) - b).mean(0)
    r = d - d.mean()
    total = sum(
        r[p] * r[q] for p in range(pairs) for q in range(pairs) if set(people[p]) & set(people[q])
    )  # every two pairs that share at least one person, p = q included
    used = len(np.unique(people))
    if total <= 0:  # the double sum is no sum of squares: the larger one-way clustered sum stands in
        total = max(sum(r[side == i].sum() ** 2 for i in np.unique(people)) for side in people.T)
    variance = total / pairs**2 * used / (used - 1)
    got = clustered_difference_test(a, b, people)
    assert got["se"] ** 2 == pytest.approx(variance, rel=1e-9)
    assert got["p"] == pytest.approx(math.erfc(abs(d.mean()) / math.sqrt(variance) / math.sqrt(2)), rel=1e-9)
    assert (got["only_a"], got["only_b"]) == (int((a & ~b).sum()), int((~a & b).sum()))
    assert paired_test(a, b, people)["test"] == "person-clustered"


def test_pairs_tsv_from_a_small_pairs_txt(tmp_path):
    """`focusface pairs-tsv`: who is in each pair of a .bin from its pairs.txt, refused line by line when the file
    is not that .bin's."""
    face = encode_image(np.zeros((112, 112, 3), np.uint8), ".png")
    write_bin(tmp_path / "lfw.bin", [face] * 10, [True, True, False, False, True])
    (tmp_path / "pairs.txt").write_text("1 5\nAnn 1 2\nBob 1 3\nAnn 1 Cy 2\nBob 2 Dee 1\nCy 1 4\n")
    out = run("pairs-tsv", tmp_path / "pairs.txt", tmp_path / "lfw.bin")
    assert out.returncode == 0 and "(4 people)" in out.stdout, out.stderr
    assert read_eval_set(tmp_path / "lfw.bin").identities == "Ann Ann Bob Bob Ann Cy Bob Dee Cy Cy".split()
    (tmp_path / "swapped.txt").write_text("Ann 1 2\nAnn 1 Cy 2\nBob 1 3\nBob 2 Dee 1\nCy 1 4\n")
    refused(run("pairs-tsv", tmp_path / "swapped.txt", tmp_path / "lfw.bin", "--overwrite"), "swapped.txt:2: pair 1")
    refused(run("pairs-tsv", tmp_path / "pairs.txt", tmp_path / "lfw.bin"), "exists")
    (tmp_path / "bad.txt").write_text("Ann 1 2\nBob one 3\n")
    refused(run("pairs-tsv", tmp_path / "bad.txt", tmp_path / "lfw.bin", "--overwrite"), "bad.txt:2: expected")
    assert read_eval_set(tmp_path / "lfw.bin").identities[:2] == ["Ann", "Ann"]  # the refusals changed nothing
