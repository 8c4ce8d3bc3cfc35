"""What the readers' budgets and the workers' death cost and save: time and peak memory of the commands that met the
hostile inputs of the nothing-lost issue, and how long a SIGKILLed run's processes outlive it on a loaded machine.

    python benchmarks/bench_budgets.py [--trials 3] [--busy 6]

Each command runs in a child process; its peak memory is the child's maximum resident set (getrusage). The kill
measurement starts `--busy` busy loops (the load of the test), kills a training run a second after its log starts,
and polls /proc until no process of the run is left.
"""

import argparse
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "focusface.cli"]


def measured(args: list) -> tuple[float, float, str]:
    "(seconds, peak RSS in MiB, the last line of stderr) of one CLI command in a child process."
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    out = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far: run the biggest last
    line = (out.stderr.strip().splitlines() or [""])[-1]
    return seconds, max(peak, before) / 1024, line[:110]


def processes_with(marker: str) -> int:
    found = 0
    for d in Path("/proc").iterdir():
        try:
            found += d.name.isdigit() and marker.encode() in (d / "environ").read_bytes()
        except OSError:
            pass
    return found


def kill_cleanup(work: Path, busy: int, trials: int) -> list[float]:
    "Seconds from SIGKILL of a training run (workers=2) to the last of its processes, under `busy` busy loops."
    from focusface.synthdata import make_training_set

    make_training_set(work / "train", identities=8, images_per_identity=4, workers=0)
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    gone = []
    try:
        for trial in range(trials):
            out, marker = work / f"run{trial}", uuid.uuid4().hex
            args = [f"train={work / 'train'}", f"out={out}", "backbone=demo", "epochs=40", "batch_size=8"]
            args += ["lr_batch=8", "workers=2", "progress=false", "log_every=1"]
            env = dict(os.environ, FOCUSFACE_BENCH_MARKER=marker)
            run = subprocess.Popen(
                CLI + ["train", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while not (out / "train.log").exists():
                time.sleep(0.02)
            time.sleep(1.0)  # the loader's workers are starting: the window the forkserver's death signal closes
            run.send_signal(signal.SIGKILL)
            run.wait()
            killed = time.perf_counter()
            while processes_with(marker) and time.perf_counter() - killed < 120:
                time.sleep(0.02)
            gone.append(time.perf_counter() - killed)
    finally:
        for loop in loops:
            loop.kill()
    return gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--busy", type=int, default=6)
    args = parser.parse_args()
    from focusface.checkpoints import save_checkpoint
    from focusface.images import encode_image
    from focusface.model import FocusFace

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        save_checkpoint(FocusFace("tiny").eval(), d / "m.pt")
        tiny = encode_image(np.zeros((8, 8, 3), np.uint8))
        (d / "refs.bin").write_bytes(pickle.dumps(([tiny] * 2_000_000, [True, False] * 500_000), protocol=4))
        (d / "big.jpg").write_bytes(encode_image(np.zeros((8000, 8000, 3), np.uint8)))
        print("| command | input | seconds | peak RSS | what it said |")
        print("| --- | --- | ---: | ---: | --- |")
        cases = [
            ("info --check", "5 MB .bin naming one JPEG 2,000,000 times", ["info", "--check", d / "refs.bin"]),
            ("verify", "an 8000x8000 JPEG (1 MB)", ["verify", d / "m.pt", d / "big.jpg", d / "big.jpg"]),
        ]
        for command, what, cli in cases:
            seconds, peak, line = measured(cli)
            print(f"| `{command}` | {what} | {seconds:.1f} | {peak:,.0f} MiB | {line} |")
        gone = kill_cleanup(d, args.busy, args.trials)
        print(
            f"\nSIGKILL of train (workers=2) beside {args.busy} busy loops: every process of the run gone after "
            + ", ".join(f"{g:.2f}" for g in gone)
            + " s"
        )


if __name__ == "__main__":
    main()
