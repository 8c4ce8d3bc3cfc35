"""The layer contract holds: every import points to a module below it (import-linter, configured in pyproject.toml),
never to another module's private name, and the README's layer table and the book's chapters list the modules in
the contract's order, so no chapter's code uses a module a later chapter defines.

import-linter counts every import, at the top of a module or inside a function (a lazy import is still a
dependency).
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO

PACKAGE = REPO / "focusface"
GENERATED = {"_modidx"}


def contract_order(pyproject=REPO / "pyproject.toml") -> list[str]:
    "The modules of the layers contract, bottom up."
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    return list(reversed(next(c for c in contracts if c["id"] == "layers")["layers"]))


def readme_order(text: str) -> list[str]:
    "The modules of the README's layer table, bottom up, in the order listed."
    table = text[text.index("| layer | modules |") :]
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    rows = rows[: next((i for i, r in enumerate(rows) if not r.startswith("| ")), len(rows))]
    names = []
    for row in rows:
        cell = row.split("|")[2]
        while re.search(r"\([^()]*\)", cell):
            cell = re.sub(r"\([^()]*\)", "", cell)  # what each module holds, aside
        names += re.findall(r"`(\w+)`", cell)
    return names


def lint_imports(root) -> subprocess.CompletedProcess:
    "import-linter on the package under `root`, with `root`'s pyproject.toml."
    env = dict(os.environ, PYTHONPATH=str(root))  # this package first, before the installed one
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)


def test_every_import_follows_the_layer_contract():
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr


def test_the_contract_finds_a_wrong_edge(tmp_path):
    "A lazy import of a higher module, inside a function of a lower one, breaks the contract."
    shutil.copytree(PACKAGE, tmp_path / "focusface", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    errors = tmp_path / "focusface" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    from focusface.cli import main\n")
    out = lint_imports(tmp_path)
    assert out.returncode == 1 and "focusface.errors -> focusface.cli" in out.stdout, out.stdout[-3000:]


def test_the_readme_table_is_the_contract():
    order = contract_order()
    modules = {p.stem for p in PACKAGE.glob("*.py")} - GENERATED - {"__init__"}
    assert len(order) == len(set(order)) and set(order) == modules, sorted(modules ^ set(order))
    assert readme_order((REPO / "README.md").read_text()) == order


def private_imports(module: str, source: str) -> list[str]:
    "`module`'s imports of a private name of another focusface module."
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("focusface")):
            dep = (node.module or "").removeprefix("focusface").lstrip(".").split(".")[0]
            found += [
                f"{module} imports {dep}.{a.name}, a private name"
                for a in node.names
                if dep and dep != module and a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_no_module_imports_a_private_name_of_another():
    assert private_imports("files", "from .template import _secret\ndef f():\n    from focusface.cli import _x\n") == [
        "files imports template._secret, a private name",
        "files imports cli._x, a private name",
    ]
    assert private_imports("files", "from .files import _mine\nfrom .errors import shorten") == []
    found = [e for p in PACKAGE.glob("*.py") if p.stem not in GENERATED for e in private_imports(p.stem, p.read_text())]
    assert found == []


def test_the_chapters_come_in_the_layer_order():
    chapters = sorted((REPO / "nbs").glob("[0-9]*.ipynb"))
    exported = []
    for chapter in chapters:
        text = "".join(
            "".join(c["source"]) for c in json.loads(chapter.read_text())["cells"] if c["cell_type"] == "code"
        )
        found = re.search(r"#\|\s*default_exp\s+(\w+)", text)
        assert found, f"{chapter.name} exports no module"
        exported.append(found.group(1))
    assert exported[-1] == "__init__", "the last chapter is the top-level API (focusface/__init__.py)"
    assert exported[:-1] == contract_order(), list(zip([c.stem for c in chapters], exported))


def test_import_focusface_needs_neither_torch_nor_opencv():
    code = "import focusface, sys; print('torch' in sys.modules, 'cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "False",
        "False",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "load_checkpoint",
        "create_backbone",
        "list_backbones",
        "mask_dataset",
        "verify",
        "embed_dataset",
        "FocusFaceError",
        "evaluate_model",
    ],
)
def test_the_top_level_api_resolves_on_first_use(name):
    code = f"import focusface; print(focusface.{name}.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("focusface."), out.stderr


def readme_python(text: str) -> list[str]:
    "The README's Python examples."
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def module_paths(code: str) -> list[str]:
    "The imports of `code` that name a focusface module instead of the top-level API."
    return re.findall(r"from focusface[.\w]* import|import focusface\.\w+", code)


def test_the_readme_examples_use_the_top_level_api():
    "A user reads `focusface.load_checkpoint`, never a module path; each name an example uses exists."
    import focusface

    examples = readme_python((REPO / "README.md").read_text())
    assert examples, "the README has Python examples"
    for code in examples:
        assert not module_paths(code), code
        for name in re.findall(r"\bfocusface\.(\w+)", code):
            assert name in focusface.__all__, f"focusface.{name} in the README is not a top-level name"


def test_the_example_check_finds_a_module_path():
    assert module_paths(readme_python("```python\nfrom focusface.checkpoints import load_checkpoint\n```")[0])
    assert module_paths("import focusface.inference") and not module_paths("import focusface\nfocusface.verify(a, b)")
