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


def run_two_gloo_ranks(script, timeout: int = 300) -> None:
    "Run the Python file `script` as ranks 0 and 1 of a gloo process group on loopback; assert both succeed."
    import os
    import socket

    with socket.socket() as probe:  # a free port on loopback for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for r in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()[-2000:]
