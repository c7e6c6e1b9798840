"""The dense baseline: the same architecture without gates, trained on the plain objective."""

from __future__ import annotations

from ctrlsparse.problems.base import L0Problem


class DenseProblem(L0Problem):
    uses_gates = False
