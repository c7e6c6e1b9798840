"""How hyperparameter values are written in run paths, flags and tables, and read back from JSON / YAML."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def format_number(value: float) -> str:
    """Shortest round-tripping text of a number, for paths: 0.5, 0.001, 1e-05, 1."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def coerce(cls: type, key: str, value: Any) -> Any:
    """A value of field ``key`` of the dataclass ``cls`` as read from JSON/YAML: lists become tuples, numbers are
    cast to the field's type."""
    kind = {f.name: f.type for f in fields(cls)}[key]
    if kind.startswith("tuple"):
        items = value if isinstance(value, list | tuple) else [value]
        cast = float if "float" in kind else int
        return tuple(cast(item) for item in items)
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
