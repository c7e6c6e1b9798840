"""Run identity (readable axes + the hash of the rest) and the train command line that the library builds from
hyperparameters (``train_argv``), read back by the train parser into the same hyperparameters."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace

import pytest

from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash, run_fields, run_key
from ctrlsparse.registry import ARCHS, DATASETS, METHODS
from ctrlsparse.training.cli import build_parser, train_argv

PARSER = build_parser()


def parsed(argv: list[str]) -> HParams:
    """What ``ctrlsparse train ARGV`` trains: the parsed flags, resolved as its main() resolves them."""
    args = PARSER.parse_args([*argv, "--out", "unused"])
    return HParams.resolve(**{spec.name: getattr(args, spec.name) for spec in fields(HParams)})


def test_run_key_is_the_readable_axes_then_the_hash_then_the_seed():
    constrained = HParams.resolve(arch="cnn", target=(0.35,), target_scope="layer", seed=2)
    digest = hparams_hash(constrained)
    assert run_key(constrained) == f"digits/cnn/constrained-layer~0.35/{digest}/seed~2"
    assert len(digest) == 8 and int(digest, 16) >= 0
    penalized = HParams.resolve(method="penalized", penalty=1e-4)
    assert run_key(penalized).startswith("digits/mlp/penalized-model~0.0001/") and run_key(penalized).endswith(
        "/seed~0"
    )
    assert run_fields(HParams.resolve(method="dense"))["level"] == "1"
    tagged = HParams.resolve(gates_lr=0.3, tag="gates_lr=0.3")
    assert run_key(tagged).startswith("digits/mlp/constrained-model+gates_lr=0.3~0.5/")


def test_the_seeds_of_one_setting_share_the_hash_and_every_other_value_changes_it():
    base = HParams.resolve(arch="cnn", target=(0.5,))
    assert hparams_hash(replace(base, seed=3)) == hparams_hash(base)  # seed~N directories side by side
    assert run_key(replace(base, seed=3)).rsplit("/", 1)[0] == run_key(base).rsplit("/", 1)[0]
    for changed in ({"epochs": 30}, {"lr": 1e-3}, {"amp": True}, {"lr_milestones": (5,)}, {"constraint": "le"}):
        assert run_key(HParams.resolve(arch="cnn", target=(0.5,), **changed)) != run_key(base), changed
    for execution in ({"threads": 2}, {"device": "cpu"}, {"checkpoint_seconds": 0.0}, {"compile": True}):
        assert run_key(HParams.resolve(arch="cnn", target=(0.5,), **execution)) == run_key(base), execution


def test_fields_added_later_enter_the_hash_only_when_set_so_earlier_runs_keep_their_keys():
    """The hash of a run that leaves formulation, penalty_coefficient, the search's fields, keep_a_gate_open,
    target_anneal, fix_gates and distillation at their defaults is the hash it had before they existed (pinned: main at
    ead9bfd, before all of them); any other value is hashed."""
    assert hparams_hash(HParams.resolve()) == "b21d0a91"
    assert hparams_hash(HParams.resolve(dataset="mnist5k", arch="lenet5", epochs=62, constraint="le")) == "267d6f6c"
    for changed in (
        {"formulation": "augmented_lagrangian"},
        {"penalty_coefficient": 10.0},
        {"keep_a_gate_open": True},
        {"target_anneal": 0.5},
        {"fix_gates": 0.3},
    ):
        assert hparams_hash(HParams.resolve(**changed)) != hparams_hash(HParams.resolve()), changed
    budget = {"arch": "cnn", "target_scope": "none", "budget": "latency=0.5"}  # a budget's batch, stated or not
    assert hparams_hash(HParams.resolve(**budget, latency_batch=1)) != hparams_hash(HParams.resolve(**budget))
    search = HParams.resolve(method="search")
    for changed in ({"search_range": (-4.0, 0.0)}, {"search_iterations": 3}):
        assert hparams_hash(HParams.resolve(method="search", **changed)) != hparams_hash(search), changed


def test_a_magnitude_run_is_named_by_the_dense_run_it_prunes():
    magnitude = HParams.resolve(method="magnitude", target_scope="layer", target=(0.5,))
    short = run_key(HParams.resolve(method="dense", epochs=30))
    long = run_key(HParams.resolve(method="dense"))
    assert run_key(magnitude, short) != run_key(magnitude, long)  # same fine-tuning, other starting weights
    assert run_key(magnitude, short).startswith("digits/mlp/magnitude-layer~0.5/")
    with pytest.raises(ValueError, match="needs the key of the run it starts from"):
        run_key(magnitude)


TRICKY = [
    {"lr": 1e-05, "gates_lr": 3e-7, "dual_lr": 0.1 + 0.2},  # floats that print in exponent form or long
    {"lr_milestones": (3, 7, 11), "lr_gamma": 0.25},
    {"lr_milestones": ()},  # empty over a dataset default of (60, 120, 160) on cifar
    {"dual_restarts": False, "l2_detach_gates": False, "amp": True, "download": True},
    {"tag": "gates_lr=0.1+l2_detach_gates=false", "gates_lr": 0.1, "l2_detach_gates": False},
    {"tag": "-odd", "data_workers": -1, "data_root": "/data/with space"},
    {"epochs": 1, "batch_size": 7, "device": "cuda:1", "threads": 3, "pretrained": "results/runs/x/y"},
]


def settings_of(method: str) -> list[dict]:
    if method == "dense":
        return [{}]
    if method == "penalized":
        return [{"target_scope": "model", "penalty": 1e-05}, {"target_scope": "layer", "penalty": 1.0}]
    if method == "magnitude":
        return [{"target_scope": "layer", "target": (0.2, 0.35, 0.5, 0.65)}]
    if method == "search":
        return [{"target_scope": "model", "target": (0.3,)}, {"target_scope": "layer", "search_range": (-4.0, 1.0)}]
    return [{"target_scope": "model", "target": (0.5,)}, {"target_scope": "layer", "target": (0.25, 0.5, 0.75)}]


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("method", list(METHODS))
def test_train_argv_reads_back_into_the_same_hparams_for_every_dataset_arch_method(dataset, method):
    for arch in ARCHS:
        for setting in settings_of(method):
            for tricky in [{}, *TRICKY]:
                if method == "dense" and "pretrained" in tricky:
                    continue  # refused: a dense run trains from scratch (test_hparams)
                hparams = HParams.resolve(dataset=dataset, arch=arch, method=method, seed=4, **setting, **tricky)
                argv = train_argv(hparams)
                assert parsed(argv) == hparams, argv


def test_train_argv_shows_the_axes_first_and_only_what_differs_from_their_defaults():
    hparams = HParams.resolve(arch="cnn", target_scope="layer", target=(0.5, 0.3, 0.7, 0.1), epochs=3)
    argv = train_argv(hparams)
    assert argv[:12] == [
        *("--dataset", "digits", "--arch", "cnn", "--method", "constrained", "--seed", "0"),
        *("--target-scope", "layer", "--target", "0.5,0.3,0.7,0.1"),
    ]
    assert argv[12:] == ["--epochs", "3"]
    assert train_argv(HParams.resolve(method="dense"))[-2:] == ["--seed", "0"]
    assert "--no-dual-restarts" in train_argv(HParams.resolve(dual_restarts=False))
    assert "--tag=-odd" in train_argv(HParams.resolve(tag="-odd"))  # a value that looks like a flag


def test_the_train_cli_module_stays_torch_free():
    code = "import sys, ctrlsparse.training.cli; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_workflow_wildcards_match_every_variant_and_level():
    import re

    from ctrlsparse.identity import LEVEL_PATTERN, VARIANT_PATTERN

    runs = [
        HParams.resolve(method="constrained", target_scope="layer", tag="gates_lr=0.1"),
        HParams.resolve(method="constrained", budget="macs=0.3,params=0.25"),
        HParams.resolve(method="constrained", target_scope="none", budget="params=0.5"),
        HParams.resolve(method="penalized", penalty=1e-5),
        HParams.resolve(method="dense"),
        HParams.resolve(method="magnitude", target_scope="layer", target=(0.5, 0.3)),
        HParams.resolve(method="search", target_scope="layer", target=(0.5,)),
    ]
    for hparams in runs:
        assert re.fullmatch(VARIANT_PATTERN, hparams.variant), hparams.variant
        assert re.fullmatch(LEVEL_PATTERN, hparams.level), hparams.level
    assert not re.fullmatch(VARIANT_PATTERN, "pruned-model")  # a method the registry does not know
