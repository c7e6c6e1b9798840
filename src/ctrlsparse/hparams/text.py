"""How hyperparameter values are written in run paths, flags and tables."""

from __future__ import annotations


def format_number(value: float) -> str:
    """Shortest round-tripping text of a number, for paths: 0.5, 0.001, 1e-05, 1."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text
