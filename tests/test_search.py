"""The lambda search (method search): the bisection on closed-form stand-ins of density(lambda) (its exact steps,
the tolerance, the iteration limit, a target outside the interval), its checks, and its steps as runs of their
own (the keys a penalized grid trains, reused when finished, resumed, waited for while another process trains)."""

from __future__ import annotations

import json
import math

import pytest

from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.problems.search import PenaltySearch, penalty_at
from ctrlsparse.training import search as driver


def falling(at_low: float = 0.8, at_high: float = 0.2):
    """A stand-in for the final density of a penalized run: linear in log10 lambda, ``at_low`` at lambda 0.001
    and ``at_high`` at lambda 1 (a heavier penalty, a sparser model)."""
    return lambda penalty: at_low + (at_high - at_low) * (math.log10(penalty) + 3) / 3


def test_the_bisection_walks_the_midpoints_and_stops_within_the_tolerance():
    # 0.8 - 0.2 (x + 3) = 0.43 at x = -1.15: ends, -1.5 (0.5), -0.75 (0.35), -1.125 (0.425: within 0.01)
    outcome = PenaltySearch(0.43, -3.0, 0.0, 6, 0.01).run(falling())
    assert [step.log10_penalty for step in outcome.steps] == [-3.0, 0.0, -1.5, -0.75, -1.125]
    assert [step.penalty for step in outcome.steps] == [0.001, 1.0, 0.03162, 0.1778, 0.07499]  # 4 digits
    assert outcome.converged and outcome.bracketed and outcome.chosen == 4
    assert abs(outcome.steps[-1].density - 0.43) <= 0.01 and outcome.errors[-1] == outcome.steps[-1].density - 0.43


def test_the_bisection_stops_at_its_iteration_limit_with_the_closest_run():
    search = PenaltySearch(0.43, -3.0, 0.0, 6, 1e-6)  # a tolerance no run meets
    outcome = search.run(falling())
    xs = [step.log10_penalty for step in outcome.steps]
    assert len(outcome.steps) == 2 + 6 and not outcome.converged
    assert xs[2:] == [-1.5, -0.75, -1.125, -1.3125, -1.21875, -1.171875]  # each halves the bracket round -1.15
    errors = [abs(error) for error in outcome.errors]
    assert outcome.chosen == errors.index(min(errors)) == 7
    assert len(PenaltySearch(0.43, -3.0, 0.0, 0, 1e-6).run(falling()).steps) == 2  # no midpoint: the two ends


def test_a_target_outside_the_interval_or_at_an_end_takes_one_or_two_runs():
    above = PenaltySearch(0.9, -3.0, 0.0, 6, 0.01).run(falling())  # even lambda 0.001 ends sparser than 0.9
    assert len(above.steps) == 2 and not above.bracketed and not above.converged and above.chosen == 0
    at_end = PenaltySearch(0.795, -3.0, 0.0, 6, 0.01).run(falling())
    assert len(at_end.steps) == 1 and at_end.converged


@pytest.mark.parametrize("target", [0.21, 0.3, 0.43, 0.5, 0.61, 0.79])
def test_every_lambda_a_search_visits_is_one_of_its_candidates(target):
    search = PenaltySearch(target, -3.0, 0.0, 6, 1e-6)
    assert {step.penalty for step in search.run(falling()).steps} <= set(search.candidates())
    assert len(search.candidates()) == 2 + 2**6 - 1 and penalty_at(-1.5) in search.candidates()


def test_a_step_is_the_run_a_penalized_grid_point_trains():
    search = HParams.resolve(method="search", target_scope="layer", target=(0.3,), epochs=7, search_iterations=3)
    step = PenaltySearch.step(search, 0.001)
    assert step == HParams.resolve(method="penalized", target_scope="layer", penalty=0.001, epochs=7)
    assert run_key(step).startswith("digits/mlp/penalized-layer~0.001/")
    assert run_key(search).startswith("digits/mlp/search-layer~0.3/")


@pytest.mark.parametrize(
    "given, key, message",
    [
        ({"method": "search", "target_scope": "layer", "target": (0.5, 0.3)}, "target", "give one target"),
        ({"method": "search", "search_range": (0.0, -3.0)}, "search_range", "low < high"),
        ({"method": "search", "search_iterations": -1}, "search_iterations", ">= 0"),
        ({"method": "penalized", "search_iterations": 3}, "search_iterations", "method search only"),
    ],
)
def test_bad_search_settings_name_their_field(given, key, message):
    with pytest.raises(HParamError, match=message) as error:
        HParams.resolve(**given)
    assert error.value.key == key


def test_a_search_trains_its_steps_as_runs_reuses_the_finished_and_resumes_the_unfinished(tmp_path):
    trained: list[str] = []

    def counting(step: HParams, out) -> int:
        trained.append(run_key(step))
        return driver.train_in_process(step, out)

    hparams = HParams.resolve(method="search", target=(0.5,), epochs=2, search_iterations=1)
    summary = driver.search(hparams, tmp_path / "search", tmp_path / "runs", counting)
    steps = summary["search"]["steps"]
    assert summary["runs"] == len(steps) == len(trained) and [s["run_key"] for s in steps] == trained
    assert summary["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in steps))
    for step in steps:  # each a finished penalized run under the runs root, at its key
        assert (
            json.loads(paths.summary_path(tmp_path / "runs" / step["run_key"]).read_text())["penalty"]
            == step["penalty"]
        )
    chosen = steps[summary["search"]["chosen"]]
    assert summary["expected_density"] == chosen["expected_density"] and summary["penalty"] == chosen["penalty"]
    assert summary["feasible"] == (abs(summary["expected_density"] - 0.5) <= 0.01)
    assert summary["run_key"] == run_key(hparams) and paths.metrics_path(tmp_path / "search").exists()

    trained.clear()  # again: every step is found finished, nothing trains, the same result
    assert driver.search(hparams, tmp_path / "search", tmp_path / "runs", counting)["search"] == summary["search"]
    assert trained == []
    last = tmp_path / "runs" / steps[-1]["run_key"]
    paths.summary_path(last).unlink()  # a search killed in its last step: that run resumes from its checkpoint
    again = driver.search(hparams, tmp_path / "search", tmp_path / "runs", counting)
    assert trained == [steps[-1]["run_key"]] and again["search"] == summary["search"]


def test_a_step_that_another_process_trains_is_waited_for(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "WAIT_SECONDS", 0.0)
    calls: list[int] = []

    def busy_once(step: HParams, out) -> int:
        calls.append(1)
        return driver.BUSY if len(calls) == 1 else driver.train_in_process(step, out)

    hparams = HParams.resolve(method="search", target=(0.5,), epochs=2, search_iterations=0)
    summary = driver.search(hparams, tmp_path / "search", tmp_path / "runs", busy_once)
    assert summary["runs"] == len(calls) - 1  # the first step was asked twice


def test_a_step_that_does_not_finish_stops_the_search_with_its_code(tmp_path):
    hparams = HParams.resolve(method="search", target=(0.5,), epochs=2)
    with pytest.raises(driver.SearchStopped, match="did not finish") as stopped:
        driver.search(hparams, tmp_path / "search", tmp_path / "runs", lambda step, out: 143)
    assert stopped.value.code == 143 and not paths.summary_path(tmp_path / "search").exists()


def test_a_warm_started_search_keeps_its_steps_where_their_keys_say(tmp_path):
    driver.train_in_process(HParams.resolve(method="dense", epochs=2), tmp_path / "dense")
    hparams = HParams.resolve(
        method="search", target=(0.5,), epochs=2, search_iterations=0, pretrained=str(tmp_path / "dense")
    )
    summary = driver.search(hparams, tmp_path / "search", tmp_path / "runs")
    assert summary["variant"] == "search-model+warm"
    for step in summary["search"]["steps"]:  # penalized runs from the dense run's weights, hashed with its key
        assert "/penalized-model+warm~" in step["run_key"]
        assert (
            json.loads(paths.summary_path(tmp_path / "runs" / step["run_key"]).read_text())["run_key"]
            == step["run_key"]
        )
