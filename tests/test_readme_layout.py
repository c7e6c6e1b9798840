"""The README's layout section matches the tree: every entry it names exists, and it names every top-level
module and subpackage of ``src/ctrlsparse``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_entries() -> list[Path]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries, parents = [], {}
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for name in names.split(", "):
            base = parents.get(depth - 1, ROOT) if depth else ROOT
            entries.append(base / name.rstrip("/"))
            if name.endswith("/"):
                parents[depth] = base / name.rstrip("/")
    return entries


def test_every_entry_of_the_layout_exists():
    entries = layout_entries()
    assert len(entries) > 20
    missing = [str(entry.relative_to(ROOT)) for entry in entries if not entry.exists()]
    assert not missing, f"README.md's layout names what the tree lacks: {', '.join(missing)}"


def test_the_layout_names_every_part_of_the_library():
    package = ROOT / "src" / "ctrlsparse"
    named = set(layout_entries())
    parts = [
        p for p in package.iterdir() if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())
    ]
    unnamed = sorted(p.name for p in parts if p not in named)
    assert not unnamed, f"README.md's layout does not name src/ctrlsparse/{', '.join(unnamed)}; add a line each"
