"""Typed hyperparameters: resolution order, validation messages, registries (run identity: test_identity.py)."""

import importlib

import pytest

from ctrlsparse.errors import HParamError, UnknownNameError
from ctrlsparse.hparams import HParams, format_number
from ctrlsparse.hparams.defaults import DATASET_DEFAULTS
from ctrlsparse.registry import ARCHS, DATASETS, METHODS


def test_resolution_order_is_fields_then_dataset_then_given():
    hparams = HParams.resolve(dataset="digits", gates_lr=0.5)
    assert hparams.gates_lr == 0.5
    assert hparams.epochs == DATASET_DEFAULTS["digits"]["epochs"]
    assert HParams.resolve(epochs=None).epochs == DATASET_DEFAULTS["digits"]["epochs"]


@pytest.mark.parametrize(
    ("given", "key", "text"),
    [
        ({"dataset": "cifar1000"}, "dataset", "unknown dataset 'cifar1000'; choose one of: digits"),
        ({"arch": "vgg"}, "arch", "unknown arch 'vgg'"),
        ({"method": "magic"}, "method", "unknown method 'magic'"),
        ({"target": (1.5,)}, "target", "1.5 is outside (0, 1]"),
        ({"target": (0.0,)}, "target", "0 is outside (0, 1]"),
        ({"target": (0.5, 0.3)}, "target", "needs target_scope 'layer'"),
        ({"epochs": -1}, "epochs", "must be a positive integer"),
        ({"target_scope": "network"}, "target_scope", "choose one of: model, layer"),
        ({"dual_lr": 0.0}, "dual_lr", "must be > 0"),
        ({"droprate_init": 1.0}, "droprate_init", "must lie in (0, 1)"),
        ({"gates_beta2": 1.0}, "gates_beta2", "must lie in [0, 1)"),
        ({"epohcs": 3}, "epohcs", "unknown hyperparameter"),
    ],
)
def test_bad_values_name_their_key(given, key, text):
    with pytest.raises(HParamError) as raised:
        HParams.resolve(**given)
    assert raised.value.key == key
    assert text in str(raised.value)


def test_round_trip_through_a_dict():
    hparams = HParams.resolve(target=(0.5, 0.3, 0.7), target_scope="layer", lr_milestones=(3, 6))
    assert HParams.from_dict(hparams.to_dict()) == hparams


@pytest.mark.parametrize(("value", "text"), [(0.5, "0.5"), (1.0, "1"), (1e-05, "1e-05"), (0.001, "0.001")])
def test_format_number(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("registry", [DATASETS, ARCHS, METHODS])
def test_every_registry_entry_resolves(registry):
    for name in registry:
        assert callable(registry[name])
        module = registry._targets[name].partition(":")[0]
        importlib.import_module(module)


def test_unknown_registry_name_lists_the_choices():
    with pytest.raises(UnknownNameError, match="unknown arch 'x'; choose one of: mlp, cnn"):
        ARCHS["x"]


def test_gates_get_their_own_adam_beta2_and_the_weights_keep_torchs():
    from ctrlsparse.training.setup import build_model, build_primal_optimizer

    for dataset, gates_beta2 in (("digits", 0.95), ("mnist", 0.999)):
        hparams = HParams.resolve(dataset=dataset)
        optimizer = build_primal_optimizer(hparams, build_model(hparams, (1, 8, 8), 10))
        betas = {group["name"]: group["betas"] for group in optimizer.param_groups}
        assert betas == {"weights": (0.9, 0.999), "gates": (0.9, gates_beta2)}
