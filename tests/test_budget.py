"""Control defaults per data set and the step-budget scaling of the gates' and multipliers' rates."""

import pytest

from ctrlsparse.hparams import HParams
from ctrlsparse.hparams.defaults import DATASET_DEFAULTS, PAPER_CONTROL
from ctrlsparse.registry import DATASETS
from ctrlsparse.training.budget import control_rates, steps_per_epoch

PAPER = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 100_000, "imagenet": 1_281_167}
CONTROL = (
    "gates_lr",
    "dual_lr",
    "gates_beta2",
    "gates_polarization",
    "constraint",
    "violation",
    "alpha_min",
    "reference_steps",
)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_data_set_resolves_its_control_defaults(dataset):
    hparams = HParams.resolve(dataset=dataset)
    if dataset in PAPER:  # the paper's exact settings, rates at the paper's budget
        for key, value in PAPER_CONTROL.items():
            assert getattr(hparams, key) == value
        assert hparams.gates_lr == DATASET_DEFAULTS[dataset]["gates_lr"]
        assert hparams.reference_steps == hparams.epochs * steps_per_epoch(PAPER[dataset], hparams.batch_size)
    else:  # one default for every other data set: no per-data-set control knobs
        assert not set(CONTROL) & set(DATASET_DEFAULTS.get(dataset, {}))
        assert {key: getattr(hparams, key) for key in CONTROL} == {
            "gates_lr": 0.1,
            "dual_lr": 0.1,
            "gates_beta2": 0.95,
            "gates_polarization": 0.02,
            "constraint": "eq",
            "violation": "relative",
            "alpha_min": 1e-4,
            "reference_steps": 1800,
        }


def test_the_default_rates_are_digits_at_150_epochs_and_travel_as_far_at_any_budget():
    at_reference = control_rates(HParams.resolve(dataset="digits"), 1437)  # 150 epochs x 12 steps
    assert (at_reference.steps, at_reference.gates_lr, at_reference.dual_lr) == (1800, 0.1, 0.1)
    longer = control_rates(HParams.resolve(dataset="mnist5k"), 4000)  # 200 epochs x 32 steps
    assert longer.steps == 6400 and longer.gates_lr == pytest.approx(0.1 * 1800 / 6400)


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_paper_rates_are_exact_at_the_paper_budget_and_travel_as_far_at_another(dataset):
    hparams = HParams.resolve(dataset=dataset)
    at_paper = control_rates(hparams, PAPER[dataset])
    assert at_paper.steps == hparams.reference_steps and at_paper.scale == 1.0
    assert (at_paper.gates_lr, at_paper.dual_lr) == (hparams.gates_lr, hparams.dual_lr)
    shorter = control_rates(HParams.resolve(dataset=dataset, epochs=hparams.epochs // 2), PAPER[dataset])
    assert shorter.gates_lr * shorter.steps == pytest.approx(hparams.gates_lr * hparams.reference_steps)
    assert shorter.dual_lr * shorter.steps == pytest.approx(hparams.dual_lr * hparams.reference_steps)


def test_rates_without_a_reference_are_used_as_given():
    rates = control_rates(HParams.resolve(dataset="digits", epochs=7, gates_lr=0.3, reference_steps=0), 1437)
    assert (rates.steps, rates.scale, rates.gates_lr, rates.dual_lr) == (7 * 12, 1.0, 0.3, 0.1)


def test_a_run_uses_and_records_the_scaled_rates(tmp_path):
    from ctrlsparse.training.setup import build_run

    hparams = HParams.resolve(dataset="digits", epochs=2, reference_steps=240, device="cpu")
    run = build_run(hparams)  # 2 epochs x 12 steps = 24 steps: both rates x 10
    assert run.rates.scale == pytest.approx(10.0)
    assert {g["name"]: g["lr"] for g in run.primal.param_groups}["gates"] == pytest.approx(1.0)
    assert run.problem.dual_optimizer.param_groups[0]["lr"] == pytest.approx(1.0)
