"""Did a run meet its density target(s)? A pure function of the run's ``summary.json`` and a tolerance.

- A constrained run's constraints are the entries its kinds state (:func:`ctrlsparse.constraint_kinds.stated`):
  one (``model``) or one per gated layer (``--target-scope layer``), whose violation is expected density −
  target, the number the multipliers see; one per budget kind (expected share − budget) and, once
  ``ctrlsparse purge`` has measured the purged model (the kind's ``measured`` key), one more per kind,
  ``purged <kind>``: the purged model's share − budget, so that a budget is judged on what the user receives.
- ``le`` (the paper's ``≤``) is met when every violation is at most the tolerance (ending sparser is allowed);
  ``eq`` when every violation lies within ± the tolerance. ``max_violation`` is the violation farthest from
  that (signed: under ``eq`` a negative value is a layer left below its target).
- ``eval_density_gap`` = eval density − expected density (the model's, and per gated layer). The eval gates are
  deterministic: a gate the training left between open and closed (fractional, P(active) in (0, 1)) counts
  fully at eval and nothing purges it, so a gap above :data:`FRACTIONAL_GAP` flags ``fractional_gates``.

Runs that are not constrained get ``None`` for the target fields; runs without gates (dense) for all of them.
Torch-free: the report recomputes the fields of summaries written before they existed.
"""

from __future__ import annotations

from typing import Any

from ctrlsparse.constraint_kinds import BUDGET_KINDS, measured_value, miss_message, purged_name, stated
from ctrlsparse.density_targets import GATE_GROUP_PREFIX
from ctrlsparse.hparams import HParams, format_number
from ctrlsparse.registry import method_spec

DEFAULT_TOLERANCE: float = HParams.feasibility_tolerance  # 0.01
FRACTIONAL_GAP = 0.02  # eval density this far above the expected one flags fractional gates
# What to change when a target is missed (the CLI's last line). The step budget and the gate and dual dynamics
# decide whether the gates close in time (issue 14).
ADVICE = (
    "give the gates and multipliers more travel: --reference-steps above its value (their rates x that / steps), "
    "or --gates-lr/--dual-lr; or train longer (--epochs)"
)
CHANCE_MARGIN = 0.02  # a run within this of a constant answer's accuracy has learnt nothing worth keeping
FIELDS = (
    "feasible",
    "collapsed_layers",
    "at_chance",
    "feasibility_tolerance",
    "max_violation",
    "eval_density_gap",
    "layer_eval_density_gap",
    "fractional_gates",
)


def constraint_targets(summary: dict[str, Any]) -> dict[str, float]:
    """Target of each constraint of a constrained run: ``{"model": ε}`` or one per gated layer, then each budget
    (the expected share the multipliers see) and, once the run is purged, each budget again as ``purged <kind>``
    (the share of the model the user receives); ``{}`` for methods without constraints."""
    return {name: target for name, (_, target) in _entries(summary).items()}


def _entries(summary: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Each constraint entry of a summary's run -> (its kind, its target), stated as the run stated them
    (:func:`~ctrlsparse.constraint_kinds.stated`), then the purged entries of the kinds the purge has measured."""
    spec = method_spec(summary.get("method"))
    if spec is None or not spec.constraints:
        return {}
    layers = list(summary.get("layer_expected_density") or {})
    layer_kinds = [summary.get("layer_kinds", {}).get(layer, "") for layer in layers]  # targets by kind (groups)
    scope = summary.get("target_scope") or "model"
    target, budgets = list(summary.get("target") or []), summary.get("budgets") or {}
    entries = stated(scope, target, budgets, layers, summary.get("arch", ""), layer_kinds)
    found = {name: (kind, value) for kind, named in entries.items() for name, value in named.items()}
    for kind in BUDGET_KINDS:
        if kind in entries and measured_value(kind, summary) is not None:
            found[purged_name(kind)] = (kind, entries[kind][kind])
    return found


def constraint_violations(summary: dict[str, Any]) -> dict[str, float]:
    """Final value − target of each constraint (the summary's ``violations``, else recomputed; a purged budget:
    the purged model's share of the dense one − the budget)."""
    targets = constraint_targets(summary)
    purged = {purged_name(kind): kind for kind in BUDGET_KINDS}
    if summary.get("violations"):
        found = {name: summary["violations"][name] for name in targets if name in summary["violations"]}
    else:
        expected = {"model": summary.get("expected_density"), **(summary.get("layer_expected_density") or {})}
        expected |= {kind: summary.get(f"expected_{kind}") for kind in BUDGET_KINDS}
        found = {name: expected[name] - target for name, target in targets.items() if name not in purged}
    for name, target in targets.items():
        if name in purged:
            found[name] = measured_value(purged[name], summary) - target
    return found


def excess(violation: float, constraint: str) -> float:
    """How far one violation is from met: itself under ``le``, its magnitude under ``eq``."""
    return abs(violation) if constraint == "eq" else violation


def worst_violation(violations: dict[str, float], constraint: str) -> float:
    """The (signed) violation farthest from met; the per-epoch ``max_violation`` of ``metrics.csv``."""
    return max(violations.values(), key=lambda value: excess(value, constraint))


def assess(summary: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The :data:`FIELDS` of a summary (see the module docstring)."""
    layer_expected = summary.get("layer_expected_density") or {}
    layer_eval = summary.get("layer_eval_density") or {}
    gated = bool(layer_expected)
    gap = summary["eval_density"] - summary["expected_density"] if gated else None
    violations = constraint_violations(summary)
    constraint = summary.get("constraint", "le")
    worst = worst_violation(violations, constraint) if violations else None
    collapsed, chance = collapsed_layers(summary), at_chance(summary)
    met = worst is not None and excess(worst, constraint) <= tolerance and not collapsed and not chance
    return {
        "feasible": None if worst is None else met,
        "collapsed_layers": collapsed if worst is not None else None,
        "at_chance": chance if worst is not None else None,
        "feasibility_tolerance": None if worst is None else tolerance,
        "max_violation": worst,
        "eval_density_gap": gap,
        "layer_eval_density_gap": {name: layer_eval[name] - value for name, value in layer_expected.items()}
        if gated
        else None,
        "fractional_gates": None if gap is None else gap > FRACTIONAL_GAP,
    }


def collapsed_layers(summary: dict[str, Any]) -> list[str]:
    """The gated layers whose every gate is closed at eval: a budget met by cutting the network. Gate groups
    (``gates.*``) are not counted: a group closed whole can be a residual branch (a block's heads, its inner
    channels) that the stream passes by; a group that does cut the network leaves it at chance (``at_chance``)."""
    return [
        name
        for name, value in (summary.get("layer_eval_density") or {}).items()
        if value == 0 and not name.startswith(GATE_GROUP_PREFIX)
    ]


def at_chance(summary: dict[str, Any]) -> bool | None:
    """Whether the test accuracy is within :data:`CHANCE_MARGIN` of always answering the most frequent class
    (None for summaries that do not record ``chance_accuracy``)."""
    chance = summary.get("chance_accuracy")
    if chance is None or summary.get("test_accuracy") is None:
        return None
    return summary["test_accuracy"] <= chance + CHANCE_MARGIN


def missed_constraints(summary: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(constraint, final expected density, target) of each missed constraint, worst first."""
    tolerance = summary.get("feasibility_tolerance") or DEFAULT_TOLERANCE
    constraint = summary.get("constraint", "le")
    violations, targets = constraint_violations(summary), constraint_targets(summary)
    missed = [name for name, value in violations.items() if excess(value, constraint) > tolerance]
    missed.sort(key=lambda name: -excess(violations[name], constraint))
    return [(name, targets[name] + violations[name], targets[name]) for name in missed]


def describe_missed(summary: dict[str, Any]) -> str:
    """What is missed, as text: a cut network first, then the missed constraints, worst first:
    ``conv2 has no open gate, fc1 at 0.785 > 0.3, fc2 at 0.412 > 0.3``."""
    parts = [f"{name} has no open gate (the network is cut there)" for name in collapsed_layers(summary)]
    if at_chance(summary):
        parts.append(
            f"test accuracy {summary['test_accuracy']:.3f} is at chance (always answering the most frequent class: "
            f"{summary['chance_accuracy']:.3f})"
        )
    kinds = {name: kind for name, (kind, _) in _entries(summary).items()}
    missed = missed_constraints(summary)
    return ", ".join(parts + [miss_message(kinds[n], n, value, format_number(t)) for n, value, t in missed])


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """What the train CLI says after its result line: fractional gates, then a missed target (last), the last
    line ending with what to change; ``[]`` for a run that met its target(s) with polarised gates."""
    lines = []
    if summary.get("fractional_gates"):
        lines.append(
            f"fractional gates: eval density {summary['eval_density']:.3f} is {summary['eval_density_gap']:.3f} "
            f"above the expected {summary['expected_density']:.3f} (more than {format_number(FRACTIONAL_GAP)}): "
            "gates left between open and closed count fully at eval and purging keeps them"
        )
    if summary.get("feasible") is False:
        tolerance = format_number(summary.get("feasibility_tolerance") or DEFAULT_TOLERANCE)
        lines.append(
            f"target missed: {describe_missed(summary)} (tolerance {tolerance}, {summary.get('epochs')} epochs)"
        )
    if lines:
        lines[-1] += f"; {ADVICE}"
    return lines


def as_tags(summary: dict[str, Any]) -> dict[str, str]:
    """MLflow tags: ``feasible`` and ``fractional_gates`` (true/false) where the run has them, and
    ``target_missed`` (e.g. ``fc1 at 0.785 > 0.3``) for a run that missed (search ``tags.feasible = 'false'``)."""
    tags = {key: str(summary[key]).lower() for key in ("feasible", "fractional_gates") if summary.get(key) is not None}
    if summary.get("feasible") is False:
        tags["target_missed"] = describe_missed(summary)
    return tags


def as_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """MLflow final metrics besides the summary's plain numbers: ``feasible`` and ``fractional_gates`` as 1/0,
    and ``eval_density_gap/<layer>``."""
    numbers = {key: float(summary[key]) for key in ("feasible", "fractional_gates") if summary.get(key) is not None}
    gaps = summary.get("layer_eval_density_gap") or {}
    return numbers | {f"eval_density_gap/{layer}": gap for layer, gap in gaps.items()}
