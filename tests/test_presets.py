"""The paper presets expand to the paper's grids: job counts, tagged variants, runs shared between sweeps."""

import pytest
from workflow_cli import grid, preset, readable
from workflow_cli import runs_of as runs_of_config

COUNTS = {"mnist": 146, "cifar10": 100, "cifar100": 45, "tinyimagenet": 61, "imagenet": 9}


def runs_of(name: str) -> list:
    return runs_of_config(preset(name))


@pytest.mark.parametrize("preset", COUNTS)
def test_preset_job_counts(preset):
    runs = [run for run in runs_of(preset) if run.hparams.method != "magnitude"]  # the paper's methods
    assert len(runs) == COUNTS[preset] and len({run.key for run in runs}) == len(runs)


def test_cifar10_tables_tag_gates_lr_and_share_control_runs():
    runs = {readable(run.key): run for run in runs_of("cifar10")}
    tagged = runs["cifar10/wrn28_10/constrained-layer+gates_lr=0.1~1/seed~4"]
    assert tagged.hparams.gates_lr == 0.1 and tagged.hparams.tag == "gates_lr=0.1"
    assert "--tag" in grid.train_args(tagged, {"hparams": {}, "resources": {"default": {"gpu": 1}}})
    plain = runs["cifar10/wrn28_10/constrained-layer~1/seed~4"]
    assert plain.hparams.gates_lr == 6.0 and plain.hparams.tag == ""  # the cifar default is not a tag
    # λ 1e-3 model-wise seeds 0-2 are in both the control sweep and the table: one run each
    assert [k for k in runs if k.startswith("cifar10/wrn28_10/penalized-model~0.001/")] == [
        f"cifar10/wrn28_10/penalized-model~0.001/seed~{s}" for s in range(5)
    ]
    ablation = runs["cifar10/wrn28_10/constrained-layer+gates_lr=1+l2_detach_gates=false~0.35/seed~0"]
    assert not ablation.hparams.l2_detach_gates


def test_per_arch_and_layerwise_defaults():
    runs = {readable(run.key): run.hparams for run in runs_of("imagenet")}
    assert runs["imagenet/resnet50/constrained-layer~0.5/seed~0"].dual_lr == 3e-5
    assert runs["imagenet/resnet50/constrained-model~0.5/seed~0"].dual_lr == 3e-4
    assert (
        runs["imagenet/resnet50/dense~1/seed~0"].droprate_init == 0.05 and runs["imagenet/resnet50/dense~1/seed~0"].amp
    )
    mnist = {readable(run.key): run.hparams for run in runs_of("mnist")}
    assert mnist["mnist/lenet5/constrained-layer~0.5,0.3,0.7,0.1/seed~4"].target == (0.5, 0.3, 0.7, 0.1)


def test_the_restart_ablation_is_lenet5_on_mnist5k_le_at_0_3_and_0_7_with_and_without_restarts():
    runs = {readable(run.key): run.hparams for run in runs_of("restarts")}
    assert sorted(runs) == [
        "mnist5k/lenet5/constrained-model+dual_restarts=false~0.3/seed~0",
        "mnist5k/lenet5/constrained-model+dual_restarts=false~0.7/seed~0",
        "mnist5k/lenet5/constrained-model~0.3/seed~0",
        "mnist5k/lenet5/constrained-model~0.7/seed~0",
    ]
    assert {(h.constraint, h.epochs) for h in runs.values()} == {("le", 200)}
    assert [h.dual_restarts for _, h in sorted(runs.items())] == [False, False, True, True]


def test_the_search_preset_sets_each_search_beside_the_constrained_run_of_its_target():
    runs = [readable(run.key) for run in runs_of("search")]
    for dataset in ("digits", "mnist5k"):
        for scope in ("model", "layer"):
            assert f"{dataset}/mlp/search-{scope}~0.5/seed~0" in runs
            assert f"{dataset}/mlp/constrained-{scope}~0.5/seed~0" in runs
