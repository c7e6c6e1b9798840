"""Per-epoch measurements: test loss and accuracy, densities, multipliers and violations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctrlsparse.constraint_kinds import COST_KINDS
from ctrlsparse.feasibility import worst_violation
from ctrlsparse.problems.base import L0Problem
from ctrlsparse.registry import METHODS
from ctrlsparse.training.norm_stats import recalibrate_norms, training_inputs
from ctrlsparse.training.setup import Run


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """One metrics row (without the epoch counters); eval-mode gates are the deterministic medians (the
    BatchNorm statistics first re-estimated under them with ``--recalibrate-norms``)."""
    if run.hparams.recalibrate_norms:
        batches = training_inputs(run.data, run.hparams.batch_size, run.hparams.seed, run.hparams.recalibrate_norms)
        recalibrate_norms(run.model, run.evaluator, batches)
    run.model.eval()
    loss = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device)
    count = 0
    for inputs, labels in run.data.test_batches(run.hparams.eval_batch_size):
        logits = run.evaluator(inputs)
        loss += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        count += len(labels)
    row = {"test_loss": float(loss) / count, "test_accuracy": float(correct) / count}
    row.update(density_metrics(run))
    return row


@torch.no_grad()
def density_metrics(run: Run) -> dict[str, float]:
    density, problem = run.problem.density, run.problem
    if not len(density):
        return {"expected_density": 1.0, "eval_density": 1.0}
    row = {"expected_density": float(density.model_expected()), "eval_density": float(density.model_eval())}
    layer_expected, layer_eval = density.layer_expected().tolist(), density.layer_eval().tolist()
    row.update({f"expected_density/{n}": v for n, v in zip(density.names, layer_expected, strict=True)})
    row.update({f"eval_density/{n}": v for n, v in zip(density.names, layer_eval, strict=True)})
    multipliers, violations = problem.multiplier_values(), problem.violations()
    if multipliers is not None and violations is not None:
        names = problem.constraint_names
        row.update({f"multiplier/{n}": v for n, v in zip(names, multipliers.tolist(), strict=True)})
        row.update({f"violation/{n}": v for n, v in zip(names, violations.tolist(), strict=True)})
        if METHODS.spec(run.hparams.method).constraints:
            by_name = dict(zip(names, violations.tolist(), strict=True))
            row["max_violation"] = worst_violation(by_name, run.hparams.constraint)
    row["eval_density_gap"] = row["eval_density"] - row["expected_density"]
    correction = problem.latency_correction()
    if correction is not None:  # a latency budget: the factor its model runs under (1 until measured)
        row["latency_correction"] = correction
    return row | cost_metrics(problem)


@torch.no_grad()
def cost_metrics(problem: L0Problem) -> dict[str, float]:
    """Runs with a cost model (budgets): each cost kind's expected share of the dense model, then its eval share
    (the purged model's, :mod:`ctrlsparse.cost`)."""
    cost = problem.cost
    if cost is None:
        return {}
    expected = cost.shares()
    evaluated = cost.exact_shares(torch.cat([layer.eval_open() for layer in cost.layers]))  # the eval model
    return {f"expected_{kind}": float(expected[kind]) for kind in COST_KINDS} | {
        f"eval_{kind}": evaluated[kind] for kind in COST_KINDS
    }
