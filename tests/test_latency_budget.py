"""A latency budget (``--budget latency=B``): one more entry of the one constraint, its expected value the latency
model's (cost/latency.py), reported each epoch and judged again on the purged model's measured latency."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from purged_runs import train_then_purge

from ctrlsparse.constraint_kinds import measured_value
from ctrlsparse.cost.latency import ExpectedLatency, latency_table
from ctrlsparse.errors import HParamError
from ctrlsparse.feasibility import assess, constraint_violations, describe_missed
from ctrlsparse.hparams import HParams
from ctrlsparse.problems.base import fixed_from
from ctrlsparse.problems.constrained import ConstrainedL0Problem
from ctrlsparse.problems.constraint_set import expected_latency_of
from ctrlsparse.training.setup import build_model


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTRLSPARSE_CACHE", str(tmp_path / "cache"))


def test_the_latency_entry_is_the_latency_models_share_at_the_training_batch():
    # latency=1: never below the model's least (the digits CNN's is machine-dependent: 0.82 at batch 16 here)
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="macs=0.4,latency=1", batch_size=16)
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
    assert violation[1].item() == pytest.approx(expected.item() - 1.0, rel=1e-6)
    tie = problem.constraint_set.tie_weights()
    assert tie is not None and torch.isfinite(tie).all()


def test_a_latency_budget_run_trains_and_is_judged_on_the_purged_models_latency(tmp_path):
    trained, summary = train_then_purge(
        tmp_path, arch="cnn", target_scope="none", budget="latency=1", epochs=4, batch_size=32
    )
    assert "latency" in trained["violations"] and trained["budgets"] == {"latency": 1.0}
    assert trained["latency_correction"] > 0  # measured at epochs 2 and 3 (cost/latency_calibration.py)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["cmp"]
    assert saved["latency_correction"] == trained["latency_correction"] and len(saved["latency_ratios"]) == 2
    with open(tmp_path / "run" / "metrics.csv") as rows:  # per epoch: 1 until the first measurement
        corrections = [float(row["latency_correction"]) for row in csv.DictReader(rows)]
    assert corrections[:2] == [1.0, 1.0] and corrections[-1] == pytest.approx(trained["latency_correction"])
    share = summary["least_latency_share_batch"]
    assert summary["latency_batch"] == 32 and measured_value("latency", summary) == pytest.approx(share)
    violations = constraint_violations(summary)
    assert violations["purged latency"] == pytest.approx(share - 1.0)  # judged on what the purge measured
    verdict = assess(summary, summary["feasibility_tolerance"])
    if abs(share - 1.0) > summary["feasibility_tolerance"]:
        assert verdict["feasible"] is False
        assert "purged latency" in describe_missed(summary | verdict)


def test_a_latency_budget_stated_at_batch_1_is_modelled_measured_and_judged_at_batch_1(tmp_path):
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="latency=1", batch_size=16, latency_batch=1)
    torch.manual_seed(0)
    problem = ConstrainedL0Problem(build_model(hparams, (1, 8, 8), 10), hparams, torch.zeros(1, 1, 8, 8))
    latency = problem.constraint_set.measure(expected_latency_of(1))
    assert latency.table.batch == 1  # the table of deployment one input at a time, not of the training batch
    p = problem.density.prob_active()
    assert problem.constraint_set.values(p)[0].item() == pytest.approx(latency.share(p).item(), rel=1e-6)
    trained, summary = train_then_purge(
        tmp_path, arch="cnn", target_scope="none", budget="latency=1", epochs=4, batch_size=32, latency_batch=1
    )
    assert summary["latency_batch"] == 1 and summary["latency_pct_batch"] == 1  # the purge's default: the budget's
    assert measured_value("latency", summary) == pytest.approx(summary["least_latency_share_b1"])


def test_a_latency_budget_is_judged_at_its_own_batch_whatever_batch_the_purge_is_asked_to_time(tmp_path):
    from ctrlsparse.training.purge_cli import purge_run

    train_then_purge(tmp_path, arch="cnn", target_scope="none", budget="latency=1", epochs=1, batch_size=32)
    sizes = purge_run(tmp_path / "run", latency_batch=8)  # before, latency_pct was the share at batch 8
    assert sizes["latency_batch"] == 8 and sizes["latency_pct_batch"] == 32
    assert sizes["latency_pct"] == pytest.approx(100 * sizes["least_latency_share_budget"])
    assert "least_latency_share_batch" in sizes and "least_latency_share_b1" in sizes
    purge_run(tmp_path / "run")  # at the budget's batch again: no third batch, none left from the last purge
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["latency_batch"] == 32 and not [key for key in summary if key.endswith("_budget")]


def test_latency_batch_states_a_latency_budgets_batch_and_nothing_else():
    for given in ({"budget": "macs=0.5", "latency_batch": 1}, {"budget": "latency=0.5", "latency_batch": -1}):
        with pytest.raises(HParamError, match="latency_batch"):
            HParams.resolve(arch="cnn", target_scope="none", **given)


def test_a_latency_budget_below_the_models_least_latency_is_refused_before_training():
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="latency=0.01", batch_size=16)
    model = build_model(hparams, (1, 8, 8), 10)
    least = r"latency=0.01 is below the least this model reaches, 0\.\d+ of the dense model's latency at batch 16 .*"
    with pytest.raises(HParamError, match=least + "or more"):
        ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))


def test_the_run_corrects_the_latency_model_by_the_purged_models_measured_share():
    from ctrlsparse.cost.latency_calibration import calibrate, calibration_epochs
    from ctrlsparse.layers import gated_layers

    assert calibration_epochs(150) == {75, 105, 128} and calibration_epochs(3) == set()
    assert calibration_epochs(fixed_from(HParams.resolve(epochs=150, fix_gates=0.2))) == {60, 84, 102}
    hparams = HParams.resolve(arch="cnn", target_scope="none", budget="latency=1", batch_size=16)
    torch.manual_seed(0)
    model = build_model(hparams, (1, 8, 8), 10)
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.uniform_(-3, 3)
    problem = ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))
    latency = problem.constraint_set.measure(expected_latency_of(16))
    p = problem.density.prob_active()
    before = float(latency.share(p).detach())
    correction = calibrate(latency, model, torch.zeros(1, 1, 8, 8), 16)
    assert correction > 0 and latency.correction == correction and latency.dense_form is not None
    assert latency.ratios == [correction]
    assert float(latency.share(p).detach()) == pytest.approx(before * correction, rel=1e-6)
    with torch.no_grad():  # a sparser pattern, measured again: the correction is the mean of the two ratios
        for _, layer in gated_layers(model):
            layer.log_alpha.sub_(2.0)
    second = calibrate(latency, model, torch.zeros(1, 1, 8, 8), 16)
    assert len(latency.ratios) == 2 and second == pytest.approx((latency.ratios[0] * latency.ratios[1]) ** 0.5)
    state = problem.state_dict()
    assert state["latency_ratios"] == latency.ratios
    again = ConstrainedL0Problem(model, hparams, torch.zeros(1, 1, 8, 8))
    again.load_state_dict(state)  # resumed with the correction, and what it is the mean of, in force
    assert again.latency_correction() == second
    assert again.constraint_set.latency_state()["latency_ratios"] == latency.ratios


def test_a_run_with_fixed_gates_measures_its_latency_while_its_gates_move():
    hparams = HParams.resolve(
        arch="cnn", target_scope="none", budget="latency=1", batch_size=16, epochs=10, fix_gates=0.5
    )
    torch.manual_seed(0)
    problem = ConstrainedL0Problem(build_model(hparams, (1, 8, 8), 10), hparams, torch.zeros(1, 1, 8, 8))
    latency = problem.constraint_set.measure(expected_latency_of(16))
    problem.before_epoch(7)  # 70% of all 10 epochs: the gates are fixed from epoch 5
    assert latency.ratios == []
    problem.before_epoch(4)  # 70% (and 85%) of the 5 epochs the gates move
    assert len(latency.ratios) == 1
