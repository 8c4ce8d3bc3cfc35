import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from command_line import run_two_gloo_ranks

from focusface.checkpoints import load_checkpoint, save_checkpoint
from focusface.evalsets import EvalPairs, write_bin
from focusface.evaluate import embed_images, evaluate, evaluate_pairs, load_eval_set
from focusface.images import decode_image, encode_image
from focusface.maskspec import MaskSampler, read_manifest
from focusface.model import FocusFace, to_model_input
from focusface.synthdata import sample_pairs
from focusface.synthfaces import render_faces


def _synthetic_bin(path, first_identity=50_000, identities=40, pairs_per_fold=8, seed=0):
    pairs = sample_pairs(seed, first_identity, identities, folds=10, pairs_per_fold=pairs_per_fold)
    faces = render_faces(seed, [x for p in pairs for x in (p[1], p[3])], [x for p in pairs for x in (p[2], p[4])])
    write_bin(path, [encode_image(f) for f in faces], [p[5] for p in pairs])
    return path


def _briefly_trained_tiny(steps=60, identities=40, images=8):
    """A small FocusFace (the `demo` backbone) trained for a few dozen steps on unmasked synthetic faces."""
    torch.manual_seed(0)
    faces = render_faces(7, np.repeat(np.arange(identities), images), np.tile(np.arange(images), identities))
    labels = torch.as_tensor(np.repeat(np.arange(identities), images))
    model = FocusFace("demo", num_classes=identities, margin_s=32.0, margin_m=0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    for step in range(steps):
        idx = rng.choice(len(faces), 32, replace=False)
        out = model(to_model_input(faces[idx]))
        loss = F.cross_entropy(model.identity_classifier(out.identity_embedding, labels[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.slow
def test_end_to_end_trained_beats_untrained_and_writes_everything(tmp_path):
    data = _synthetic_bin(tmp_path / "synth_eval.bin")
    torch.manual_seed(1)
    save_checkpoint(FocusFace("demo"), tmp_path / "untrained.pt")
    save_checkpoint(_briefly_trained_tiny(), tmp_path / "trained.pt")
    results = {}
    for name in ("untrained", "trained"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "focusface.cli",
                "evaluate",
                str(tmp_path / f"{name}.pt"),
                str(data),
                "--out",
                str(tmp_path / name),
                "--quiet",
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert "UU" in out.stdout and "UM" in out.stdout and "MM" in out.stdout
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())["synth_eval"]
        for fig in ("roc", "det", "scores"):
            assert (tmp_path / name / "figures" / f"synth_eval_{fig}.png").stat().st_size > 5000
        scores = np.load(tmp_path / name / "scores" / "synth_eval.npz")
        assert set(scores.files) == {"issame", "uu", "um", "mm", "correct_uu", "correct_um", "correct_mm"}
        assert (
            scores["uu"].shape == scores["correct_um"].shape == (80,)
        )  # each pair's 10-fold decision, for paired tests
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())["synth_eval"]
        assert abs(scores["correct_um"].mean() - metrics["um"]["accuracy"]) < 1e-9  # 10 folds of 8: the same mean
    for key in (
        "eer",
        "fmr100",
        "fmr1000",
        "zero_fmr",
        "auc",
        "g_mean",
        "i_mean",
        "fdr",
        "d_prime",
        "accuracy",
        "mask_detection_accuracy",
    ):
        assert key in results["trained"]["uu"]
    assert "fnmr_at_uu_fmr100_threshold" in results["trained"]["um"]
    assert results["trained"]["uu"]["auc"] > results["untrained"]["uu"]["auc"]
    assert results["trained"]["uu"]["eer"] < results["untrained"]["uu"]["eer"]


def test_um_masks_exactly_one_image_per_pair_and_is_reproducible(tmp_path):
    pairs = load_eval_set(_synthetic_bin(tmp_path / "e.bin", pairs_per_fold=4))
    model = FocusFace("tiny").eval()
    first = evaluate(model, tmp_path / "e.bin", tmp_path / "a", figures=False)
    second = evaluate(model, tmp_path / "e.bin", tmp_path / "b", figures=False)
    assert first == second
    for protocol, sides in (("um", {1}), ("mm", {0, 1})):
        header, entries = read_manifest(tmp_path / "a" / "masks" / f"e.{protocol}.jsonl")
        assert header["protocol"] == protocol and {k % 2 for k in entries} == sides
        assert len(entries) == len(pairs) * len(sides)
        assert (tmp_path / "a" / "masks" / f"e.{protocol}.jsonl").read_bytes() == (
            tmp_path / "b" / "masks" / f"e.{protocol}.jsonl"
        ).read_bytes()
    a, b = np.load(tmp_path / "a" / "scores" / "e.npz"), np.load(tmp_path / "b" / "scores" / "e.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # the U-M probe embeddings are those of the masked images, the references those of the unmasked ones
    plain, _ = embed_images(model, pairs.images)
    masked, _ = embed_images(model, pairs.images, indices=[1], sampler=MaskSampler(seed=0))
    assert a["um"][0] == pytest.approx(float(plain[0] @ masked[0]), abs=1e-5)
    assert a["uu"][0] == pytest.approx(float(plain[0] @ plain[1]), abs=1e-5)


def test_embedding_keeps_images_encoded_and_batched(tmp_path, monkeypatch):
    """The set stays as bytes; at most one batch is decoded at a time."""
    pairs = load_eval_set(_synthetic_bin(tmp_path / "e.bin", pairs_per_fold=4))
    assert all(isinstance(im, bytes) for im in pairs.images)
    seen = []
    import focusface.evaluate as ev

    real = ev.to_model_input
    monkeypatch.setattr(ev, "to_model_input", lambda batch, order="rgb": seen.append(len(batch)) or real(batch, order))
    embed_images(FocusFace("tiny").eval(), pairs.images, batch_size=16)
    assert max(seen) == 16 and sum(seen) == len(pairs.images)


def test_sharded_embedding_under_a_process_group(tmp_path):
    """Two gloo ranks on the CPU gather the same embeddings as one process."""
    pairs = load_eval_set(_synthetic_bin(tmp_path / "e.bin", pairs_per_fold=2))
    torch.manual_seed(0)
    model = FocusFace("tiny").eval()
    save_checkpoint(model, tmp_path / "m.pt")
    single, _ = embed_images(model, pairs.images, batch_size=7)
    script = tmp_path / "shard.py"
    script.write_text(f"""
import os, sys, numpy as np, torch, torch.distributed as dist
from focusface.evaluate import embed_images, load_eval_set
from focusface.checkpoints import load_checkpoint
dist.init_process_group("gloo")
pairs = load_eval_set(r"{tmp_path / "e.bin"}")
emb, _ = embed_images(load_checkpoint(r"{tmp_path / "m.pt"}"), pairs.images, batch_size=7)
if dist.get_rank() == 0: np.save(r"{tmp_path / "sharded.npy"}", emb)
dist.destroy_process_group()
""")

    run_two_gloo_ranks(script, timeout=180)
    np.testing.assert_allclose(np.load(tmp_path / "sharded.npy"), single, atol=1e-5)


def test_bad_inputs_give_clear_errors(tmp_path):
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "focusface.cli", "evaluate", *map(str, a), "--quiet"], capture_output=True, text=True
        )

    good = _synthetic_bin(tmp_path / "e.bin", pairs_per_fold=2)
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    out = run(tmp_path / "wrong.pt", good)
    assert out.returncode == 2 and "wrong.pt" in out.stderr and "unrecognised layout" in out.stderr
    save_checkpoint(FocusFace("tiny"), tmp_path / "ok.pt")
    (tmp_path / "odd.bin").write_bytes(pickle.dumps(([encode_image(np.zeros((112, 112, 3), np.uint8))] * 3, [True])))
    out = run(tmp_path / "ok.pt", tmp_path / "odd.bin")
    assert out.returncode == 2 and "odd.bin" in out.stderr and "3 images for 1 pairs" in out.stderr
    (tmp_path / "lfw" / "a").mkdir(parents=True)
    (tmp_path / "lfw" / "a" / "a_0001.jpg").write_bytes(encode_image(np.zeros((112, 112, 3), np.uint8)))
    (tmp_path / "lfw" / "pairs.txt").write_text("a 1 2\n")
    out = run(tmp_path / "ok.pt", tmp_path / "lfw")
    assert out.returncode == 2 and "pairs.txt:1" in out.stderr and "a_0002" in out.stderr
    out = run(tmp_path / "ok.pt", good, "--protocols", "uu,xm")
    assert out.returncode == 2 and "unknown protocol" in out.stderr
    big = EvalPairs([encode_image(np.zeros((160, 160, 3), np.uint8))] * 2, [True], name="mfr2")
    with pytest.raises(ValueError, match="re-align"):
        evaluate_pairs(FocusFace("tiny").eval(), big)


def test_authors_score_reproduces_numbers_computed_by_hand(tmp_path):
    """`focusface evaluate --score authors`: every pair scored 1 - ||a - b|| / 2 of the flip-fused unit embeddings,
    recomputed here by hand from the model's embeddings; the `paper` block is pyeer's on that score."""
    data = _synthetic_bin(tmp_path / "e.bin", pairs_per_fold=4)
    torch.manual_seed(3)
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.cli",
            "evaluate",
            str(tmp_path / "m.pt"),
            str(data),
            "--score",
            "authors",
            "--protocols",
            "uu",
            "--out",
            str(tmp_path / "r"),
            "--no-figures",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())["e"]["uu"]
    pairs = load_eval_set(data)
    model = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        x = to_model_input(np.stack([decode_image(im) for im in pairs.images]))
        fused = model(x).identity_embedding + model(x.flip(3)).identity_embedding
    unit = (fused / fused.norm(dim=1, keepdim=True)).numpy().astype(np.float64)
    by_hand = np.array([1 - math.sqrt(((a - b) ** 2).sum()) / 2 for a, b in zip(unit[0::2], unit[1::2])])
    assert np.load(tmp_path / "r" / "scores" / "e.npz")["uu"] == pytest.approx(by_hand, abs=1e-5)
    assert metrics["score"] == "authors"
    assert metrics["g_mean"] == pytest.approx(by_hand[pairs.issame].mean(), abs=1e-5)
    assert metrics["i_mean"] == pytest.approx(by_hand[~pairs.issame].mean(), abs=1e-5)
    assert metrics["paper"]["g_mean"] == pytest.approx(by_hand[pairs.issame].mean(), abs=1e-5)
    assert metrics["paper"]["i_mean"] == pytest.approx(by_hand[~pairs.issame].mean(), abs=1e-5)
    gm, im, gv, iv = (
        by_hand[pairs.issame].mean(),
        by_hand[~pairs.issame].mean(),
        by_hand[pairs.issame].var(),
        by_hand[~pairs.issame].var(),
    )
    assert metrics["paper"]["fdr"] == pytest.approx(
        (gm - im) ** 2 / (gv + iv), rel=1e-4
    )  # FDR on the authors' score too


def test_an_externally_masked_copy_with_the_authors_side(tmp_path):
    """`--masked` takes another tool's masked copy; its unmasked leftovers count as unmasked; `--masked-side first`."""
    data = _synthetic_bin(tmp_path / "e.bin", pairs_per_fold=4)
    pairs = load_eval_set(data)
    sampler = MaskSampler(seed=5)
    from focusface.masks import apply_mask

    images = [
        encode_image(apply_mask(decode_image(im), sampler(k)), ".png") if k % 4 else im  # every 4th left as it was
        for k, im in enumerate(pairs.images)
    ]
    write_bin(tmp_path / "e.masked.bin", images, pairs.issame)
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")

    def run(*a):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "focusface.cli",
                "evaluate",
                str(tmp_path / "m.pt"),
                str(data),
                *map(str, a),
                "--no-figures",
                "--quiet",
            ],
            capture_output=True,
            text=True,
        )

    out = run("--masked", tmp_path / "e.masked.bin", "--masked-side", "first", "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())["e"]
    assert metrics["um"]["masked_side"] == "first" and metrics["um"]["unmasked_in_masked_copy"] == len(images) // 4
    model = load_checkpoint(tmp_path / "m.pt")
    e_plain, _ = embed_images(model, pairs.images)
    e_masked, _ = embed_images(model, images)
    um = (e_masked[0::2] * e_plain[1::2]).sum(1)  # the first image of each pair from the masked copy
    assert np.load(tmp_path / "r" / "scores" / "e.npz")["um"] == pytest.approx(um, abs=1e-5)
    assert not (tmp_path / "r" / "masks").exists()  # nothing was drawn: the copy carries its own masks


def test_evaluate_never_replaces_what_it_reads(tmp_path):
    """`--out` that is, holds or lies inside a checkpoint, set or masked copy is refused, --overwrite or not."""
    victim = tmp_path / "victim"
    victim.mkdir()
    data = _synthetic_bin(victim / "val.bin", pairs_per_fold=2)
    save_checkpoint(FocusFace("tiny").eval(), victim / "model.pt")
    (victim / "notes.txt").write_text("mine")
    for out in (victim, victim / "val.bin", victim / "model.pt", tmp_path):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "focusface.cli",
                "evaluate",
                str(victim / "model.pt"),
                str(data),
                "--out",
                str(out),
                "--overwrite",
                "--no-figures",
                "--quiet",
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "source" in result.stderr, (out, result.stderr)
    assert sorted(p.name for p in victim.iterdir()) == ["model.pt", "notes.txt", "val.bin"]
    assert (victim / "notes.txt").read_text() == "mine" and load_eval_set(data)


def test_an_eval_set_record_carries_what_goes_with_its_set(tmp_path):
    """One record per set (its masked copy, landmarks, labels, name) replaces parallel lists; the lists the command
    line takes become records in one place, which refuses a list of the wrong length, naming the parameter."""
    from focusface.errors import FocusFaceError
    from focusface.evaluate import EvalSet, eval_sets

    records = eval_sets(["a.bin", "b.bin"], masked=["a.mm.bin", None], names=["first", "second"])
    assert records == [EvalSet("a.bin", masked="a.mm.bin", name="first"), EvalSet("b.bin", name="second")]
    assert eval_sets(EvalSet("a.bin", landmarks="a.npz"))[0].paths() == ["a.bin", "a.npz"]
    assert eval_sets("synthetic:3")[0].paths() == []
    with pytest.raises(FocusFaceError, match=r"1 masked copies \(masked\) for 2 evaluation sets"):
        eval_sets(["a.bin", "b.bin"], masked="a.mm.bin")
    with pytest.raises(FocusFaceError, match="no evaluation set given"):
        eval_sets([])


def test_evaluation_with_decode_workers_gives_the_single_process_results(tmp_path):
    """Decoding and masking in worker processes (the GPU path's default) must change no number: the same scores,
    byte for byte, and the same metrics as decoding on the main thread, in every protocol."""
    from focusface.synthdata import make_pairs

    make_pairs(tmp_path / "e.bin", first_identity=7000, identities=20, pairs_per_fold=4, workers=0)
    torch.manual_seed(0)
    model = FocusFace("tiny").eval()
    alone = evaluate(model, tmp_path / "e.bin", tmp_path / "alone", workers=0, figures=False)
    beside = evaluate(model, tmp_path / "e.bin", tmp_path / "beside", workers=2, figures=False)
    assert alone == beside
    a, b = np.load(tmp_path / "alone" / "scores" / "e.npz"), np.load(tmp_path / "beside" / "scores" / "e.npz")
    assert all(np.array_equal(a[k], b[k]) for k in ("uu", "um", "mm"))


def test_precision_is_checked_before_any_work_and_bf16_embeds_in_float32(tmp_path):
    """`--precision` runs the network in bfloat16 (or float16 on CUDA); fp16 on a CPU, or a name that is no precision,
    is one line before a model is read, and the bf16 embeddings come back as float32 of unit length."""
    from command_line import refused, run

    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "m.pt")
    refused(
        run("evaluate", tmp_path / "m.pt", "synthetic", "--precision", "fp16", "--device", "cpu"), "fp16 needs a CUDA"
    )
    wrong = run("evaluate", tmp_path / "m.pt", "synthetic", "--precision", "half")  # argparse: usage, then the line
    assert wrong.returncode == 2 and "argument --precision: invalid choice: 'half'" in wrong.stderr.splitlines()[-1]
    with pytest.raises(Exception, match="precision must be one of fp32, bf16, fp16"):
        evaluate(tmp_path / "nothing-here.pt", ["synthetic"], precision="fp64", device="cpu")
    model = load_checkpoint(tmp_path / "m.pt")
    pairs = load_eval_set("synthetic:3")
    exact, _ = embed_images(model, pairs.images[:16], workers=0)
    half, _ = embed_images(model, pairs.images[:16], workers=0, precision="bf16")
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    assert (half * exact).sum(1).min() > 0.99 and not np.array_equal(half, exact)
