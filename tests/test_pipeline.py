"""The main job: `dvc repro` of the whole pipeline, end to end, on a reduced parameter set, in a fresh copy of the
repository (so it cannot silently break); and the paper setting failing fast without its data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

SMALL = dict(
    data=dict(
        train_identities=12,
        images_per_identity=4,
        val_identities=20,
        val_pairs_per_fold=2,
        eval_identities=20,
        eval_pairs_per_fold=2,
        ijb_people=4,
        workers=0,
    ),
    masks=dict(workers=0),
    train=dict(epochs=1, batch_size=16, lr_batch=16, log_every=1, workers=0),
    evaluate=dict(batch_size=64),
    report=dict(bootstrap=50),
)


def _run(*args, cwd):
    out = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh repository holding what git tracks here, with the reduced parameters."""
    root = tmp_path_factory.mktemp("project")
    for name in subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split():
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for stale in ("dvc.lock", "metrics", "reports"):  # what the committed demo run left: this run makes its own
        path = root / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    from ruamel.yaml import YAML  # round trip: the comments stay, as `dvc exp run -S` must keep them

    rt = YAML()
    rt.preserve_quotes = True
    params = rt.load((root / "params.yaml").read_text())
    for group, values in SMALL.items():
        params[group].update(values)
    with open(root / "params.yaml", "w") as f:
        rt.dump(params, f)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        _run(*command, cwd=root)
    return root


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_pipeline_and_then_has_nothing_to_do(project):
    dvc = [sys.executable, "-m", "dvc"]
    _run(*dvc, "repro", cwd=project)
    variants = list(yaml.safe_load((project / "params.yaml").read_text())["variants"])
    assert variants == ["arcface", "arcface_aug", "focusface", "focusface_ontop"]
    for variant in variants:
        metrics = json.loads((project / "metrics" / f"{variant}.json").read_text())
        assert set(metrics["synthetic_lfw"]) == {"uu", "um", "mm"} and metrics["training"]["steps"] == 3
        assert set(metrics["IJBC"]) == {"uu", "um", "mm"} and set(metrics["IJBC"]["um"]) == {"tar@far=1e-04"}
        assert (project / "outputs" / "runs" / variant / "seed0" / "model.pt").is_file()  # one run per seed
        assert (project / "outputs" / "notebooks" / f"evaluate_{variant}.ipynb").is_file()
    table = (project / "reports" / "results.md").read_text()
    assert all(f"| {v} | UM |" in table for v in variants) and "Training cost" in table and "Paired tests" in table
    assert "95% bootstrap intervals" in table and "| UM | focusface | arcface_aug |" in table
    assert "## IJB template verification" in table and "| IJBC | focusface | U-M |" in table  # the synthetic release
    assert (project / "reports" / "ijb.csv").read_text().count("\nIJBC,") == 12  # 4 variants x 3 protocols
    for figure in ("roc_um.png", "det_mm.png", "scores.png", "training.png", "masks.png", "ijb_IJBC_roc.png"):
        assert (project / "reports" / "figures" / figure).stat().st_size > 10_000
    again = _run(*dvc, "repro", cwd=project)  # only the check runs (it watches data/ outside the pipeline)
    assert [line for line in again.splitlines() if line.startswith("Running stage")] == ["Running stage 'check':"], (
        again
    )
    assert again.count("didn't change, skipping") == 13, again
    lock = (project / "dvc.lock").read_bytes()
    _run(*dvc, "repro", "--force", cwd=project)  # every stage again: an exact reproduction changes no hash in dvc.lock
    assert (project / "dvc.lock").read_bytes() == lock, "dvc.lock changed on an exact re-run"
    shown = _run(*dvc, "metrics", "show", cwd=project)
    assert all(f"metrics/{v}.json" in shown for v in variants)
    stages = set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) - {"check"}
    images = project / "focusface" / "images.py"  # a low module that no stage names: a comment edited in it
    original = images.read_text()
    images.write_text(original + "\n# an edit no stage lists by name\n")
    status = subprocess.run(dvc + ["status", "--json"], cwd=project, capture_output=True, text=True, timeout=300)
    stale = json.loads(status.stdout)
    images.write_text(original)
    changed = {
        s
        for s, said in stale.items()
        if any(isinstance(x, dict) and x.get("changed deps", {}).get("focusface") == "modified" for x in said)
    }
    assert changed == stages, stale  # every stage that runs the library, and so none is left stale
    _run("git", "add", "-A", cwd=project)
    _run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "demo run", cwd=project)
    assert not (project / "data.dvc").exists()  # the demo has no data record: `dvc add data` makes one for the paper's
    said = _run(*dvc, "exp", "run", "-S", "variants.focusface.contrastive=cosine", cwd=project)
    ran = sorted(line.split("'")[1] for line in said.splitlines() if line.startswith("Running stage"))
    assert ran == ["check", "evaluate@focusface", "report", "train@focusface"], ran  # only what the parameter affects
    assert "metrics/focusface.json" in _run(*dvc, "metrics", "diff", cwd=project)
    assert not (project / "data.dvc").exists()  # an experiment writes none (a placeholder record got an empty md5)
    params = (project / "params.yaml").read_text()  # -S rewrote one value and kept the comments around it
    assert "contrastive: cosine" in params and "# the authors' term; or cosine" in params and "# one list:" in params
    assert "spec: cloth, surgical-#adff2f, surgical-#87cefa, KN95, N95     # the authors'" in params  # as written


@pytest.mark.slow
def test_a_variant_added_to_params_yaml_is_trained_evaluated_and_reported(project):
    """One list of variants: a new entry in params.yaml alone makes its train and evaluate stages and a report row."""
    if not (project / "dvc.lock").is_file():
        _run(sys.executable, "-m", "dvc", "repro", cwd=project)  # run alone
    added = project.parent / "added"
    shutil.copytree(project, added, ignore=shutil.ignore_patterns(".dvc/tmp"), dirs_exist_ok=True)
    params = (added / "params.yaml").read_text()
    (added / "params.yaml").write_text(
        params.replace(
            "\nevaluate:",
            "  focusface_cosine:\n    init_from: random\n    method: focusface\n    contrastive: cosine\n\nevaluate:",
            1,
        )
    )
    # `dvc status`, not `dvc repro --dry`: a dry run stops at evaluate@focusface_cosine, whose model a dry run never makes
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=added, capture_output=True, text=True, timeout=300
    )
    stale = json.loads(status.stdout)
    assert sorted(stale) == ["check", "evaluate@focusface_cosine", "report", "train@focusface_cosine"], stale
    assert stale["report"] == [{"changed deps": {"params.yaml": {"variants": "modified"}}}]  # a row more, nothing else


def test_every_stage_that_runs_focusface_depends_on_the_whole_package():
    """No hand-kept list of modules: a stage that runs a notebook or `python -m focusface` depends on `focusface`,
    and on the notebook it runs."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        if name == "check":
            continue  # it runs every time (always_changed)
        assert "focusface" in stage["deps"], name
        assert not [d for d in stage["deps"] if str(d).startswith("focusface/")], name  # nothing listed twice
        notebook = next((w for w in stage["cmd"].split() if w.startswith("nbs/pipeline/")), None)
        assert notebook is None or notebook in stage["deps"], name
    assert "__pycache__/" in (REPO / ".dvcignore").read_text()  # compiled files would make every clone differ


@pytest.mark.slow
def test_the_paper_setting_fails_fast_without_its_data(project, tmp_path):
    """`cp configs/params-paper.yaml params.yaml && dvc repro` with no data/: the first stage says what to get."""
    paper = tmp_path / "paper"
    shutil.copytree(project, paper, ignore=shutil.ignore_patterns("outputs", ".dvc/cache", ".dvc/tmp"))
    shutil.copy(paper / "configs" / "params-paper.yaml", paper / "params.yaml")
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "data"], cwd=paper, capture_output=True, text=True, timeout=300
    )
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "does not download" in said and "data/ms1m" in said and "insightface" in said, said[-3000:]
    assert "data.dvc" not in said  # not a stage of the pipeline: DVC would verify it first, with its own terse error
    for name in (
        "ms1m/train.rec",
        "ms1m/train.idx",
        "ms1m/property",
        "eval/lfw.bin",
    ):  # stand-ins: the check only looks
        (paper / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (paper / "data" / name).write_bytes(b"x")
    _run(sys.executable, "-m", "dvc", "repro", "check", cwd=paper)
    before = json.loads((paper / "outputs" / "check.json").read_text())
    assert before["recorded"] is None and len(before["files"]) == 4
    _run(sys.executable, "-m", "dvc", "add", "data", cwd=paper)  # README step 2: the data stage sees the new record
    _run(sys.executable, "-m", "dvc", "repro", "check", cwd=paper)
    after = json.loads((paper / "outputs" / "check.json").read_text())
    assert after["recorded"] == yaml.safe_load((paper / "data.dvc").read_text())["outs"][0]["md5"]
    assert not (paper / "outputs" / "data").exists()


MISTAKES = [  # (where in params.yaml, the wrong value, what the one line must say)
    (("data", "train_identities"), -5, "data.train_identities: must be an integer from 1 to 10,000,000, got -5"),
    (("setting",), "papr", "setting: must be demo or paper, got 'papr'"),
    (("masks", "spec"), "balaclava", "masks.spec: "),
    (("train", "backbone"), "r9", "train: backbone must be one of"),
    (("train", "lr"), "fast", "train: lr must be float, got 'fast'"),
    (("variants", "focusface", "contrastive"), "banana", "variants.focusface: contrastive must be one of"),
    (
        ("variants", "focusface", "methd"),
        "arcface",
        "variants.focusface: unknown key(s) 'methd' (did you mean 'method'?)",
    ),
    (
        ("variants", "focusface_ontop", "init_from"),
        "elasticface",
        "variants.focusface_ontop.init_from: must be random or one of",
    ),
    (("variants", "focusface_ontop", "freeze"), "all", "variants.focusface_ontop: freeze must be one of"),
    (("variants", "random"), {"method": "arcface"}, "variants.random: a variant name is letters, digits and _"),
    (("ontop",), {"base": "arcface"}, "ontop: not a parameter of the pipeline"),
    (("report", "references"), "arcface,elastic", "report.references: 'elastic' is not one of the variants"),
    (("report", "bootstrap"), -1, "report.bootstrap: must be an integer of at least 0, got -1"),
    (("evaluate", "protocols"), "uu,xm", "evaluate.protocols: 'xm' not among"),
    (("evaluate", "score"), "euclid", "evaluate.score: must be one of"),
    (("data",), 5, "data: must be a mapping of key: value, got 5"),
    (("variants", "focusface"), 3, "variants.focusface: must be a mapping of key: value, got 3"),
    (("masks", "seed"), "x", "masks.seed: must be an integer of at least 0, got 'x'"),
]


@pytest.mark.parametrize("where, value, said", MISTAKES, ids=[".".join(m[0]) for m in MISTAKES])
def test_a_bad_parameter_fails_in_the_check_stage_in_one_line(tmp_path, where, value, said):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    node = params
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "focusface.experiment",
            "check",
            str(tmp_path / "params.yaml"),
            str(tmp_path / "check.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 2 and lines[0].endswith("1 problem(s):") and lines[1].strip().startswith(said), out.stderr
    assert not (tmp_path / "check.json").exists()  # nothing is written before the parameters hold


def test_the_committed_parameters_pass_the_check():
    from focusface.experiment import check_params

    for path in ("params.yaml", "configs/params-paper.yaml"):
        assert check_params(yaml.safe_load((REPO / path).read_text())) == [], path


@pytest.mark.parametrize("path", ["params.yaml", "configs/params-paper.yaml"])
def test_dvc_exp_run_set_param_rewrites_the_parameters_file_to_itself(path, tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel (lists in block style, strings unquoted where they can be,
    null as nothing): both files are written in that form, so setting a value to what it is changes no byte, and an
    experiment's params.yaml differs from the committed one in the values it set and nothing else."""
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` calls

    original = (REPO / path).read_text()
    params = yaml.safe_load(original)
    copy = tmp_path / "params.yaml"
    copy.write_text(original)
    seeds = ",".join(str(s) for s in params["seeds"])
    apply_overrides(
        copy,
        [
            f"variants.focusface.contrastive={params['variants']['focusface']['contrastive']}",
            f"seeds=[{seeds}]",
            f"masks.spec='{params['masks']['spec']}'",
        ],
    )
    assert copy.read_text() == original


@pytest.mark.slow
def test_a_train_stage_run_under_torchrun_is_taken_by_dvc_as_the_stage(project):
    """The README's several-GPU path: the train stage of a variant under torchrun (two gloo processes here), then
    `dvc commit` makes it the stage's output, and DVC finds the stage up to date."""
    dvc = [sys.executable, "-m", "dvc"]
    if not (project / "dvc.lock").is_file():
        _run(*dvc, "repro", cwd=project)  # run alone
    torchrun = str(Path(sys.executable).parent / "torchrun")
    command = ["--standalone", "--nproc-per-node", "2", "-m", "focusface.experiment", "train", "params.yaml"]
    _run(torchrun, *command, "focusface", cwd=project)
    summary = json.loads((project / "outputs" / "runs" / "focusface" / "seed0" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3, summary  # one run of two processes, the same steps

    def status():
        said = subprocess.run(
            dvc + ["status", "train@focusface", "--json"], cwd=project, capture_output=True, text=True, timeout=300
        )
        return json.loads(said.stdout)

    assert "train@focusface" in status()  # the output is not the one dvc.lock records, until it is committed
    _run(*dvc, "commit", "-f", "train@focusface", cwd=project)
    assert status() == {}
