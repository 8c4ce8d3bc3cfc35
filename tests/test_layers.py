"""The README's layer table is true: computed from the source, every import points to a module listed before it.

The graph counts every import, at the top of a module or inside a function (a lazy import is still a dependency),
and the book's chapters come in the same order, so no chapter's code uses a module a later chapter defines.
"""
import ast
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = REPO / "focusface"
GENERATED = {"_modidx"}


def readme_order(text: str) -> list[str]:
    "The modules of the README's layer table, bottom up, in the order listed."
    table = text[text.index("| layer | modules |"):]
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    rows = rows[:next((i for i, r in enumerate(rows) if not r.startswith("| ")), len(rows))]
    names = []
    for row in rows:
        cell = row.split("|")[2]
        while re.search(r"\([^()]*\)", cell): cell = re.sub(r"\([^()]*\)", "", cell)  # what each module holds, aside
        names += re.findall(r"`(\w+)`", cell)
    return names


def imports_of(source: str) -> set[tuple[str, str]]:
    "(module, name) for every focusface import in `source`; name '' for a plain module import."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: found |= {(node.module.split(".")[0], a.name) for a in node.names}
            elif node.level == 1: found |= {("", a.name) for a in node.names}  # from . import x: the package itself
            elif node.module and node.module.split(".")[0] == "focusface":
                parts = node.module.split(".")
                found |= {(parts[1] if len(parts) > 1 else "", a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "focusface": found.add((parts[1] if len(parts) > 1 else "", ""))
    return found


def violations(graph: dict, order: list[str]) -> list[str]:
    "Edges the layer order does not allow: to a module listed later (or not at all), or to another module's private name."
    position = {m: i for i, m in enumerate(order)}
    bad = []
    for module, deps in sorted(graph.items()):
        for dep, name in sorted(deps):
            if dep in ("", module): continue  # the package (its version) and the module itself
            if dep not in position: bad.append(f"{module} imports {dep}, which the layer table does not list")
            elif position[dep] >= position.get(module, -1): bad.append(f"{module} imports {dep}, listed after it")
            if name.startswith("_") and not name.startswith("__"): bad.append(f"{module} imports {dep}.{name}, a private name")
    return bad


def source_graph() -> dict:
    return {p.stem: imports_of(p.read_text()) for p in PACKAGE.glob("*.py") if p.stem not in GENERATED | {"__init__"}}


def test_the_check_finds_a_wrong_edge():
    order = ["errors", "template", "files"]
    assert violations({"files": {("errors", "FocusFaceError")}, "template": {("errors", "")}}, order) == []
    assert violations({"errors": {("files", "atomic_dir")}}, order) == ["errors imports files, listed after it"]
    assert violations({"files": {("template", "_secret")}}, order) == ["files imports template._secret, a private name"]
    assert violations({"files": {("nowhere", "x")}}, order) == ["files imports nowhere, which the layer table does not list"]
    lazy = "def f():\n    from focusface.files import atomic_dir\n    import focusface.cli\n"
    assert imports_of(lazy) == {("files", "atomic_dir"), ("cli", "")}


def test_the_readme_lists_every_module_once():
    order = readme_order((REPO / "README.md").read_text())
    modules = {p.stem for p in PACKAGE.glob("*.py")} - GENERATED - {"__init__"}
    assert len(order) == len(set(order)), [m for m in order if order.count(m) > 1]
    assert set(order) == modules, (sorted(modules - set(order)), sorted(set(order) - modules))


def test_every_import_follows_the_layer_table():
    order = readme_order((REPO / "README.md").read_text())
    assert violations(source_graph(), order) == []


def test_the_chapters_come_in_the_layer_order():
    chapters = sorted((REPO / "nbs").glob("[0-9]*.ipynb"))
    exported = []
    for chapter in chapters:
        text = "".join("".join(c["source"]) for c in json.loads(chapter.read_text())["cells"] if c["cell_type"] == "code")
        found = re.search(r"#\|\s*default_exp\s+(\w+)", text)
        assert found, f"{chapter.name} exports no module"
        exported.append(found.group(1))
    assert exported[-1] == "__init__", "the last chapter is the top-level API (focusface/__init__.py)"
    assert exported[:-1] == readme_order((REPO / "README.md").read_text()), list(zip([c.stem for c in chapters], exported))


def test_import_focusface_needs_neither_torch_nor_opencv():
    code = "import focusface, sys; print('torch' in sys.modules, 'cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", ["load_checkpoint", "create_backbone", "list_backbones", "mask_dataset", "verify",
                                  "embed_dataset", "FocusFaceError", "evaluate_model"])
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
