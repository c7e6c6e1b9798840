"""The dense baseline: the same architecture without gates, trained on the plain objective."""

from __future__ import annotations

from ctrlsparse.problems.base import L0Problem


class DenseProblem(L0Problem):
    """The plain objective; its spec has no gates (``MethodSpec.gates``), so none are sampled or counted."""
