"""The readable name of a run's setting: its variant and its level (the ``{variant}~{level}`` of its key)."""

from __future__ import annotations

from ctrlsparse.hparams.text import format_number
from ctrlsparse.registry import METHODS


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
        spec = METHODS.spec(self.method)
        variant = f"{self.method}-{self.target_scope}" if spec.gates else self.method
        if self.target_scope == "none":
            variant = f"{self.method}-budget"
        elif self.budget:
            variant = f"{variant}+{self.budget}"
        if self.pretrained and not spec.starts_from:
            variant = f"{variant}+warm"  # a warm start: from the weights of the dense run ``pretrained``
        return f"{variant}+{self.tag}" if self.tag else variant

    @property
    def level(self) -> str:
        """The setting's level as written in paths: the value of the method's level field (the target(s), the
        penalty; :attr:`MethodSpec.level <ctrlsparse.registry.MethodSpec.level>`), 1 without one (dense)."""
        if self.target_scope == "none":
            return self.budget
        field = METHODS.spec(self.method).level
        if not field:
            return "1"
        value = getattr(self, field)
        return ",".join(format_number(v) for v in value) if isinstance(value, tuple) else format_number(value)
