"""The two algebras the channel analysis runs in: booleans (the purge) and probability expressions (the cost).

Every channel vector is built from *gate literals*: ``lit(ids)`` holds, per channel, the index of the gate that
decides it in the concatenation of all the model's gates, or the constants ``one`` / ``zero`` (ids ``n`` and
``n + 1``). The analysis combines them with five operations: ``either`` / ``both`` (elementwise or / and),
``gather`` (channel i of the result is channel ``index[i]``), ``cat`` and ``spread`` (channel j of the result is
the or of the channels ``i`` with ``index[i] == j``).

:class:`Booleans` evaluates them on the eval gates' open / closed mask. :class:`Expressions` builds an
:class:`Expr` whose value, given every gate's P(active), is the probability that the channel is there, under the
assumption that distinct gates are independent (they are: each is its own hard-concrete variable). The same gate
reached twice is one event, not two: ``either`` and ``both`` of literals that name the same gate per channel are
that literal, and a ``spread`` of copies of one gate is that gate, so a channel shared by a residual stream or a
depthwise conv's input and output counts P, not 1 - (1 - P)^2 or P^2. With every P exactly 0 or 1 an expression
is the boolean rule, whatever its shape: that is why the expected cost equals the purged model's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


class Booleans:
    """Channel masks from the gates' open (eval gate > 0) mask ``opened`` (all gates concatenated)."""

    def __init__(self, opened: Tensor):
        self.extended = torch.cat([opened.bool().cpu(), torch.tensor([True, False])])
        self.one, self.zero = len(opened), len(opened) + 1

    def const(self, width: int, value: bool) -> Tensor:
        return torch.full((width,), value, dtype=torch.bool)

    def lit(self, ids: Tensor) -> Tensor:
        return self.extended[ids]

    def gather(self, a: Tensor, index: Tensor) -> Tensor:
        return a[index]

    def cat(self, parts: list[Tensor]) -> Tensor:
        return torch.cat(parts)

    def either(self, parts: list[Tensor]) -> Tensor:
        return functools.reduce(torch.logical_or, parts)

    def both(self, parts: list[Tensor]) -> Tensor:
        return functools.reduce(torch.logical_and, parts)

    def spread(self, a: Tensor, index: Tensor, width: int) -> Tensor:
        out = torch.zeros(width, dtype=torch.bool)
        out[index[a]] = True
        return out


@dataclass(frozen=True, eq=False)
class Expr:
    """A channel vector of probabilities: ``lit`` (``ids``), ``or`` / ``and`` / ``cat`` of ``parts``, ``gather``
    (``ids`` = index) or ``spread`` (``ids`` = index) of ``parts[0]``."""

    op: str
    width: int
    ids: Tensor | None = None
    parts: tuple[Expr, ...] = ()

    @functools.cached_property
    def key(self) -> tuple:
        """Equal for structurally equal expressions (the analysis builds equal ones as new objects)."""
        data = None if self.ids is None else self.ids.numpy().tobytes()
        return (self.op, self.width, data, tuple(part.key for part in self.parts))


class Expressions:
    """Builds :class:`Expr` with the simplifications of the module docstring; ``n_gates`` gates in all."""

    def __init__(self, n_gates: int):
        self.one, self.zero = n_gates, n_gates + 1

    def const(self, width: int, value: bool) -> Expr:
        return self.lit(torch.full((width,), self.one if value else self.zero, dtype=torch.long))

    def lit(self, ids: Tensor) -> Expr:
        return Expr("lit", len(ids), ids.long())

    def is_const(self, a: Expr, value: bool) -> bool:
        return a.op == "lit" and bool((a.ids == (self.one if value else self.zero)).all())

    def gather(self, a: Expr, index: Tensor) -> Expr:
        if a.op == "lit":
            return self.lit(a.ids[index])
        if len(index) == a.width and torch.equal(index, torch.arange(a.width)):
            return a
        if a.op == "gather":
            return self.gather(a.parts[0], a.ids[index])
        return Expr("gather", len(index), index, (a,))

    def cat(self, parts: list[Expr]) -> Expr:
        if all(part.op == "lit" for part in parts):
            return self.lit(torch.cat([part.ids for part in parts]))
        return parts[0] if len(parts) == 1 else Expr("cat", sum(p.width for p in parts), parts=tuple(parts))

    def either(self, parts: list[Expr]) -> Expr:
        return self._combine("or", parts, absorbing=self.one, neutral=self.zero)

    def both(self, parts: list[Expr]) -> Expr:
        return self._combine("and", parts, absorbing=self.zero, neutral=self.one)

    def _combine(self, op: str, parts: list[Expr], absorbing: int, neutral: int) -> Expr:
        flat: list[Expr] = []
        for part in parts:
            flat += list(part.parts) if part.op == op else [part]
        literals = [part for part in flat if part.op == "lit"]
        others = list({part.key: part for part in flat if part.op != "lit"}.values())
        if literals:
            merged = self._merge([part.ids for part in literals], absorbing, neutral)
            literals = [merged] if merged is not None else list({p.key: p for p in literals}.values())
        live = [p for p in literals if not bool((p.ids == neutral).all())] + others
        if any(p.op == "lit" and bool((p.ids == absorbing).all()) for p in live):
            return self.lit(torch.full((parts[0].width,), absorbing, dtype=torch.long))
        if not live:
            return self.lit(torch.full((parts[0].width,), neutral, dtype=torch.long))
        return live[0] if len(live) == 1 else Expr(op, live[0].width, parts=tuple(live))

    def _merge(self, rows: list[Tensor], absorbing: int, neutral: int) -> Expr | None:
        """One literal for the elementwise or / and of literal rows, if each channel names one gate (else None)."""
        stack = torch.stack(rows)
        big = self.zero + 1
        absorbed = (stack == absorbing).any(0)
        skip = stack == neutral
        low = torch.where(skip, big, stack).amin(0)
        high = torch.where(skip, -1, stack).amax(0)
        if not bool((absorbed | (high < 0) | (low == high)).all()):
            return None
        return self.lit(torch.where(absorbed, absorbing, torch.where(high < 0, neutral, low)))

    def spread(self, a: Expr, index: Tensor, width: int) -> Expr:
        if a.op == "lit":
            ids, big = a.ids, self.zero + 1
            present = ids != self.zero
            low = torch.full((width,), big).scatter_reduce(0, index, torch.where(present, ids, big), "amin")
            high = torch.full((width,), -1).scatter_reduce(0, index, torch.where(present, ids, -1), "amax")
            has_one = torch.zeros(width, dtype=torch.bool).index_put_((index[ids == self.one],), torch.tensor(True))
            if bool((has_one | (high < 0) | (low == high)).all()):
                return self.lit(torch.where(has_one, self.one, torch.where(high < 0, self.zero, low)))
        return Expr("spread", width, index, (a,))


def vector(expr: Expr, p: Tensor, memo: dict[int, Tensor]) -> Tensor:
    """The probabilities of ``expr`` given ``p``: every gate's P(active), then 1 and 0 (ids n and n + 1)."""
    if id(expr) in memo:
        return memo[id(expr)]
    if expr.op == "lit":
        value = p[expr.ids.to(p.device)]
    elif expr.op == "or":
        value = 1.0 - torch.stack([1.0 - vector(part, p, memo) for part in expr.parts]).prod(0)
    elif expr.op == "and":
        value = torch.stack([vector(part, p, memo) for part in expr.parts]).prod(0)
    elif expr.op == "gather":
        value = vector(expr.parts[0], p, memo)[expr.ids.to(p.device)]
    elif expr.op == "cat":
        value = torch.cat([vector(part, p, memo) for part in expr.parts])
    else:  # spread: 1 - prod over the channels mapped to each output of (1 - p)
        closed = 1.0 - vector(expr.parts[0], p, memo)
        index = expr.ids.to(p.device)
        value = 1.0 - closed.new_ones(expr.width).scatter_reduce(0, index, closed, "prod")
    memo[id(expr)] = value
    return value
