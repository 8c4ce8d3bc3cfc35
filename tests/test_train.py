"""The trainer: it learns, resumes exactly after SIGKILL, runs under torchrun, and refuses bad input before step 1."""

import itertools
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from checkpoint_edits import rehash
from command_line import run_two_gloo_ranks

from focusface.checkpoints import load_checkpoint
from focusface.errors import FocusFaceError
from focusface.loaders import make_loader
from focusface.runfolder import Pace
from focusface.synthdata import make_training_set
from focusface.train import log_progress, optimisation_step, start_run, train
from focusface.trainconfig import load_config

CLI = [sys.executable, "-m", "focusface.cli"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "train"
    make_training_set(root, identities=12, images_per_identity=8, workers=0)
    return root


def _args(faces, out, **extra):
    values = (
        dict(
            train=str(faces),
            out=str(out),
            backbone="demo",
            epochs=2,
            batch_size=16,
            lr=0.05,
            lr_batch=16,
            margin_s=16.0,
            workers=0,
            log_every=2,
            progress=False,
            lr_steps=[],
            dropout=0.2,
        )
        | extra
    )
    return [f"{k}={json.dumps(v) if isinstance(v, list) else ('null' if v is None else v)}" for k, v in values.items()]


def _state(path):
    return {k: v for k, v in torch.load(path, weights_only=True)["state_dict"].items()}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n, *args, env=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={n}",
            "--master-addr=127.0.0.1",
            f"--master-port={_free_port()}",
            "-m",
            "focusface.train",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize("method", ["focusface", "arcface", "arcface_aug"])
def test_each_method_lowers_its_loss(faces, tmp_path, method):
    summary = train(load_config(overrides=_args(faces, tmp_path / "run", method=method, epochs=3)))
    losses = [
        float(line.split(" loss ")[1].split()[0])
        for line in (tmp_path / "run" / "train.log").read_text().splitlines()
        if " loss " in line
    ]
    assert losses[-1] < losses[0] * 0.8, losses
    assert summary["images_seen"] == summary["pairs_seen"] * (1 if method == "arcface" else 2)
    model = load_checkpoint(tmp_path / "run" / "model.pt")
    assert model.channel_order == "rgb" and model.config["backbone"] == "demo"


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(faces, tmp_path):
    """A run killed at an arbitrary moment and resumed ends with exactly the weights of an uninterrupted run."""
    args = _args(faces, tmp_path / "whole", epochs=2, checkpoint_every=1)
    assert subprocess.run(CLI + ["train", *args], capture_output=True, text=True).returncode == 0
    killed = _args(faces, tmp_path / "killed", epochs=2, checkpoint_every=1)
    proc = subprocess.Popen(CLI + ["train", *killed], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))  # somewhere in the run: mid-step, mid-save, mid-validation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed: make it longer"
    resumed = subprocess.run(CLI + ["train", *killed, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    log = (tmp_path / "killed" / "train.log").read_text()
    start = int(log.split("resuming at step ")[1].split("/")[0])
    assert 0 < start < 12, log
    whole, again = _state(tmp_path / "whole" / "model.pt"), _state(tmp_path / "killed" / "model.pt")
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)
    assert not list(tmp_path.glob("killed/.*.tmp")), "temporaries of the killed save were cleaned up"


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_in_one(faces, tmp_path):
    """DDP over 2 CPU processes, same global batch: the weights stay close to one process's (batch statistics of
    BatchNorm are per process, so not equal); the checkpoint of the 2-process run resumes in 1 process."""
    one = _args(faces, tmp_path / "one", epochs=1, dropout=0.0, lr=0.02)
    assert subprocess.run(CLI + ["train", *one], capture_output=True, text=True).returncode == 0
    two = _torchrun(2, *_args(faces, tmp_path / "two", epochs=1, dropout=0.0, lr=0.02))
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _state(tmp_path / "one" / "model.pt"), _state(tmp_path / "two" / "model.pt")
    moved = sum(float((a[k] - b[k]).float().norm()) for k in a if a[k].is_floating_point())
    size = sum(float(a[k].float().norm()) for k in a if a[k].is_floating_point())
    assert moved / size < 0.05, f"relative weight difference {moved / size:.4f} after one epoch"
    more = subprocess.run(
        CLI + ["train", *_args(faces, tmp_path / "two", epochs=1, dropout=0.0, lr=0.02, max_steps=6), "--resume"],
        capture_output=True,
        text=True,
    )
    assert more.returncode == 0, more.stderr
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 1 and summary["steps"] == 6


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(faces, tmp_path):
    args = _args(faces, tmp_path / "nan", epochs=3, lr=1e12, grad_clip=None, checkpoint_every=1, dropout=0.0)
    out = subprocess.run(CLI + ["train", *args], capture_output=True, text=True)
    assert out.returncode == 2 and "training stopped before applying it" in out.stderr, out.stderr
    state = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _fails(args, *expected, cwd=None):
    out = subprocess.run(CLI + ["train", *args], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 2 and all(e in out.stderr for e in expected), out.stderr
    assert "Traceback" not in out.stderr
    return out.stderr


def test_bad_input_fails_before_the_first_step(faces, tmp_path):
    import shutil

    shutil.copytree(faces, tmp_path / "few")
    (tmp_path / "few" / "property").write_text("5,112,112\n")  # 12 identities in the rec, 5 announced
    _fails(_args(tmp_path / "few", tmp_path / "a"), "class id", "outside [0, 5)")
    _fails(_args(tmp_path / "missing", tmp_path / "b"), "missing: dataset folder not found")
    _fails(_args(faces, tmp_path / "c") + ["learning_rate=0.1"], "unknown key(s) 'learning_rate'")
    _fails(_args(faces, tmp_path / "d", precision="fp16"), "fp16 needs a CUDA device")
    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace

    save_checkpoint(FocusFace("tiny"), tmp_path / "tiny.pt")
    _fails(_args(faces, tmp_path / "e", init=str(tmp_path / "tiny.pt")), "a 'tiny' model, but backbone is 'demo'")
    _fails(_args(faces, faces / "inside"), "lies inside the source")
    if Path(
        "/proc/meminfo"
    ).is_file():  # a step whose layer outputs cannot fit on this CPU: said, not killed by the system
        _fails(
            _args(faces, tmp_path / "f", backbone="r100", batch_size=10**6),
            "batch_size=1000000 (2 view(s) of each pair): 2,000,000 faces a step need at least",
        )
    assert not any((tmp_path / n).exists() for n in "abcdef"), "nothing is written by a run that cannot start"
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "train.log").write_text("an earlier run\n")
    said = _fails(_args(faces, tmp_path / "done"), "pass --resume to continue it, or --overwrite to start again")
    assert "=True" not in said, said  # the command names its flags, the library its parameters
    with pytest.raises(FocusFaceError, match="pass resume=True to continue it, or overwrite=True"):
        train(load_config(overrides=_args(faces, tmp_path / "done")))


def test_on_top_of_a_pretrained_model_with_a_frozen_trunk(faces, tmp_path):
    train(load_config(overrides=_args(faces, tmp_path / "base", method="arcface", epochs=1)))
    base = _state(tmp_path / "base" / "model.pt")
    summary = train(
        load_config(
            overrides=_args(
                faces,
                tmp_path / "top",
                init=str(tmp_path / "base" / "model.pt"),
                freeze="trunk_but_last_stage",
                epochs=1,
            )
        )
    )
    top = _state(tmp_path / "top" / "model.pt")
    assert torch.equal(top["backbone.layer1.0.conv1.weight"], base["backbone.layer1.0.conv1.weight"])
    assert torch.equal(top["backbone.layer1.0.bn1.running_mean"], base["backbone.layer1.0.bn1.running_mean"])
    assert not torch.equal(top["backbone.layer4.0.conv1.weight"], base["backbone.layer4.0.conv1.weight"])
    assert summary["init"].endswith("model.pt") and summary["pairs_seen"] > 0 and summary["wall_time_s"] > 0


def _as_insightface_backbone(model_path, out):
    """Write a trained focusface model's trunk and identity branch as an insightface backbone.pth, by the published
    layout (top-level trunk, fc = Linear(C*49, 512), features = BatchNorm1d(512)), mapped here by hand."""
    state = torch.load(model_path, weights_only=True)["state_dict"]
    sd = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    conv = state["head.identity_conv.weight"]
    sd["fc.weight"], sd["fc.bias"] = conv.reshape(conv.shape[0], -1).clone(), torch.zeros(conv.shape[0])
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        sd[f"features.{name}"] = state[f"head.identity_bn.{name}"]
    torch.save(sd, out)


def test_on_top_of_a_backbone_starts_from_its_embedding(faces, tmp_path):
    """The paper's third claim needs this: a run on top of a published backbone validates, before its first step,
    exactly as the backbone itself does (its embedding arrives whole), then trains its mask head."""
    from focusface.evalsets import write_bin
    from focusface.synthdata import synthetic_pairs

    pairs = synthetic_pairs(3, first_identity=9000, identities=20, pairs_per_fold=4)
    write_bin(tmp_path / "val.bin", pairs.images, pairs.issame)
    common = dict(backbone="tiny", val=str(tmp_path / "val.bin"), epochs=1, dropout=0.0)
    base = train(load_config(overrides=_args(faces, tmp_path / "base", method="arcface", **common)))
    _as_insightface_backbone(tmp_path / "base" / "model.pt", tmp_path / "backbone.pth")
    top = train(
        load_config(
            overrides=_args(
                faces, tmp_path / "top", init=str(tmp_path / "backbone.pth"), val_at_start=True, lr=0.01, **common
            )
        )
    )
    for key in ("val/uu_accuracy", "val/um_accuracy", "val/uu_eer"):
        assert top["val_start"][key] == base["val"][key], (key, top["val_start"][key], base["val"][key])
    assert top["channel_order"] == "rgb" and "starting step 0" in (tmp_path / "top" / "train.log").read_text()
    log = (tmp_path / "top" / "train.log").read_text()
    assert log.index("validation at step 0") < log.index("step 2/")


def _one_step(faces, out, **extra):
    train(load_config(overrides=_args(faces, out, max_steps=1, dropout=0.0, **extra)))
    return _state(out / "checkpoint.pt")


def test_one_step_driven_by_hand_is_the_step_a_run_takes(faces, tmp_path):
    """The run's named steps can be driven one by one: start_run + one optimisation_step gives the weights a whole
    max_steps=1 run saves; a non-finite batch is refused before it moves the weights or the position."""
    whole = _one_step(faces, tmp_path / "whole")
    run = start_run(load_config(overrides=_args(faces, tmp_path / "byhand", max_steps=1, dropout=0.0)))
    batch = next(iter(make_loader(run.dataset, run.sampler, workers=0)))
    optimisation_step(run, batch)
    assert run.progress.position["global_step"] == 1 and run.progress.position["pairs"] == 16
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, whole[name]), name
    weights, position = {k: v.clone() for k, v in run.model.state_dict().items()}, dict(run.progress.position)
    # the same run (its model, optimiser and progress) with a diverged step
    diverged = replace(run, runner=lambda *views: dict(loss=torch.tensor(float("nan"), requires_grad=True)))
    with pytest.raises(FocusFaceError, match="training stopped before applying it"):
        optimisation_step(diverged, batch)
    assert run.progress.position == position
    assert all(torch.equal(v, weights[k]) for k, v in run.model.state_dict().items())


# what makes the host wait for the device: reading a value out of a tensor, in any of Python's ways
SYNCING = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__index__", "__bool__")


def _steps(run, batches):
    run.progress.pace = Pace.start(run.progress.position)
    for batch in batches:
        log_progress(run, optimisation_step(run, batch))


def test_the_training_step_reads_the_device_once_every_log_every_steps(faces, tmp_path, monkeypatch):
    """12 steps with a log line every 3 (and checkpoints only at the epochs' ends, steps 6 and 12, which are log
    steps too) read the device 4 times: one transfer per look, none in between. Reading the loss each step (a
    progress bar, a finiteness check, float() of the parts) makes it at least 12."""
    run = start_run(
        load_config(overrides=_args(faces, tmp_path / "sync", log_every=3, checkpoint_every=1000, epochs=2))
    )
    assert run.steps_per_epoch == 6 and run.total == 12
    batches = list(itertools.islice(make_loader(run.dataset, run.sampler, workers=0), 12))
    calls = []
    for name in SYNCING:
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _real=real, _name=name, **k: (calls.append(_name), _real(self, *a, **k))[1],
        )
    _steps(run, batches)
    monkeypatch.undo()
    run.log.close()
    assert run.progress.position["global_step"] == 12
    assert calls == ["tolist"] * 4, calls
    logged = re.findall(r" step (\d+)/12 ", (tmp_path / "sync" / "train.log").read_text())
    assert logged == ["3", "6", "9", "12"]  # a log line at each look, its means read there


def test_a_non_finite_step_between_looks_is_skipped_and_the_next_look_stops(faces, tmp_path):
    """With log_every=4, a NaN gradient at step 2 is not seen by the host until step 4: its update and step 3's are
    skipped on the device, and step 4 stops the run with the weights, momentum and position of before step 2."""
    run = start_run(
        load_config(
            overrides=_args(faces, tmp_path / "later", log_every=4, checkpoint_every=1000, epochs=2, dropout=0.0)
        )
    )
    batches = list(itertools.islice(make_loader(run.dataset, run.sampler, workers=0), 4))
    _steps(run, batches[:1])
    weights = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    momentum = [run.optimizer.state[p]["momentum_buffer"].clone() for p in run.model.parameters() if p.requires_grad]
    position = dict(run.progress.position)
    # the same run (its model, optimiser and progress) with a step that diverges, for step 2 only
    diverging = replace(run, runner=lambda *views: {k: v * float("nan") for k, v in run.runner(*views).items()})
    _steps(diverging, batches[1:2])
    _steps(run, batches[2:3])
    assert run.progress.position["global_step"] == 3  # the host has not looked yet
    with pytest.raises(FocusFaceError, match="not finite at step 2 .*training stopped before applying it"):
        _steps(run, batches[3:4])
    assert run.progress.position == position
    assert all(torch.equal(p, weights[n]) for n, p in run.model.named_parameters())
    after = [run.optimizer.state[p]["momentum_buffer"] for p in run.model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(after, momentum))


def test_gradient_clipping_leaves_the_class_centres_alone_unless_asked(faces, tmp_path):
    """grad_clip clips the network (trunk and heads); the ArcFace class centres get their full gradient, as in
    insightface's arcface_torch. grad_clip_scope=all clips them too (focusface before)."""
    free = _one_step(faces, tmp_path / "free")
    network = _one_step(faces, tmp_path / "network", grad_clip=1e-3)
    everything = _one_step(faces, tmp_path / "all", grad_clip=1e-3, grad_clip_scope="all")
    centres, trunk = "identity_classifier.weight", "backbone.layer4.0.conv1.weight"
    assert torch.equal(network[centres], free[centres])  # the same first update: not clipped
    assert not torch.equal(everything[centres], free[centres])  # clipped with the rest
    assert not torch.equal(network[trunk], free[trunk])  # the network is clipped in both


def test_a_checkpoint_without_a_setting_of_this_version_is_refused_by_name(faces, tmp_path):
    """A checkpoint saved by a development version that lacked some settings (here the training choices, removed
    from its saved config, hashes made again) is refused with the settings it lacks, not resumed under guesses."""
    run = tmp_path / "old"
    _one_step(faces, run, epochs=2, grad_clip=5.0)
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    for key in ("bn_views", "grad_clip_scope"):
        raw["extra"]["train_config"].pop(key)
    rehash(raw)
    torch.save(raw, run / "checkpoint.pt")
    old = _args(faces, run, epochs=2, dropout=0.0, grad_clip=5.0, max_steps=2)
    stderr = _fails(old + ["--resume"], "without the settings grad_clip_scope, bn_views")
    assert "cannot be resumed" in stderr and "train the run again" in stderr


def test_a_changed_setting_is_refused_on_resume_with_what_it_was(faces, tmp_path):
    run = tmp_path / "run"
    _one_step(faces, run, epochs=2, grad_clip=5.0)
    old = _args(faces, run, epochs=2, dropout=0.0, grad_clip=5.0, max_steps=2)
    stderr = _fails(old + ["grad_clip_scope=all", "--resume"], "grad_clip_scope was 'network', now 'all'")
    assert "cannot be resumed" in stderr and "bn_views" not in stderr
    again = subprocess.run(CLI + ["train", *old, "--resume"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_sync_bn_on_cpu_processes_is_refused_before_any_work(faces, tmp_path):
    out = _torchrun(2, *_args(faces, tmp_path / "sync", sync_bn=True))
    assert out.returncode != 0 and "sync_bn needs CUDA devices" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "sync" / "checkpoint.pt").exists()


def test_a_resume_reads_nothing_unverified(faces, tmp_path):
    """64 flipped bytes in an optimiser buffer of checkpoint.pt resumed silently into weights 710 away from a clean
    resume: every part of the training state is hashed now, and a damaged one is refused."""
    run = tmp_path / "run"
    _one_step(faces, run, epochs=2)
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    buffer = next(v["momentum_buffer"] for v in raw["extra"]["optimizer"]["state"].values())
    buffer.view(-1)[:16] += 1.0
    torch.save(raw, run / "checkpoint.pt")
    _fails(
        _args(faces, run, epochs=2, max_steps=2, dropout=0.0) + ["--resume"],
        "training state",
        "does not match the hash",
    )


def test_the_trainer_sets_cudnn_benchmark_on_cuda(faces, tmp_path, monkeypatch):
    """cudnn.benchmark was never set: an r100 step on an H200 ran at 1,220 pairs/s instead of 1,647. start_run tunes
    the backends for its device; on a CUDA device (only its type is read) that sets cudnn.benchmark."""
    import focusface.train

    seen = []
    monkeypatch.setattr(focusface.train, "tune_backends", seen.append)
    run = focusface.train.start_run(load_config(overrides=_args(faces, tmp_path / "run", max_steps=1)))
    run.log.close()
    assert seen == [torch.device("cpu")]  # called with the run's device, before any work
    monkeypatch.undo()
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    focusface.train.tune_backends(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    focusface.train.tune_backends(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True


def test_the_log_says_once_what_the_start_of_a_process_cost(faces, tmp_path):
    """On a GPU the first ten steps took ~50 s (compilation, cuDNN's autotuning, the loader's start) and nothing said
    so: the pairs/s of the first log window was all there was to guess from."""
    train(load_config(overrides=_args(faces, tmp_path / "run", batch_size=8, lr_batch=8, epochs=2)))  # 24 steps
    log = (tmp_path / "run" / "train.log").read_text()
    said = re.findall(
        r"warm-up: the first 10 steps took (\S+) s, the 10 after them (\S+) s: the start cost (\S+) s", log
    )
    assert len(said) == 1, log
    first, after, cost = map(float, said[0])
    assert first > 0 and after > 0 and cost == pytest.approx(max(0.0, first - after), abs=0.11), said


def test_a_head_only_warm_up_moves_only_the_class_centres_and_the_mask_branch(faces, tmp_path):
    """head_warmup_steps=1 on top of a pretrained model: the first step changes the class centres and the mask
    branch and nothing that makes the embedding (BatchNorm statistics aside, which follow every batch); the second
    step trains everything."""
    from focusface.checkpoints import save_checkpoint
    from focusface.model import FocusFace
    from focusface.train import HEAD_PARAMETERS

    save_checkpoint(FocusFace("demo").eval(), tmp_path / "pretrained.pt")
    overrides = _args(faces, tmp_path / "warm", init=str(tmp_path / "pretrained.pt"), head_warmup_steps=1)
    run = start_run(load_config(overrides=overrides))
    batches = iter(make_loader(run.dataset, run.sampler, workers=0))
    moved = []
    for _ in range(2):
        before = {k: v.detach().clone() for k, v in run.model.named_parameters()}
        optimisation_step(run, next(batches))
        moved.append({k for k, v in run.model.named_parameters() if not torch.equal(v, before[k])})
    heads = {k for k in before if k.startswith(HEAD_PARAMETERS)}
    assert moved[0] == heads, moved[0] ^ heads
    assert moved[1] > heads and any(k.startswith("backbone.") for k in moved[1])
    with pytest.raises(FocusFaceError, match="give init too"):
        load_config(overrides=_args(faces, tmp_path / "none", head_warmup_steps=3))
    with pytest.raises(FocusFaceError, match="head_warmup_steps must be 0 or more"):
        load_config(
            overrides=_args(faces, tmp_path / "less", init=str(tmp_path / "pretrained.pt"), head_warmup_steps=-1)
        )


def test_class_means_start_each_centre_at_its_class_mean_embedding(faces, tmp_path):
    """On top of a pretrained model, random class centres at ArcFace's scale send a large, meaningless gradient
    into the pretrained trunk from the first step; centres=class_means starts each at its class's mean embedding
    (the first CENTRE_IMAGES images of the class), keeping the length the random start gave it."""
    from focusface.checkpoints import save_checkpoint
    from focusface.images import decode_image
    from focusface.loaders import image_classes
    from focusface.model import FocusFace
    from focusface.train import CENTRE_IMAGES

    save_checkpoint(FocusFace("demo").eval(), tmp_path / "pretrained.pt")
    common = dict(init=str(tmp_path / "pretrained.pt"), max_steps=1, dropout=0.0)
    random_start = start_run(load_config(overrides=_args(faces, tmp_path / "random", **common)))
    run = start_run(load_config(overrides=_args(faces, tmp_path / "means", centres="class_means", **common)))
    model, dataset = run.model.eval(), run.dataset
    classes = image_classes(dataset.faces)
    for label in (0, 5, 11):
        keys = sorted(dataset.faces.image_keys[classes == label])[:CENTRE_IMAGES]
        images = torch.stack(
            [torch.from_numpy(decode_image(dataset.faces.read(int(k))[1]).copy()) for k in keys]
        ).numpy()
        with torch.no_grad():
            mean = model.embed_faces(images, flip=False)[0].mean(0)
        centre = run.model.identity_classifier.weight[label].detach()
        assert torch.nn.functional.cosine_similarity(centre, mean, dim=0) > 0.9999, label
        before = random_start.model.identity_classifier.weight[label].detach()
        assert torch.isclose(centre.norm(), before.norm()), label  # the random start's length, kept
    with pytest.raises(FocusFaceError, match="give init too"):
        load_config(overrides=_args(faces, tmp_path / "none", centres="class_means"))


def test_class_means_under_two_gloo_processes_equal_one_process(faces, tmp_path):
    """Under torchrun each process embeds every other class image and the sums are added up (all_reduce): two gloo
    ranks on the CPU must give the centres one process gives."""

    import numpy as np

    from focusface.checkpoints import save_checkpoint
    from focusface.loaders import PairedFaces
    from focusface.model import FocusFace
    from focusface.train import class_mean_centres

    torch.manual_seed(0)
    model = FocusFace("demo", num_classes=24).eval()
    save_checkpoint(model, tmp_path / "m.pt")
    single = class_mean_centres(model, PairedFaces(faces), torch.device("cpu")).numpy()
    script = tmp_path / "means.py"
    script.write_text(f"""
import numpy as np, torch, torch.distributed as dist
from focusface.checkpoints import load_checkpoint
from focusface.loaders import PairedFaces
from focusface.train import class_mean_centres
dist.init_process_group("gloo")
model = load_checkpoint(r"{tmp_path / "m.pt"}")
centres = class_mean_centres(model, PairedFaces(r"{faces}"), torch.device("cpu"), rank=dist.get_rank(), world=2)
if dist.get_rank() == 0:
    np.save(r"{tmp_path / "two.npy"}", centres.numpy())
dist.destroy_process_group()
""")
    run_two_gloo_ranks(script, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), single, atol=1e-5)
