"""The benchmarks that measure the trainer run, so they cannot rot: each on the CPU at a size a test can afford."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_runs_the_real_trainer_on_the_cpu():
    """bench_train through the real train() with a tiny backbone: it prints the rates, the data wait and the FLOP
    utilisation as JSON, with the values the run itself logged."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train.py"),
            "--device",
            "cpu",
            "--backbone",
            "tiny",
            "--classes",
            "200",
            "--batch",
            "8",
            "--steps",
            "4",
            "--identities",
            "20",
            "--workers",
            "0",
            "--precision",
            "fp32",
            "--peak-tflops",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert (report["device"], report["steps"], report["classes"], report["batch"]) == ("cpu", 4, 200, 8)
    assert report["pairs_per_s"] > 0 and report["images_per_s"] == round(2 * report["pairs_per_s"], 1)
    assert 0 <= report["data_wait_share"] <= 1 and 0 <= report["data_wait_share_whole_run"] <= 1
    assert report["peak_gpu_memory_gib"] is None  # no GPU in this run
    assert report["gflops_per_pair"] > 0
    assert (
        abs(report["mfu_percent"] - 100 * report["achieved_tflops"] / 1) <= 0.06
    )  # of a 1 TFLOP/s peak (both rounded)
    assert "step 4/4" in out.stdout  # the trainer's own log lines, not a stand-in


def test_bench_training_choices_runs_each_choice_as_labelled(tmp_path):
    """The authors' row once ran the trainer's defaults (joint passes since they changed) under the label 'separate
    passes': each row now sets what it says, and this tiny run keeps the benchmark from going stale."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_training_choices.py"),
            "--out",
            str(tmp_path),
            "--size",
            "tiny",
            "--epochs",
            "1",
            "--only",
            "authors,joint_bn,clip_network",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "choices.json").read_text())
    assert results["authors"]["setting"] == dict(grad_clip=None, bn_views="separate", trunk_init="insightface")
    assert results["joint_bn"]["setting"]["bn_views"] == "joint"
    assert results["clip_network"]["setting"] == dict(grad_clip=5.0, bn_views="separate", trunk_init="insightface")
    assert all(r["steps"] == 2 for r in results.values())


def test_bench_evaluate_measures_the_embedding_rate_with_and_without_workers(tmp_path):
    from focusface.synthdata import make_pairs

    make_pairs(tmp_path / "e.bin", first_identity=7000, identities=20, pairs_per_fold=2, workers=0)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_evaluate.py"),
            "--set",
            str(tmp_path / "e.bin"),
            "--model",
            str(tmp_path / "none.pt"),
            "--workers",
            "0",
            "2",
            "--images",
            "40",
            "--batch",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["workers"], r["images"]) for r in lines] == [(0, 40), (2, 40)] and all(
        r["images_per_s"] > 0 for r in lines
    )
