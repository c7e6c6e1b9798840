"""The run's final numbers, as ``summary.json`` (the file every later step reads)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctrlsparse.constraint_kinds import COST_KEYS
from ctrlsparse.data.base import chance_accuracy
from ctrlsparse.feasibility import assess
from ctrlsparse.plumbing.provenance import slurm_job, versions

if TYPE_CHECKING:
    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.checkpoint import Progress
    from ctrlsparse.training.setup import Run

LAST_KEYS = ("expected_density", "eval_density", "test_accuracy", "test_loss", "train_loss")  # from the last row


def _prefixed(row: dict[str, Any], prefix: str) -> dict[str, float]:
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}


def final_numbers(hp: HParams, identity: dict[str, Any], last: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The summary's schema up to the per-layer numbers: the run's identity and setting, then its last metrics
    row (``last``, as ``metrics.csv`` holds it) after ``epochs`` epochs. Torch-free: the tests' synthetic runs
    (tests/synthetic.py) write their summaries with it too."""
    return {
        "run_key": identity["run_key"],
        "hparams_hash": identity["hparams_hash"],
        "dataset": hp.dataset,
        "arch": hp.arch,
        "method": hp.method,
        "variant": hp.variant,
        "target_scope": hp.target_scope,
        "constraint": hp.constraint,
        "target": list(hp.target),
        "budgets": hp.budgets,  # {kind: share of the dense model}; {} without a budget (the budget's one form)
        **{key: last[key] for key in COST_KEYS if key in last},  # runs with a cost model (evaluate.cost_metrics)
        "penalty": hp.penalty,
        "level": hp.level,
        "seed": hp.seed,
        "epochs": epochs,
        **{key: last[key] for key in LAST_KEYS},
        "layer_expected_density": _prefixed(last, "expected_density/"),
        "layer_eval_density": _prefixed(last, "eval_density/"),
        "multipliers": _prefixed(last, "multiplier/"),
        "violations": _prefixed(last, "violation/"),
    }


def layer_kinds(hp: HParams, names: list[str], kinds: list[str]) -> dict[str, Any]:
    """``layer_kinds`` (gate group -> heads / width / hidden) where the layer-wise targets are given per kind,
    so that the feasibility check can expand them; nothing otherwise (other summaries keep their keys)."""
    if hp.target_scope != "layer" or len(hp.target) in (1, len(names)):
        return {}
    return {"layer_kinds": dict(zip(names, kinds, strict=True))}


def latency_correction(problem: Any) -> dict[str, float]:
    """A latency budget run's last measured / predicted share (cost/latency_calibration.py); nothing otherwise."""
    correction = problem.latency_correction()
    return {} if correction is None else {"latency_correction": correction}


def build_summary(run: Run, progress: Progress, identity: dict[str, Any]) -> dict[str, Any]:
    hp, last = run.hparams, progress.rows[-1]
    summary = {
        **final_numbers(hp, identity, last, progress.epoch),
        "sparsifiable_params": int(run.problem.density.total),
        "total_params": sum(p.numel() for name, p in run.model.named_parameters() if not name.endswith("log_alpha")),
        "chance_accuracy": chance_accuracy(run.data.test_labels),  # a constant answer's; feasibility's floor
        "steps": run.rates.steps,  # the step budget; the gates' and multipliers' rates below follow from it
        "gates_lr": run.rates.gates_lr,
        "dual_lr": run.rates.dual_lr,
        **({"skipped_images": len(run.data.skipped)} if hasattr(run.data, "skipped") else {}),  # image folders
        **layer_kinds(hp, run.problem.density.names, run.problem.density.kinds),
        **latency_correction(run.problem),
        "wall_seconds": progress.wall_seconds,
        "device": str(run.device),
        "slurm": slurm_job(),  # the job that finished training ({} outside SLURM); resumed runs name the last one
        "versions": versions(),
    }
    return summary | assess(summary, hp.feasibility_tolerance)  # feasible, max_violation, eval_density_gap, ...
