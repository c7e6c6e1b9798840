"""Per-channel probability expressions (constants, a layer's gates, or / and / repeat / any of them) and the
cost terms built of them; :func:`vector` evaluates one expression on the gates' P(active)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Expr:
    """A per-channel probability vector: ``one``/``zero`` (constant), ``gates`` (layer ``arg``'s P(active)),
    ``or`` / ``and`` of ``parts``, ``repeat`` (each entry ``arg`` times) or ``any`` (1 - prod(1 - p) over runs of
    ``arg`` entries)."""

    op: str
    width: int
    arg: int = 0
    parts: tuple[Expr, ...] = ()


def one(width: int) -> Expr:
    return Expr("one", width)


def zero(width: int) -> Expr:
    return Expr("zero", width)


def either(parts: list[Expr]) -> Expr:
    """Non-zero / needed where any part is: 1 - prod(1 - p) (constants folded)."""
    live = [part for part in parts if part.op != "zero"]
    if any(part.op == "one" for part in live):
        return one(live[0].width)
    unique = list({id(part): part for part in live}.values())  # the same vector twice is one event
    if not unique:
        return zero(parts[0].width)
    return unique[0] if len(unique) == 1 else Expr("or", unique[0].width, parts=tuple(unique))


def both(a: Expr, b: Expr) -> Expr:
    if a.op == "zero" or b.op == "zero":
        return zero(a.width)
    if a.op == "one":
        return b
    return a if b.op == "one" else Expr("and", a.width, parts=(a, b))


def repeat(a: Expr, area: int) -> Expr:
    return Expr(a.op, a.width * area) if a.op in ("one", "zero") else Expr("repeat", a.width * area, area, (a,))


def any_of(a: Expr, area: int) -> Expr:
    return Expr(a.op, a.width // area) if a.op in ("one", "zero") else Expr("any", a.width // area, area, (a,))


@dataclass(frozen=True)
class Term:
    """``coefficient * sum(a) * sum(b)`` (``b`` None: ``coefficient * sum(a)``), counted as MACs or params."""

    quantity: str
    coefficient: float
    a: Expr
    b: Expr | None = None


def signature(expr: Expr) -> tuple:
    """A hashable key equal for structurally equal expressions (the trace builds equal ones as new objects)."""
    return (expr.op, expr.width, expr.arg, tuple(signature(part) for part in expr.parts))


def vector(expr: Expr, parts: list[Tensor] | tuple[Tensor, ...], memo: dict[int, Tensor]) -> Tensor:
    if id(expr) in memo:
        return memo[id(expr)]
    if expr.op == "gates":
        value = parts[expr.arg]
    elif expr.op == "or":
        closed = [1.0 - vector(part, parts, memo) for part in expr.parts]
        value = 1.0 - torch.stack(closed).prod(0)
    elif expr.op == "and":
        value = vector(expr.parts[0], parts, memo) * vector(expr.parts[1], parts, memo)
    elif expr.op == "repeat":
        value = vector(expr.parts[0], parts, memo).repeat_interleave(expr.arg)
    elif expr.op == "any":
        value = 1.0 - (1.0 - vector(expr.parts[0], parts, memo)).view(-1, expr.arg).prod(1)
    else:  # one / zero inside an or/and that was not folded
        value = (parts[0] if parts else torch.zeros(1)).new_full((expr.width,), 1.0 if expr.op == "one" else 0.0)
    memo[id(expr)] = value
    return value
