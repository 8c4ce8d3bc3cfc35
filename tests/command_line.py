"""Running `focusface` as its user does, in the tests that try it with wrong paths, damaged files and odd options:
the command, what a refusal must look like, and the smallest training settings."""

import subprocess
import sys

CLI = [sys.executable, "-m", "focusface.cli"]


def run(*args, **kw) -> subprocess.CompletedProcess:
    "`focusface ARGS...` in a new process, its output captured as text."
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, **kw)


def refused(out: subprocess.CompletedProcess, *expected: str) -> str:
    "Assert a refusal: exit code 2, one line on stderr holding every `expected` text, no traceback; the line."
    assert out.returncode == 2, (out.returncode, out.stdout[-500:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert all(e in out.stderr for e in expected), out.stderr
    return out.stderr


def train_args(data, out, **extra) -> list[str]:
    "`key=value` words of a training run small enough for a test: the demo backbone, one epoch of batches of 8."
    values = dict(
        train=str(data),
        out=str(out),
        backbone="demo",
        epochs=1,
        batch_size=8,
        lr_batch=8,
        workers=0,
        progress="false",
        lr_steps="[]",
        log_every=1,
    )
    return [f"{k}={v}" for k, v in (values | extra).items()]
