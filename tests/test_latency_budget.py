"""A latency budget (``--budget latency=B``): one more entry of the one constraint, its expected value the latency
model's (cost/latency.py), reported each epoch and judged again on the purged model's measured latency."""

from __future__ import annotations

import pytest
import torch
from purged_runs import train_then_purge

from ctrlsparse.constraint_kinds import measured_value
from ctrlsparse.cost.latency import ExpectedLatency, latency_table
from ctrlsparse.feasibility import assess, constraint_violations, describe_missed
from ctrlsparse.hparams import HParams
from ctrlsparse.problems.constrained import ConstrainedL0Problem
from ctrlsparse.training.setup import build_model


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRLSPARSE_CACHE", str(tmp_path / "cache"))


def test_the_latency_entry_is_the_latency_models_share_at_the_training_batch():
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="macs=0.4,latency=0.5", batch_size=16)
    torch.manual_seed(0)
    model = build_model(hparams, (1, 8, 8), 10)
    problem = ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))
    assert problem.constraint_names == ["macs", "latency"]
    p = problem.density.prob_active()
    table = latency_table(model, torch.zeros(1, 1, 8, 8), 16, torch.device("cpu"))  # the cached one, at batch 16
    expected = ExpectedLatency(model, torch.zeros(1, 1, 8, 8), table).share(p)
    values = problem.constraint_set.values(p)
    assert values[1].item() == pytest.approx(expected.item(), rel=1e-6)  # float32 gates vs the float64 check
    violation = problem.violation(p)
    assert violation[1].item() == pytest.approx(expected.item() - 0.5, rel=1e-6)
    tie = problem.constraint_set.tie_weights()
    assert tie is not None and torch.isfinite(tie).all()


def test_a_latency_budget_run_trains_and_is_judged_on_the_purged_models_latency(tmp_path):
    trained, summary = train_then_purge(
        tmp_path, arch="cnn", target_scope="none", budget="latency=0.6", epochs=2, batch_size=32
    )
    assert "latency" in trained["violations"] and trained["budgets"] == {"latency": 0.6}
    share = summary["least_latency_share_batch"]
    assert summary["latency_batch"] == 32 and measured_value("latency", summary) == pytest.approx(share)
    violations = constraint_violations(summary)
    assert violations["purged latency"] == pytest.approx(share - 0.6)  # judged on what the purge measured
    verdict = assess(summary, summary["feasibility_tolerance"])
    if abs(share - 0.6) > summary["feasibility_tolerance"]:
        assert verdict["feasible"] is False
        assert "purged latency" in describe_missed(summary | verdict)
