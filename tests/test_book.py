"""The notebooks are the book: they render, the repository stands alone, the code is laid out by ruff, the CLI explains itself."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

CHECK = [sys.executable, str(REPO / "scripts" / "check_notebooks.py")]


def _notebook(path, *markdown):
    cells = [dict(cell_type="markdown", id=f"c{i}", metadata={}, source=text) for i, text in enumerate(markdown)]
    path.write_text(json.dumps(dict(cells=cells, metadata={}, nbformat=4, nbformat_minor=5)))
    return path


def test_every_notebook_renders():
    out = subprocess.run(CHECK, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_check_fails_on_comment_prefixed_markdown(tmp_path):
    """The defect the check exists for: text stored with '# ' on every line renders as a stack of headings."""
    old = _notebook(
        tmp_path / "old.ipynb",
        "# # Losses\n#\n# > ArcFace and CosFace",
        "# ## Margin heads\n#\n# A head holds one centre.",
    )
    out = subprocess.run(CHECK + [str(old)], capture_output=True, text=True)
    assert out.returncode == 1 and "second level-1 heading" in out.stderr and "only '#'" in out.stderr
    good = _notebook(
        tmp_path / "good.ipynb",
        "# Losses\n\n> ArcFace",
        "## Margin heads\n\nA head holds one centre.\n\n```\n# a comment in a fence is fine\n```",
    )
    assert subprocess.run(CHECK + [str(good)], capture_output=True).returncode == 0


def test_ruff_holds_the_layout_and_the_lint(tmp_path):
    """`ruff format` and `ruff check` (configured in pyproject.toml) pass on the tree, and fail on a packed line."""
    ruff = [sys.executable, "-m", "ruff"]
    for check in (["format", "--check"], ["check"]):
        out = subprocess.run(ruff + check + ["."], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    packed = tmp_path / "packed.py"
    packed.write_text("def f(x):\n    if x: return 1; return 2\n")
    settings = ["--config", str(REPO / "pyproject.toml")]
    assert subprocess.run(ruff + ["check", *settings, str(packed)], capture_output=True, text=True).returncode == 1
    assert subprocess.run(ruff + ["format", "--check", *settings, str(packed)], capture_output=True).returncode == 1


def test_the_repository_refers_to_nothing_outside_it():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    offenders = [
        f
        for f in files
        if not f.startswith("tests/fixtures/")
        and (REPO / f).is_file()
        and any(
            s in (REPO / f).read_text(errors="ignore") for s in ("FORMATS.md", "DESIGN.md", "STYLE.md", "shared/data")
        )
        and f not in ("scripts/test", "tests/test_book.py")
    ]  # scripts/test holds the LFW sample's one default
    assert not offenders, offenders


def test_every_command_line_argument_has_help():
    from focusface.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"focusface {name}: {action.option_strings or action.dest} has no help line"


@pytest.mark.parametrize("module", ["focusface.model", "focusface.losses", "focusface.backbones", "focusface.metrics"])
def test_modules_that_need_no_images_do_not_import_opencv(module):
    code = f"import sys, {module}; print('cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


CHAPTERS = sorted((REPO / "nbs").glob("[0-9]*.ipynb"))
RUN_CHAPTERS = [sys.executable, str(REPO / "scripts" / "run_chapters.py")]


def _outputs_text(path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join(
        "".join(o.get("text", "")) + "".join("".join(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
        for c in cells
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_shows_its_results(chapter):
    """The book carries its outputs (scripts/run_chapters.py keeps them), and none of them shows a temporary path."""
    text = _outputs_text(chapter)
    assert text.strip(), f"{chapter.name} has no output: run `python scripts/run_chapters.py {chapter.stem}` and commit"
    assert "/tmp/" not in text and "Traceback" not in text, (
        f"{chapter.name}: an output shows a temporary path or a traceback"
    )


def test_an_output_edited_by_hand_fails_the_book_check(tmp_path):
    """scripts/test runs the chapters with --check: a committed output that the code no longer prints fails it."""
    import nbformat

    nb = nbformat.read(REPO / "nbs" / "16_losses.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "stream" for o in c.outputs))
    stream = next(o for o in cell.outputs if o.output_type == "stream")
    stream.text = stream.text.replace("0.878", "0.879", 1)  # one digit of the ArcFace table
    assert "0.879" in stream.text
    edited = tmp_path / "16_losses.ipynb"
    nbformat.write(nb, edited)
    out = subprocess.run(RUN_CHAPTERS + ["--check", "--workers", "1", str(edited)], capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert (
        "16_losses.ipynb: cell" in out.stderr
        and "-ArcFace     [0.879" in out.stderr
        and "+ArcFace     [0.878" in out.stderr
    ), out.stderr


def test_an_ignored_output_that_changed_is_named_not_failed(tmp_path):
    """A cell tagged nbval-ignore-output is not compared, but --check names it when its text changed (it may be stale)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    ignored = new_code_cell(
        "print(2 + 2)",
        metadata={"tags": ["nbval-ignore-output"]},
        outputs=[new_output("stream", name="stdout", text="5\n")],
    )  # stale: it prints 4 now
    compared = new_code_cell("print('same')", outputs=[new_output("stream", name="stdout", text="same\n")])
    path = tmp_path / "99_toy.ipynb"

    def check():
        kernel = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
        nbformat.write(new_notebook(cells=[compared, ignored], metadata=kernel), path)
        return subprocess.run(RUN_CHAPTERS + ["--check", "--workers", "1", str(path)], capture_output=True, text=True)

    out = check()
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        "note: 1 cell(s) tagged nbval-ignore-output" in out.stderr
        and "99_toy.ipynb cell 1 ('print(2 + 2)')" in out.stderr
    ), out.stderr
    ignored.outputs[0].text = "4\n"  # refreshed: nothing to say
    out = check()
    assert out.returncode == 0 and "note:" not in out.stderr, out.stdout + out.stderr


def test_the_readme_quotes_the_mask_fidelity_chapter():
    """The README's mask-fidelity table repeats numbers of nbs/24_maskfidelity.ipynb's outputs: each one must be there."""
    import re

    readme = (REPO / "README.md").read_text()
    start = readme.index("| masks | coverage of the crop")
    block = readme[start : readme.index("The `bold` style stays available", start)]
    rows = [line.split("|", 2)[2] for line in block.splitlines() if line.startswith("  | ") and "---" not in line][1:]
    quoted = {float(n) for text in rows + block.splitlines()[-2:] for n in re.findall(r"\d+\.\d+|\d+", text)}
    shown = {float(n) for n in re.findall(r"\d+\.\d+|\d+", _outputs_text(REPO / "nbs" / "24_maskfidelity.ipynb"))}
    assert len(quoted) > 15 and quoted <= shown, sorted(quoted - shown)


def _literal_defaults(source: str) -> list[str]:
    "The `add_argument(..., default=<literal>)` calls of `source`: a default typed into the parser, not read."
    import ast

    return [
        f"line {node.lineno}: {ast.unparse(node)[:80]}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "") == "add_argument"
        and any(k.arg == "default" and isinstance(k.value, ast.Constant) for k in node.keywords)
    ]


def test_the_command_line_takes_its_defaults_from_the_library():
    "Every default of `focusface` options is read from the signature of the function the command calls."
    assert not _literal_defaults((REPO / "focusface" / "cli.py").read_text())
    assert _literal_defaults('p.add_argument("--seed", type=int, default=0)')  # the check can fail
    import inspect

    from focusface.cli import build_parser
    from focusface.maskdata import mask_dataset

    mask = next(a for a in build_parser("mask")._actions if a.dest == "command").choices["mask"]
    assert {a.dest: a.default for a in mask._actions}["workers"] == inspect.signature(mask_dataset).parameters[
        "workers"
    ].default
