"""IJB-B/IJB-C: the readers refuse each kind of damage in one line naming the file and line; template pooling, pair
scores and TAR at FAR equal the protocol written out the slow way (one template, one media, one threshold at a time)
and scikit-learn's ROC; the whole evaluation on the synthetic release equals embedding and pooling by hand."""

import shutil

import numpy as np
import pytest
import torch
from command_line import refused, run
from sklearn.metrics import roc_curve

from focusface.align import align_face
from focusface.checkpoints import save_checkpoint
from focusface.errors import FocusFaceError
from focusface.ijb import (
    evaluate_ijb,
    insightface_tar_at_far,
    make_ijb_fixture,
    meta_path,
    read_ijb,
    tar_at_far,
    template_features,
    template_pair_scores,
)
from focusface.images import decode_image
from focusface.model import FocusFace, to_model_input


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_ijb_fixture(tmp_path_factory.mktemp("ijb"), people=6, templates_per_person=4, seed=3)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FocusFace("tiny").eval()


def _copy(release, tmp_path):
    copy = tmp_path / "IJBC"
    shutil.copytree(release / "meta", copy / "meta")
    (copy / "loose_crop").symlink_to(release / "loose_crop")
    return copy


def _damage(path, line: int, new: str | None) -> None:
    lines = path.read_text().splitlines()
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("\n".join(lines) + "\n")


DAMAGES = [  # (file, line, its new text or None to remove it, what the error must say)
    ("template_pair_label", 3, "5 6", "ijbc_template_pair_label.txt:3: 2 fields, expected 3"),
    ("template_pair_label", 2, "1 two 0", "ijbc_template_pair_label.txt:2: template 2 is 'two', not an integer"),
    ("template_pair_label", 2, "1 " + "9" * 21 + " 0", "ijbc_template_pair_label.txt:2: template 2 is '999"),
    ("template_pair_label", 4, "1 2 7", "ijbc_template_pair_label.txt:4: label 7, expected 1 (genuine) or 0"),
    ("template_pair_label", 1, "1 999999 1", "ijbc_template_pair_label.txt:1: template 999999 has no image"),
    ("face_tid_mid", 2, "2.jpg 1", "ijbc_face_tid_mid.txt:2: 2 fields, expected 3"),
    ("face_tid_mid", 5, None, "ijbc_name_5pts_score.txt: "),  # one image fewer than the five-point file lists
    ("face_tid_mid", 3, "9.jpg 1 1", "ijbc_name_5pts_score.txt:3: '3.jpg', but line 3 of ijbc_face_tid_mid.txt"),
    ("name_5pts_score", 2, "2.jpg 1 2 3 4 5 6 7 8 9 inf 0.9", "ijbc_name_5pts_score.txt:2: y5 is inf"),
    ("name_5pts_score", 6, "6.jpg 1 2 3 4 5 6 7 8 9 10", "ijbc_name_5pts_score.txt:6: 11 fields, expected 12"),
    (
        "name_5pts_score",
        4,
        "4.jpg 1 2 3 4 5 6 7 8 9 10 -3.5",
        "ijbc_name_5pts_score.txt:4: detector score -3.5, expected",
    ),
    (
        "name_5pts_score",
        4,
        "4.jpg 1 2 3 4 5 6 7 8 9 10 abc",
        "ijbc_name_5pts_score.txt:4: detector score is 'abc', not",
    ),
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d[3].split(":")[0] + str(d[1]) for d in DAMAGES])
def test_the_readers_refuse_a_damaged_meta_file_in_one_line(release, tmp_path, damage):
    kind, line, new, said = damage
    copy = _copy(release, tmp_path)
    _damage(meta_path(copy, "IJBC", kind), line, new)
    with pytest.raises(FocusFaceError) as error:
        read_ijb(copy)
    message = str(error.value)
    assert said in message and "\n" not in message, message


def test_what_one_file_cannot_show_is_refused_too(release, tmp_path):
    """Checks across lines and files: an image listed twice (it would count twice in its template), a pair list of one
    kind, a template in both galleries, five points that are not the image's; a byte-order mark is taken as text."""
    copy = _copy(release, tmp_path)
    tid_mid, five = meta_path(copy, "IJBC", "face_tid_mid"), meta_path(copy, "IJBC", "name_5pts_score")
    originals = {f: f.read_text() for f in (tid_mid, five)}
    for f in (tid_mid, five):
        lines = f.read_text().splitlines()
        f.write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(FocusFaceError, match=r"ijbc_face_tid_mid.txt:\d+: '3.jpg' again \(line 3\)"):
        read_ijb(copy)
    for f, text in originals.items():
        f.write_text(text)
    tid_mid.write_text("\ufeff" + originals[tid_mid])  # a byte-order mark, as some editors save
    assert read_ijb(copy).names[0] == "1.jpg"
    pairs = meta_path(copy, "IJBC", "template_pair_label")
    pairs.write_text("".join(line for line in pairs.read_text().splitlines(True) if line.endswith(" 1\n")))
    with pytest.raises(FocusFaceError, match="ijbc_template_pair_label.txt: only genuine pairs"):
        read_ijb(copy)
    shutil.copy(release / "meta" / "ijbc_template_pair_label.txt", pairs)
    g1, g2 = copy / "meta" / "ijbc_1N_gallery_G1.csv", copy / "meta" / "ijbc_1N_gallery_G2.csv"
    g2.write_text(g2.read_text() + g1.read_text().splitlines()[1] + "\n")
    with pytest.raises(FocusFaceError, match="ijbc_1N_gallery_G2.csv: template 1 is in ijbc_1N_gallery_G1.csv too"):
        read_ijb(copy)


def test_five_points_far_outside_their_crop_are_refused_with_the_image(release, tmp_path, tiny):
    copy = _copy(release, tmp_path)
    _damage(meta_path(copy, "IJBC", "name_5pts_score"), 3, "3.jpg 99999 -88888 3 4 5 6 7 8 9 10 0.9")
    with pytest.raises(FocusFaceError, match=r"3.jpg \(line 3 of its five-point file\): its five points reach"):
        evaluate_ijb(tiny, copy)
    _damage(meta_path(copy, "IJBC", "name_5pts_score"), 3, "3.jpg 0 0 0 0 0 0 0 0 0 0 0.9")
    with pytest.raises(FocusFaceError, match=r"3.jpg \(line 3 of its five-point file\): .*one point"):
        evaluate_ijb(tiny, copy)


def test_missing_empty_oversized_and_binary_meta_files_are_refused(release, tmp_path, monkeypatch):
    copy = _copy(release, tmp_path)
    pairs = meta_path(copy, "IJBC", "template_pair_label")
    pairs.write_bytes(b"")
    with pytest.raises(FocusFaceError, match="ijbc_template_pair_label.txt: empty"):
        read_ijb(copy)
    pairs.write_bytes(b"1 2 1\n\xff\xfe 3 0\n")
    with pytest.raises(FocusFaceError, match="ijbc_template_pair_label.txt:2: not UTF-8 text"):
        read_ijb(copy)
    monkeypatch.setattr("focusface.ijb.MAX_META_BYTES", 100)
    with pytest.raises(FocusFaceError, match=r"ijbc_face_tid_mid.txt: [\d,]+ bytes; an IJB meta file is at most 100"):
        read_ijb(copy)
    meta_path(copy, "IJBC", "face_tid_mid").unlink()
    with pytest.raises(FocusFaceError, match="not an IJB folder"):
        read_ijb(copy)


def pooled_by_hand(features, scores, templates, media, *, norm=True, detector_score=True) -> dict:
    "insightface's pooling written out: each template, each of its media, averaged, summed, scaled to unit length."
    out = {}
    for t in sorted(set(templates.tolist())):
        media_means = []
        for m in sorted(set(media[templates == t].tolist())):
            rows = np.flatnonzero((templates == t) & (media == m))
            feats = []
            for r in rows:
                f = features[r] if norm else features[r] / np.linalg.norm(features[r])
                feats.append(f * scores[r] if detector_score else f)
            media_means.append(np.mean(feats, axis=0))
        total = np.sum(media_means, axis=0)
        out[t] = total / np.linalg.norm(total)
    return out


@pytest.mark.parametrize("norm, detector_score", [(True, True), (False, True), (True, False), (False, False)])
def test_pooling_and_pair_scores_equal_the_protocol_written_out(release, norm, detector_score):
    meta = read_ijb(release)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(len(meta), 16)) * rng.uniform(0.5, 3, (len(meta), 1))
    by_hand = pooled_by_hand(
        features, meta.detector_scores, meta.templates, meta.media, norm=norm, detector_score=detector_score
    )
    ids, pooled = template_features(
        features, meta.templates, meta.media, meta.detector_scores if detector_score else None, norm=norm, chunk=9
    )
    assert ids.tolist() == sorted(by_hand)
    np.testing.assert_allclose(pooled, np.stack([by_hand[t] for t in ids]), atol=1e-12)
    scores = template_pair_scores(ids, pooled, meta.pairs, block=3)
    np.testing.assert_allclose(scores, [by_hand[a] @ by_hand[b] for a, b in meta.pairs], atol=1e-12)


def tar_by_hand(scores, same, far) -> float:
    "The TAR at the lowest threshold (a score, or above them all) whose FAR is at most `far`, trying every one."
    genuine, impostor = scores[same], scores[~same]
    best = 0.0
    for t in np.r_[np.unique(scores), np.inf]:
        if (impostor >= t).mean() <= far:
            best = max(best, (genuine >= t).mean())
    return best


@pytest.mark.parametrize("seed", range(7))
def test_tar_at_far_equals_every_threshold_tried_and_insightfaces_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    same = rng.random(n) < rng.uniform(0.05, 0.5)
    same[:2] = [True, False]
    scores = np.round(rng.normal(np.where(same, 1.0, 0.0), 0.6), int(rng.integers(1, 4)))  # ties at 1-3 decimals
    if seed == 6:  # a straight stretch of the ROC: each score held by one genuine and one impostor pair
        scores = np.r_[np.repeat(np.arange(10.0), 2), -np.arange(1.0, 11.0)]
        same = np.r_[np.tile([True, False], 10), np.zeros(10, bool)]
    fars = [1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.3]
    strict = tar_at_far(scores, same, fars)
    assert [strict[f] for f in fars] == pytest.approx([tar_by_hand(scores, same, f) for f in fars])
    fpr, tpr, _ = roc_curve(same, scores)  # drop_intermediate=True, as insightface calls it
    fpr, tpr = fpr[::-1], tpr[::-1]
    theirs = [tpr[min(zip(abs(fpr - f), range(len(fpr))))[1]] for f in fars]  # the first nearest, as they pick it
    assert list(insightface_tar_at_far(scores, same, fars).values()) == pytest.approx(theirs, abs=0)


def _embedded_by_hand(model, meta, rows, sampler=None) -> np.ndarray:
    "Each loose crop read, aligned with its five points, masked if asked, embedded with its mirror image: (n, D)."
    from focusface.masks import apply_mask

    faces = []
    for i in rows:
        face = align_face(decode_image(meta.image_path(i).read_bytes()), meta.landmarks[i])
        faces.append(face if sampler is None else apply_mask(face, sampler(int(i))))
    with torch.no_grad():
        e, _ = model.embed(to_model_input(np.stack(faces), model.channel_order), flip=True, normalize=False)
    return e.numpy().astype(np.float64)


def test_the_evaluation_equals_embedding_and_pooling_by_hand(release, tiny):
    from focusface.maskspec import DEFAULT_SPEC, MaskSampler

    meta = read_ijb(release)
    got = evaluate_ijb(tiny, meta, protocols=("uu", "um", "mm"), seed=5, batch_size=7)
    everything = np.arange(len(meta))
    plain = pooled_by_hand(_embedded_by_hand(tiny, meta, everything), meta.detector_scores, meta.templates, meta.media)
    sampler = MaskSampler(DEFAULT_SPEC, 5)
    masked = pooled_by_hand(
        _embedded_by_hand(tiny, meta, everything, sampler), meta.detector_scores, meta.templates, meta.media
    )
    expected = dict(
        uu=[plain[a] @ plain[b] for a, b in meta.pairs],
        um=[plain[a] @ masked[b] for a, b in meta.pairs],
        mm=[masked[a] @ masked[b] for a, b in meta.pairs],
    )
    for protocol, scores in expected.items():
        np.testing.assert_allclose(got[protocol]["_scores"], scores, atol=1e-5, err_msg=protocol)
        by_hand = tar_at_far(np.array(scores), meta.issame)
        assert list(got[protocol]["tar_at_far"].values()) == pytest.approx(list(by_hand.values())), protocol
    probe_templates, probe_persons = meta.searches["probes"]
    for gallery in ("G1", "G2"):
        templates, persons = meta.searches[gallery]
        by_hand = open_set_by_hand(
            np.stack([masked[t] for t in probe_templates]),
            probe_persons,
            np.stack([plain[t] for t in templates]),
            persons,
            0.1,
        )
        searched = got["um"]["identification"][gallery]
        assert (searched["rank1"], searched["tpir_at_fpir"][0.1]) == pytest.approx((by_hand["rank1"], by_hand["tpir"]))
    again = evaluate_ijb(tiny, meta, protocols="um", seed=5)
    np.testing.assert_array_equal(again["um"]["_scores"], got["um"]["_scores"])  # the same masks, replayed


def test_focusface_evaluate_prints_tar_at_far_per_protocol(release, tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "tiny.pt")
    out = run("evaluate", tmp_path / "tiny.pt", release, "--protocols", "uu,mm", "--out", tmp_path / "eval", "--quiet")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "TAR % at FAR 1e-06" in lines[0] and [line.split()[:2] for line in lines[1:3]] == [
        ["IJBC", "UU"],
        ["IJBC", "MM"],
    ]
    assert sorted(np.load(tmp_path / "eval" / "scores" / "IJBC.npz").files) == [
        "issame",
        "pairs",
        "people",
        "scores_mm",
        "scores_uu",
    ]
    assert (tmp_path / "eval" / "figures" / "IJBC_roc.png").stat().st_size > 10_000  # the ROC curves
    bare = run(
        "evaluate",
        tmp_path / "tiny.pt",
        release,
        "--protocols",
        "uu",
        "--out",
        tmp_path / "bare",
        "--quiet",
        "--no-figures",
    )
    assert bare.returncode == 0 and not (tmp_path / "bare" / "figures").exists(), bare.stderr
    refused(run("evaluate", tmp_path / "tiny.pt", release, "--masked", "x.bin"), "--masked: for pair sets only")
    refused(run("evaluate", tmp_path / "tiny.pt", release, "synthetic"), "in a command of their own")
    for part in (release / "meta", release / "loose_crop", release / "meta" / "ijbc_face_tid_mid.txt"):
        refused(
            run("evaluate", tmp_path / "tiny.pt", part),
            f"is part of an IJB release: give the release's folder, {release}",
        )
    refused(run("evaluate", tmp_path / "tiny.pt", release.parent), f"holds the IJB release {release}: give that folder")
    copy = _copy(release, tmp_path)
    _damage(meta_path(copy, "IJBC", "template_pair_label"), 2, "1 2")
    refused(run("evaluate", tmp_path / "tiny.pt", copy), "ijbc_template_pair_label.txt:2: 2 fields, expected 3")


def open_set_by_hand(probes, probe_persons, gallery, gallery_persons, fpir) -> dict:
    "Rank-1 and TPIR at `fpir` with one search at a time and every threshold tried (each score, or above them all)."
    searches = []
    for p, who in zip(probes, probe_persons):
        s = gallery @ p
        mates = s[gallery_persons == who]
        mate = mates.max() if mates.size else None
        rank = None if mate is None else 1 + int((s[gallery_persons != who] > mate).sum())
        searches.append((mate, rank, s.max()))
    mated = [(m, r) for m, r, _ in searches if m is not None]
    tops = np.array([t for m, _, t in searches if m is None])
    best = 0.0
    for t in np.r_[np.unique(tops), [m for m, _ in mated], np.inf]:  # every score a threshold can sit at
        if (tops >= t).mean() <= fpir:
            best = max(best, np.mean([r == 1 and m >= t for m, r in mated]))
    return dict(rank1=np.mean([r == 1 for _, r in mated]), tpir=best)


def insightface_search_by_hand(probes, probe_persons, gallery, gallery_persons, far) -> float:
    "insightface's 1:N rate written out: every non-mate score in one list, the ceil(far x probes)-th highest."
    negatives, mates = [], []
    for p, who in zip(probes, probe_persons):
        s = gallery @ p
        mates.append(s[gallery_persons == who][0])
        negatives += s[gallery_persons != who].tolist()
    threshold = sorted(negatives, reverse=True)[int(np.ceil(far * len(probes))) - 1]
    return float(np.mean(np.array(mates) > threshold))


@pytest.mark.parametrize("seed", range(4))
def test_the_1n_measures_equal_one_search_at_a_time(seed):
    from focusface.ijb import insightface_identification, open_set_identification

    rng = np.random.default_rng(seed)
    people, dim = int(rng.integers(5, 40)), 8
    gallery = rng.normal(size=(people, dim))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    persons = rng.integers(0, 2 * people, int(rng.integers(20, 120)))  # about half enrolled
    probes = np.where((persons < people)[:, None], gallery[np.minimum(persons, people - 1)], 0) + rng.normal(
        scale=0.8, size=(len(persons), dim)
    )
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    enrolled = np.arange(people)
    for fpir in (0.0, 0.05, 0.1, 0.3):
        got = open_set_identification(probes, persons, gallery, enrolled, fpirs=(fpir,))
        slow = open_set_by_hand(probes, persons, gallery, enrolled, fpir)
        assert got["rank1"] == pytest.approx(slow["rank1"]) and got["tpir_at_fpir"][fpir] == pytest.approx(slow["tpir"])
    mated = persons < people
    for far in (0.01, 0.1, 0.5):
        got = insightface_identification(probes[mated], persons[mated], gallery, enrolled, fars=(far,))
        slow = insightface_search_by_hand(probes[mated], persons[mated], gallery, enrolled, far)
        assert got["tpir_at_far"][far] == pytest.approx(slow)


def test_the_1n_lists_are_read_with_their_errors(release, tmp_path):
    copy = _copy(release, tmp_path)
    g1 = copy / "meta" / "ijbc_1N_gallery_G1.csv"
    lines = g1.read_text().splitlines()
    assert set(read_ijb(copy).searches) == {"G1", "G2", "probes"}
    g1.write_text("\n".join([*lines[:2], "x,1,a.jpg", *lines[3:]]) + "\n")
    with pytest.raises(FocusFaceError, match="ijbc_1N_gallery_G1.csv:3: expected TEMPLATE_ID,SUBJECT_ID"):
        read_ijb(copy)
    template = lines[1].split(",")[0]
    g1.write_text("\n".join([*lines, f"{template},99,b.jpg"]) + "\n")
    with pytest.raises(
        FocusFaceError, match=f"ijbc_1N_gallery_G1.csv:{len(lines) + 1}: template {template} of person 99"
    ):
        read_ijb(copy)
    g1.unlink()
    with pytest.raises(FocusFaceError, match="ijbc_1N_gallery_G1.csv: missing; the 1:N protocol needs both"):
        read_ijb(copy)


@pytest.mark.parametrize(
    ("pairs", "people", "fars"),
    [(400, 15, (0.01, 0.05, 0.3)), (30_000, 6, (0.0005, 0.01)), (30_000, 400, (0.001, 0.01, 0.1))],
    ids=["small", "six-people", "many-people"],
)
def test_person_bootstrap_of_tar_equals_the_weight_matrix(monkeypatch, pairs, people, fars):
    """`replicate_tar_at_far` (one replicate at a time, thresholds searched among the top impostors) gives exactly the
    replicates of `metrics.bootstrap_weights`' matrix read by the pair sets' strict FNMR at FMR, also when a replicate
    must search every impostor (six people: some replicates leave most of them out)."""
    import focusface.ijb as ijb
    from focusface.metrics import _replicate_fnmr_at, _replicate_rates, bootstrap_weights

    searched_all = []
    weights = ijb._weights
    monkeypatch.setattr(ijb, "_weights", lambda a, b, c: (searched_all.append(a.size), weights(a, b, c))[1])
    rng = np.random.default_rng(pairs + people)
    who = rng.integers(0, people, (pairs, 2))
    same = np.arange(pairs) < pairs * 3 // 10
    who[same, 1] = who[same, 0]
    scores = np.round(rng.normal(same * 1.5, 1.0), 1)  # rounded: many equal scores
    if people == 6:  # the top impostors are all of persons 0 and 1: a replicate without both must search further
        scores[~same & (np.sort(who, 1) == [0, 1]).all(1)] += 3
        monkeypatch.setattr(ijb, "SEARCH_ROOM", 0)
    fast = ijb.replicate_tar_at_far(scores, same, who, fars, n=40, seed=4)
    fmr, fnmr, false_matches, impostors = _replicate_rates(scores, same, bootstrap_weights(who, 40, 4))
    slow = np.stack([1 - _replicate_fnmr_at(fnmr, false_matches, impostors, f) for f in fars], 1)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    if people == 6:
        assert (pairs - same.sum()) in searched_all, "no replicate searched every impostor: the case is not tested"
    two_seeds = ijb.replicate_tar_at_far(np.stack([scores, -scores]), same, who, fars, n=40, seed=4)
    mirrored = ijb.replicate_tar_at_far(-scores, same, who, fars, n=40, seed=4)
    np.testing.assert_allclose(two_seeds, (fast + mirrored) / 2, rtol=0, atol=1e-12)


def test_pair_people_come_from_the_1n_lists_and_are_saved_with_the_scores(release, tiny, tmp_path):
    from focusface.ijb import evaluate_releases, pair_people, read_search_lists

    meta = read_ijb(release)
    people = pair_people(meta)
    listed = {}
    for templates, persons in read_search_lists(release, "IJBC").values():
        listed.update(zip(templates.tolist(), persons.tolist()))
    assert people.tolist() == [[listed[a], listed[b]] for a, b in meta.pairs.tolist()]
    assert (people[meta.issame, 0] == people[meta.issame, 1]).all() and (
        people[~meta.issame, 0] != people[~meta.issame, 1]
    ).all()
    copy = _copy(release, tmp_path)
    probes = meta_path(copy, "IJBC", "1N_probe_mixed").with_suffix(".csv")
    lines = probes.read_text().splitlines()
    first_probe = lines[1].split(",")[0]
    probes.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.split(",")[0] != first_probe)]) + "\n")
    assert pair_people(read_ijb(copy)) is None  # a pair's template in no list: its people are not known
    evaluate_releases(tiny, release, tmp_path / "eval", protocols="uu", fars=(0.1,))
    saved = np.load(tmp_path / "eval" / "scores" / "IJBC.npz")
    assert saved["people"].tolist() == people.tolist()


def test_a_missing_loose_crop_is_refused_before_any_work(release, tmp_path):
    copy = tmp_path / "IJBC"
    shutil.copytree(release, copy)
    listed = read_ijb(copy).names
    (copy / "loose_crop" / str(listed[3])).unlink()
    with pytest.raises(FocusFaceError) as said:
        read_ijb(copy)
    assert str(said.value).startswith(f"{copy / 'loose_crop'}: 1 of the {len(listed):,} images ijbc_face_tid_mid.txt")
    assert f"the first '{listed[3]}'" in str(said.value)
    shutil.rmtree(copy / "loose_crop")
    with pytest.raises(FocusFaceError, match="loose_crop: missing"):
        read_ijb(copy)


def test_the_report_lists_every_ijb_measure_of_every_release(release, tiny, tmp_path):
    """ijb.csv holds the TPIR at each FPIR per gallery (a dict in metrics.json) and the columns of every row, not the
    first row's alone (IJB-B's galleries are S1/S2, IJB-C's G1/G2)."""
    from focusface.ijb import evaluate_releases
    from focusface.report import ijb_rows, results_table

    ijbb = make_ijb_fixture(tmp_path / "b", target="IJBB", people=4, templates_per_person=3, seed=1)
    evaluate_releases(tiny, [ijbb, release], tmp_path / "eval" / "tiny" / "seed0" / "ijb", protocols="uu", fars=(0.1,))
    rows = ijb_rows({"tiny": tmp_path / "eval" / "tiny"}, [0])
    assert [r["set"] for r in rows] == ["IJBB", "IJBC"]
    header = results_table(rows, "csv").splitlines()[0].split(",")
    for gallery in ("S1", "S2", "G1", "G2"):
        assert f"{gallery} rank1" in header and f"{gallery} tpir_at_fpir@0.01" in header, header
