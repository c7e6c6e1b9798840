"""What a constrained run can hold its model to: one registry entry per kind of constraint.

A kind is stated by the run's density target(s) (``model``: one for the whole model; ``layer``: one per gated
layer; the ``--target-scope`` of the same name) or by its ``--budget`` (``macs``, ``params``: a share of the dense
model's). Its entry says

- how its targets are stated: :func:`stated`, the one place that turns a run's targets and budgets into the
  entries of its one cooper constraint (the problem builds it from them; the feasibility verdict reads them back
  from a summary);
- its expected value from the gates' P(active): ``expected``, a ``"module:function"`` resolved by
  ``CONSTRAINT_KINDS[name]``, called as ``function(constraint_set, name, p)``
  (:class:`ctrlsparse.problems.constraint_set.ConstraintSet`);
- its value on the purged model: ``measured``, the summary key where ``ctrlsparse purge`` records it;
- its one-line miss message: ``message``.

Adding a kind (a latency budget) is an entry here and its expected-value function. Torch-free: the hyperparameter
checks, run keys and the feasibility verdict read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctrlsparse.density_targets import layer_targets
from ctrlsparse.registry import Registry

_SET = "ctrlsparse.problems.constraint_set"  # where the registered kinds' expected-value functions live


@dataclass(frozen=True)
class ConstraintKind:
    """One kind of constraint entry (see the module docstring)."""

    expected: str  # "module:function": its expected value(s) from the gates' P(active), differentiable
    budget: bool = True  # stated by --budget <name>=<share of the dense model>; else by --target (density)
    # A quantity of the cost model (ctrlsparse.cost.ExpectedCost): its entries fold into the cost model's one
    # quadratic form, and a run with a cost model reports its expected and eval shares (expected_<name>, eval_<name>).
    cost: bool = False
    # The summary key of its value on the purged model, in percent of the dense model (written by ctrlsparse purge):
    # once there, the entry is judged again on it, as "purged <name>". "": judged on the expected value alone.
    measured: str = ""
    message: str = "{name} at {value:.3f} {relation} {target}"  # a missed entry (relation: > or <)


_KIND_SPECS = {
    "model": ConstraintKind(f"{_SET}:model_density", budget=False),
    "layer": ConstraintKind(f"{_SET}:layer_density", budget=False),
    "macs": ConstraintKind(f"{_SET}:cost_share", cost=True, measured="macs_pct"),
    "params": ConstraintKind(f"{_SET}:cost_share", cost=True, measured="params_pct"),
    # the expected latency at the batch it is stated at (latency_batch, else the training batch), from the latency
    # table measured on the CPU (ctrlsparse.cost.latency); judged on the purged model's latency that ctrlsparse purge
    # measures at the same batch
    "latency": ConstraintKind(f"{_SET}:latency_share", measured="latency_pct"),
}
CONSTRAINT_KINDS = Registry(
    "constraint kind", {name: spec.expected for name, spec in _KIND_SPECS.items()}, specs=_KIND_SPECS
)
DENSITY_KINDS = tuple(CONSTRAINT_KINDS.select(lambda spec: not spec.budget))  # named by their target scope
BUDGET_KINDS = tuple(CONSTRAINT_KINDS.select(lambda spec: spec.budget))  # in the order a budget is written
COST_KINDS = tuple(CONSTRAINT_KINDS.select(lambda spec: spec.cost))
# The per-epoch metrics (and summary keys) of a run with a cost model: expected shares, then eval shares.
COST_KEYS = tuple(f"{stage}_{kind}" for stage in ("expected", "eval") for kind in COST_KINDS)


def stated(
    scope: str,
    target: Sequence[float],
    budgets: Mapping[str, float],
    layer_names: Sequence[str],
    arch: str,
    layer_kinds: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """A run's constraint entries by kind, ``{kind: {entry name: target}}``, in the order of its one cooper
    constraint: the density entries of ``scope`` (``model``: one, named ``model``; ``layer``: one per gated layer,
    :func:`~ctrlsparse.density_targets.layer_targets`, which raises the one-line error when the targets do not fit
    the layers; ``none``: none), then one entry per budget kind, named by its kind, in ``budgets`` order."""
    entries: dict[str, dict[str, float]] = {}
    if scope == "model":
        entries["model"] = {"model": target[0]}
    elif scope == "layer":
        expanded = layer_targets(target, layer_names, arch, kinds=layer_kinds)
        entries["layer"] = dict(zip(layer_names, expanded, strict=True))
    for kind, value in budgets.items():
        entries[CONSTRAINT_KINDS.check(kind)] = {kind: value}
    return entries


def purged_name(kind: str) -> str:
    """The name of a kind's entry judged on the purged model."""
    return f"purged {kind}"


def measured_value(kind: str, summary: Mapping[str, Any]) -> float | None:
    """The purged model's value of ``kind`` as a share of the dense model's (None before the purge)."""
    key = CONSTRAINT_KINDS.spec(kind).measured
    return summary[key] / 100.0 if key and summary.get(key) is not None else None


def miss_message(kind: str, name: str, value: float, target: str) -> str:
    """The kind's one-line miss message of entry ``name`` at ``value`` (``target`` as the run writes it)."""
    relation = ">" if value > float(target) else "<"
    return CONSTRAINT_KINDS.spec(kind).message.format(name=name, value=value, relation=relation, target=target)
