"""Run the chapters of the book (nbs/NN_*.ipynb) and keep their outputs, or check that the committed ones still hold.

    python scripts/run_chapters.py                   # run every chapter and keep its outputs (after editing one)
    python scripts/run_chapters.py 16_losses 19      # only the chapters whose names start so (or .ipynb paths)
    python scripts/run_chapters.py --check           # run them and compare with the committed outputs; change nothing

Each chapter runs top to bottom in a fresh kernel from nbs/, with the development samples of real faces when their
variables are set (the numbers measured on them then appear in the outputs). Cells tagged `nbval-skip`, and cells
whose nbdev directives say `eval: false`, `slow` or `gpu`, are not run and keep no output. `--check` compares the
text of every output (streams, printed values, tables; not the pixels of figures) with the committed text and fails
with a diff on the first cell that differs, so an output that has gone stale, or was edited by hand, fails the test
command (`scripts/test`, which runs this instead of a plain `nbdev-test`: one execution of the book). Cells whose
output cannot be stable carry the tag `nbval-ignore-output` (the marker nbval, the pytest plugin, uses): they must
run without error and their output is not compared; `--check` lists those whose text changed as a note, not a failure
(they depend on what the machine has: the samples, a pipeline run), so one that went stale where it was made is seen.
Cells tagged `real-faces` keep their text and lose their pictures, so photographs of real people never enter the
repository. An output that names this checkout's folder (a warning's file path, a path printed whole) would differ
in every other clone, so such a chapter is reported and its outputs are not kept. Keeping outputs ends with
`nbdev-clean`.
"""

import argparse
import difflib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
PICTURES = ("image/png", "image/jpeg", "image/svg+xml")
TEXTS = ("text/plain", "text/markdown", "text/html")
SAMPLES = ("FOCUSFACE_LFW_SAMPLE", "FOCUSFACE_RWMFD_SAMPLE")  # the development samples of real faces
SKIP_FLAGS = {"slow", "gpu"}  # pyproject's tst_flags: cells nbdev-test would skip


def tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def skipped(cell) -> bool:
    "A cell that is not run: tagged `nbval-skip`, or an nbdev directive says `eval: false`, `slow` or `gpu`."
    if cell.cell_type != "code":
        return False
    if "nbval-skip" in tags(cell):
        return True
    for line in cell.source.splitlines():
        if not line.startswith("#|"):
            break
        words = line[2:].replace(":", " ").split()
        if words[:2] == ["eval", "false"] or SKIP_FLAGS & set(words):
            return True
    return False


def execute(nb, cwd: Path):
    "A run copy of `nb`, its skipped cells left empty."
    run = nbformat.from_dict(nb)
    for cell in run.cells:
        if skipped(cell):
            cell.source = ""
    for attempt in range(3):  # a kernel that dies while starting (before running any cell) is started again
        # The kernel talks over Unix sockets in a folder of its own: no TCP ports to race for between workers, and
        # none of ipykernel's "running over TCP without encryption" warnings between the chapters' lines.
        with tempfile.TemporaryDirectory(prefix="focusface-kernel-") as sockets:
            km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
            try:
                NotebookClient(run, km=km, timeout=1800, resources={"metadata": {"path": str(cwd)}}).execute()
                return run
            except RuntimeError as e:
                if "before replying to kernel_info" not in str(e) or attempt == 2:
                    raise
                print(f"the kernel died while starting ({e}); starting another", flush=True)
            finally:  # a kernel manager handed to NotebookClient is the caller's to shut down
                if km.has_kernel:
                    km.shutdown_kernel(now=True)


def shown(outputs) -> list[str]:
    "The text a reader sees in `outputs`: streams joined per stream, printed values, tables, errors; no pictures."
    texts, stream = [], None
    for out in outputs:
        if out.output_type == "stream":
            if stream is not None and stream[0] == out.name:
                texts[-1] += out.text
            else:
                texts.append(f"[{out.name}]\n{out.text}")
            stream = (out.name,)
            continue
        stream = None
        if out.output_type == "error":
            texts.append(f"[error] {out.ename}: {out.evalue}")
        else:
            texts += [f"[{kind}]\n{out.data[kind]}" for kind in TEXTS if kind in out.get("data", {})]
    return [t.rstrip() + "\n" for t in texts]


def _first_line(cell) -> str:
    return repr((cell.source.splitlines() or [""])[0][:60])


def ignored_changes(nb, run, name: str) -> list[str]:
    "The cells tagged `nbval-ignore-output` whose text output in `run` differs from the committed one."
    return [
        f"{name} cell {number} ({_first_line(cell)})"
        for number, (cell, done) in enumerate(zip(nb.cells, run.cells))
        if cell.cell_type == "code"
        and not skipped(cell)
        and "nbval-ignore-output" in tags(cell)
        and shown(cell.outputs) != shown(done.outputs)
    ]


def differences(nb, run, name: str) -> list[str]:
    "Where the outputs of `run` differ from those committed in `nb` (cells tagged `nbval-ignore-output` aside)."
    for number, (cell, done) in enumerate(zip(nb.cells, run.cells)):
        if cell.cell_type != "code" or skipped(cell) or "nbval-ignore-output" in tags(cell):
            continue
        old, new = shown(cell.outputs), shown(done.outputs)
        if old == new:
            continue
        diff = difflib.unified_diff(
            "".join(old).splitlines(), "".join(new).splitlines(), "committed", "now", lineterm="", n=1
        )
        return [
            f"{name}: cell {number} ({_first_line(cell)}) shows another output than the committed one:\n"
            + "\n".join(list(diff)[:40])
            + "\nIf the change is intended, run `python scripts/run_chapters.py "
            + name.split(".")[0]
            + "` and commit."
        ]
    return []


def joined(outputs) -> list:
    "`outputs` with consecutive pieces of one stream joined: where the kernel cut a stream depends on timing."
    out = []
    for o in outputs:
        if o.output_type == "stream" and out and out[-1].output_type == "stream" and out[-1].name == o.name:
            out[-1].text += o.text
        else:
            out.append(o)
    return out


def keep(nb, run, path: Path) -> None:
    "Write the outputs of `run` into `path` (pictures of real faces removed)."
    for cell, done in zip(nb.cells, run.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [] if skipped(cell) else joined(done.outputs)
        if "real-faces" in tags(cell):
            for out in cell.outputs:
                for kind in PICTURES:
                    out.get("data", {}).pop(kind, None)
            cell.outputs = [
                o for o in cell.outputs if o.output_type not in ("display_data", "execute_result") or o.data
            ]
    nbformat.write(nb, path)


def machine_bound(run, name: str) -> list[str]:
    "The cells of `run` whose text output names this checkout's folder: it would read otherwise in any other clone."
    return [
        f"{name}: cell {number} ({_first_line(cell)}) prints this checkout's path ({ROOT}); a warning? "
        "Fix its cause, or print the path relative to the repository"
        for number, cell in enumerate(run.cells)
        if cell.cell_type == "code" and any(str(ROOT) in text for text in shown(cell.outputs))
    ]


def chapter(path: Path, check: bool, cwd: Path = NBS) -> tuple[list[str], list[str]]:
    "Run one chapter: its problems (an error, or with `check` the first output that differs) and, with `check`, the ignored cells that changed."
    started = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    try:
        run = execute(nb, cwd)
    except CellExecutionError as e:
        return [f"{path.name}: a cell raised an error:\n{str(e)[-3000:]}"], []
    found = differences(nb, run, path.name) if check else []
    changed = ignored_changes(nb, run, path.name) if check else []
    if not check:
        found = machine_bound(run, path.name)
        if not found:
            keep(nb, run, path)
    print(f"{'FAIL' if found else 'ok  '} {path.name} ({time.monotonic() - started:.0f} s)", flush=True)
    return found, changed


def chapters(names: list[str]) -> list[Path]:
    paths = [Path(n).resolve() for n in names if n.endswith(".ipynb")]
    prefixes = tuple(n for n in names if not n.endswith(".ipynb"))
    if prefixes or not paths:
        paths += sorted(p for p in NBS.glob("[0-9]*.ipynb") if not prefixes or p.name.startswith(prefixes))
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        sys.exit(f"run_chapters: no such chapter: {', '.join(map(str, missing)) or ' '.join(names)}")
    return paths


def _job(args):
    return chapter(*args)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run the book's chapters; keep or check their outputs.")
    parser.add_argument("chapters", nargs="*", help="chapter name prefixes or .ipynb paths (default: every chapter)")
    parser.add_argument("--check", action="store_true", help="compare with the committed outputs and change nothing")
    parser.add_argument("--workers", type=int, default=2, help="chapters run at the same time (default: 2)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    paths = chapters(args.chapters)
    if not args.check:  # keeping outputs without the samples would replace the measurements on real faces
        unset = [v for v in SAMPLES if not Path(os.environ.get(v, "/nonexistent")).is_dir()]
        real = [p.name for p in paths if any("real-faces" in tags(c) for c in nbformat.read(p, as_version=4).cells)]
        if unset and real:
            sys.exit(
                f"run_chapters: {', '.join(real)} measure real faces: set {' and '.join(unset)} to the development "
                "samples (see the README) before keeping their outputs, or leave those chapters out"
            )
    jobs = [(p, args.check) for p in paths]
    if args.workers == 1 or len(jobs) == 1:
        results = [_job(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            results = list(pool.imap(_job, jobs))
    found = [e for problems, _ in results for e in problems]
    changed = [c for _, cells in results for c in cells]
    if changed:  # not a failure: such output depends on the machine; where the chapter was made, it means stale
        print(
            f"\nnote: {len(changed)} cell(s) tagged nbval-ignore-output now show other text than the committed output "
            "(not compared: it depends on the samples or a pipeline run). On a machine like the one that made them, "
            "refresh with `python scripts/run_chapters.py CHAPTER`:\n  " + "\n  ".join(changed),
            file=sys.stderr,
        )
    for problem in found:
        print(f"\n{problem}", file=sys.stderr)
    if found:
        print(f"\n{len(found)} of {len(paths)} chapter(s) failed", file=sys.stderr)
        return 1
    if not args.check:  # nbdev-clean of the same environment, activated or not
        clean = Path(sys.executable).with_name("nbdev-clean")
        subprocess.run([str(clean) if clean.exists() else "nbdev-clean"], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
