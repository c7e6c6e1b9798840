"""The readable name of a run's setting: its variant and its level (the ``{variant}~{level}`` of its key)."""

from __future__ import annotations

from ctrlsparse.hparams.defaults import STARTS_FROM_A_RUN
from ctrlsparse.hparams.text import format_number

# Methods whose level is a density target (the others: a penalty, or nothing).
TARGETED_METHODS = ("constrained", "magnitude", "search")
# Methods whose run trains runs of another method instead of a model of its own (``search``: the penalized method
# bisected over log10 lambda until a run lands on the target, :mod:`ctrlsparse.problems.search`); such a run has
# no checkpoint and no model to purge.
SEARCH_METHODS = ("search",)


class SettingName:
    """``variant`` and ``level`` of an :class:`~ctrlsparse.hparams.HParams` (a mixin over its fields)."""

    method: str
    target_scope: str
    target: tuple[float, ...]
    budget: str
    penalty: float
    pretrained: str
    tag: str

    @property
    def variant(self) -> str:
        """``constrained-model``, ``constrained-layer``, ``penalized-model``, ``penalized-layer``, ``search-model``,
        ``search-layer`` or ``dense``, then ``+budget`` beside a density target (``constrained-model+macs=0.3``; a
        budget alone is the variant ``constrained-budget``, its level the budget), then ``+tag`` when the run has a
        tag (e.g. ``constrained-layer+gates_lr=0.1``)."""
        variant = "dense" if self.method == "dense" else f"{self.method}-{self.target_scope}"
        if self.target_scope == "none":
            variant = f"{self.method}-budget"
        elif self.budget:
            variant = f"{variant}+{self.budget}"
        if self.pretrained and self.method not in STARTS_FROM_A_RUN:
            variant = f"{variant}+warm"  # a warm start: from the weights of the dense run ``pretrained``
        return f"{variant}+{self.tag}" if self.tag else variant

    @property
    def level(self) -> str:
        """The setting's level as written in paths: the target(s), the penalty, or 1 for dense."""
        if self.target_scope == "none":
            return self.budget
        if self.method in TARGETED_METHODS:
            return ",".join(format_number(t) for t in self.target)
        if self.method == "penalized":
            return format_number(self.penalty)
        return "1"
