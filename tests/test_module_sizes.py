"""Modules that fit in a head: no module of ``src/`` over :data:`MAX_LINES` lines (split it by responsibility)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 300


def test_no_module_in_src_is_over_300_lines():
    sizes = {path: len(path.read_text().splitlines()) for path in sorted(SRC.rglob("*.py"))}
    assert len(sizes) > 50  # the walk found the package
    over = [f"{path.relative_to(SRC.parent)} ({lines})" for path, lines in sizes.items() if lines > MAX_LINES]
    assert not over, f"modules over {MAX_LINES} lines: {', '.join(over)}; split each by responsibility"
