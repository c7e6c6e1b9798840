"""A run that misses its target says so: the feasibility fields, the train CLI's last line and exit code, MLflow."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from ctrlsparse import feasibility, tracking
from ctrlsparse.plumbing import paths
from ctrlsparse.tracking.mirror import read_metrics


def summary(**given):
    """A summary.json as the train command writes it (the fields assess reads), digits MLP by default."""
    base = {
        "method": "constrained",
        "arch": "mlp",
        "target_scope": "model",
        "constraint": "le",
        "target": [0.33],
        "epochs": 200,
        "expected_density": 0.785,
        "eval_density": 0.999,
        "layer_expected_density": {"fc1": 0.8, "fc2": 0.7, "fc3": 0.9},
        "layer_eval_density": {"fc1": 1.0, "fc2": 0.998, "fc3": 1.0},
    }
    return base | given


def test_a_model_wise_miss_and_its_fractional_gates():
    fields = feasibility.assess(summary())
    assert fields["feasible"] is False and fields["feasibility_tolerance"] == 0.01
    assert fields["max_violation"] == pytest.approx(0.785 - 0.33)
    assert fields["eval_density_gap"] == pytest.approx(0.214) and fields["fractional_gates"] is True
    assert fields["layer_eval_density_gap"] == pytest.approx({"fc1": 0.2, "fc2": 0.298, "fc3": 0.1})
    lines = feasibility.verdict_lines(summary() | fields)
    assert lines[0].startswith("fractional gates: eval density 0.999 is 0.214 above the expected 0.785")
    assert lines[-1].startswith("target missed: model at 0.785 > 0.33 (tolerance 0.01, 200 epochs); give the gates")
    assert "--epochs" in lines[-1] and "--gates-lr" in lines[-1]


@pytest.mark.parametrize(
    ("constraint", "expected", "feasible", "max_violation"),
    [
        ("le", 0.335, True, 0.005),  # within the tolerance
        ("le", 0.2, True, -0.13),  # sparser than asked: allowed by <=
        ("eq", 0.2, False, -0.13),  # ... but not by ==
        ("eq", 0.325, True, -0.005),
    ],
)
def test_le_allows_ending_sparser_eq_does_not(constraint, expected, feasible, max_violation):
    given = summary(constraint=constraint, expected_density=expected, eval_density=expected)
    fields = feasibility.assess(given)
    assert fields["feasible"] is feasible and fields["max_violation"] == pytest.approx(max_violation)
    assert fields["fractional_gates"] is False
    assert feasibility.assess(given, tolerance=0.2)["feasible"] is True


def test_layer_wise_names_every_missed_layer_worst_first():
    given = summary(
        arch="lenet5",
        target_scope="layer",
        target=[0.5, 0.3, 0.7, 0.1],
        layer_expected_density={"conv1": 0.5, "conv2": 0.35, "fc1": 0.7, "fc2": 0.4},
        layer_eval_density={"conv1": 0.5, "conv2": 0.35, "fc1": 0.7, "fc2": 0.4},
        expected_density=0.6,
        eval_density=0.6,
    )
    given |= feasibility.assess(given)
    assert given["feasible"] is False and given["max_violation"] == pytest.approx(0.3)
    assert feasibility.describe_missed(given) == "fc2 at 0.400 > 0.1, conv2 at 0.350 > 0.3"
    assert feasibility.as_tags(given) == {
        "feasible": "false",
        "fractional_gates": "false",
        "target_missed": "fc2 at 0.400 > 0.1, conv2 at 0.350 > 0.3",
    }
    assert feasibility.as_metrics(given)["feasible"] == 0.0


def test_the_recorded_violations_are_the_ones_judged():
    given = summary(target_scope="layer", target=[0.3], violations={"fc1": 0.0, "fc2": 0.05, "fc3": 0.0})
    assert feasibility.assess(given)["max_violation"] == 0.05  # not recomputed from the rounded densities


def test_runs_without_a_target_or_without_gates_get_none():
    penalized = feasibility.assess(summary(method="penalized"))
    assert penalized["feasible"] is None and penalized["max_violation"] is None
    assert penalized["feasibility_tolerance"] is None and penalized["fractional_gates"] is True
    dense = feasibility.assess(summary(method="dense", layer_expected_density={}, layer_eval_density={}))
    assert set(dense.values()) == {None}
    assert feasibility.verdict_lines(summary(method="dense") | dense) == []
    assert feasibility.as_tags(dense) == {} and feasibility.as_metrics(dense) == {}


def ctrlsparse(*args):
    return subprocess.run([sys.executable, "-m", "ctrlsparse", *args], capture_output=True, text=True)


MISS = ["train", "--arch", "mlp", "--target", "0.1", "--epochs", "2", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def missed_run(tmp_path_factory):
    """Digits MLP asked for density 0.1 in 2 epochs (24 steps): the gates cannot close that far."""
    out = tmp_path_factory.mktemp("miss") / "run"
    result = ctrlsparse(*MISS, "--out", str(out))
    return out, result


def test_a_missed_run_says_so_and_still_exits_0(missed_run):
    out, result = missed_run
    assert result.returncode == 0, result.stderr
    written = json.loads(paths.summary_path(out).read_text())
    assert written["feasible"] is False
    assert written["fractional_gates"] is (written["eval_density_gap"] > 0.02)
    assert written["max_violation"] == pytest.approx(written["expected_density"] - 0.1)
    assert written["eval_density_gap"] == pytest.approx(written["eval_density"] - written["expected_density"])
    assert set(written["layer_eval_density_gap"]) == {"fc1", "fc2", "fc3"}
    lines = result.stderr.strip().splitlines()
    expected = written["expected_density"]
    assert lines[-1].startswith(f"ctrlsparse train: target missed: model at {expected:.3f} > 0.1 (tolerance 0.01")
    assert "--epochs" in lines[-1] and "--reference-steps" in lines[-1]
    assert lines[-2].startswith("ctrlsparse train: fractional gates:") is written["fractional_gates"]
    rows = read_metrics(paths.metrics_path(out))
    assert len(rows) == 2 and rows[-1]["max_violation"] == pytest.approx(written["max_violation"])
    assert rows[-1]["eval_density_gap"] == pytest.approx(written["eval_density_gap"])


def test_require_feasible_exits_4_and_keeps_the_files(missed_run):
    out, _ = missed_run
    result = ctrlsparse(*MISS, "--out", str(out), "--require-feasible")  # the finished run, judged again
    assert result.returncode == 4, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ctrlsparse train: target missed: model at") and "exit 4 (--require-feasible)" in last
    assert json.loads(paths.summary_path(out).read_text())["feasible"] is False
    assert paths.metrics_path(out).exists() and paths.checkpoint_path(out).exists()
    assert "4 finished but a target missed" in " ".join(ctrlsparse("train", "--help").stdout.split())


def test_a_run_that_meets_an_easy_target_is_feasible(tmp_path):
    out = tmp_path / "run"
    easy = ["train", "--arch", "mlp", "--target", "1", "--constraint", "le", "--epochs", "1", "--threads", "1"]
    result = ctrlsparse(*easy, "--quiet", "--require-feasible", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = json.loads(paths.summary_path(out).read_text())
    assert written["feasible"] is True and written["max_violation"] <= 0.01
    assert "target missed" not in result.stderr


def test_mlflow_gets_feasibility_tags_and_metrics(missed_run, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, _ = missed_run
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.init_store(uri, "test")
    run_id = tracking.mirror_run(out, tracking_uri=uri, experiment="test")
    run = MlflowClient(uri).get_run(run_id)
    written = json.loads(paths.summary_path(out).read_text())
    assert run.data.tags["feasible"] == "false"
    assert run.data.tags["fractional_gates"] == str(written["fractional_gates"]).lower()
    assert run.data.tags["target_missed"] == f"model at {written['expected_density']:.3f} > 0.1"
    assert run.data.metrics["feasible"] == 0.0 and run.data.metrics["fractional_gates"] == float(
        written["fractional_gates"]
    )
    assert run.data.metrics["max_violation"] == pytest.approx(written["max_violation"])
    assert math.isclose(run.data.metrics["eval_density_gap/fc1"], written["layer_eval_density_gap"]["fc1"])
    assert [m.step for m in MlflowClient(uri).get_metric_history(run_id, "max_violation")] == [1, 2]
    assert run.data.params["feasibility_tolerance"] == "0.01"
