#!/usr/bin/env python3
"""Fail when a notebook's Markdown would render wrongly: the book must read as a book.

Every notebook under nbs/ must have exactly one level-1 heading (its title, in the first Markdown cell), and no
other Markdown line may start with '# ' or be a lone '#' outside a code fence: those are the marks of text stored
with a comment prefix, which renders as a stack of headings. Usage: scripts/check_notebooks.py [NOTEBOOK ...]
"""

import json
import re
import sys
from pathlib import Path


def problems(path: Path) -> list[str]:
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, ValueError, KeyError) as e:
        return [f"{path}: not a readable notebook ({e})"]
    found, titles = [], []
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "markdown":
            continue
        fenced = False
        for line in "".join(cell.get("source", "")).splitlines():
            if re.match(r"\s*(```|~~~)", line):
                fenced = not fenced
                continue
            if fenced:
                continue
            if line.rstrip() == "#":
                found.append(f"{path}: cell {number}: a line holding only '#' (a comment-prefixed paragraph break?)")
            elif line.startswith("# "):
                titles.append((number, line))
    if not titles:
        found.append(f"{path}: no title: the first Markdown cell must start with '# Title'")
    first_md = next((i for i, c in enumerate(cells, start=1) if c.get("cell_type") == "markdown"), None)
    for number, line in titles[1:] if titles and titles[0][0] == first_md else titles:
        found.append(
            f"{path}: cell {number}: {line[:60]!r} is a second level-1 heading; write prose as paragraphs "
            "and sections as '## '"
        )
    return found


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(p) for p in argv] or sorted((root / "nbs").rglob("*.ipynb"))
    paths = [p for p in paths if ".ipynb_checkpoints" not in p.parts]
    errors = [e for p in paths for e in problems(p)]
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(
            f"{len(errors)} Markdown problem(s) in {len({e.split(':')[0] for e in errors})} notebook(s)",
            file=sys.stderr,
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
