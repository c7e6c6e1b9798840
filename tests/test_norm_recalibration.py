"""``--recalibrate-norms N``: the BatchNorm statistics re-estimated under the eval gates before every evaluation,
from N training batches of a generator of their own; the weights, the gates and the training untouched."""

from __future__ import annotations

import pytest
import torch
from purged_runs import train_then_purge
from torch import nn

from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.layers import gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.registry import ARCHS
from ctrlsparse.training.norm_stats import recalibrate_norms


def gated_cnn():
    torch.manual_seed(0)
    model = ARCHS["cnn"]((1, 8, 8), 10, LayerFactory(gated=True))
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.copy_(torch.linspace(-3, 3, layer.n_gates))  # some closed, some open at eval
    return model


def test_the_statistics_are_those_of_the_eval_gates_and_nothing_else_changes():
    model = gated_cnn()
    norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        norm.running_mean.fill_(5.0)
        norm.running_var.fill_(1e-6)  # a channel whose gate was shut through training
    batches = [torch.randn(16, 1, 8, 8) for _ in range(3)]
    seen_inputs = []
    hook = norm.register_forward_pre_hook(lambda module, args: seen_inputs.append(args[0].detach().clone()))
    weights = {name: value.clone() for name, value in model.state_dict().items() if "running" not in name}
    torch.manual_seed(1)
    stream = torch.get_rng_state()
    assert recalibrate_norms(model, model, batches) == 3
    hook.remove()
    inputs = torch.stack(seen_inputs)  # (batch, N, C, H, W): what the first BatchNorm saw, eval gates
    means = inputs.mean(dim=(1, 3, 4))
    variances = inputs.transpose(1, 2).flatten(2).var(dim=2)  # unbiased, per batch and channel
    shut = (inputs.transpose(0, 2).flatten(1) == 0).all(dim=1)  # channels whose eval gate is 0
    assert 0 < int(shut.sum()) < len(shut)
    open_ = ~shut
    assert torch.allclose(norm.running_mean[open_], means.mean(0)[open_], atol=1e-5)
    assert torch.allclose(norm.running_var[open_], variances.mean(0)[open_], rtol=1e-4, atol=1e-6)
    # a shut channel: L0BatchNorm keeps the reset statistics (nothing to normalise)
    assert torch.equal(norm.running_mean[shut], torch.zeros(int(shut.sum())))
    assert torch.equal(norm.running_var[shut], torch.ones(int(shut.sum())))
    assert norm.momentum == 0.1 and not any(m.training for m in model.modules())
    assert all(
        torch.equal(model.state_dict()[name], value) for name, value in weights.items() if "num_batches" not in name
    )
    assert torch.equal(torch.get_rng_state(), stream)


def test_the_run_key_keeps_its_default_and_a_negative_count_is_refused():
    plain = HParams.resolve(arch="cnn")
    assert run_key(HParams.resolve(arch="cnn", recalibrate_norms=0)) == run_key(plain)
    assert run_key(HParams.resolve(arch="cnn", recalibrate_norms=8)) != run_key(plain)
    with pytest.raises(ValueError, match="recalibrate_norms"):
        HParams.resolve(arch="cnn", recalibrate_norms=-1)


def test_a_run_trains_the_same_and_its_eval_and_purge_use_the_recalibrated_statistics(tmp_path):
    given = dict(arch="cnn", target=0.3, target_scope="layer", epochs=3, batch_size=64)
    plain, _ = train_then_purge(tmp_path / "plain", **given)
    recalibrated, purged = train_then_purge(tmp_path / "recalibrated", recalibrate_norms=4, **given)
    first = torch.load(tmp_path / "plain" / "run" / "checkpoint.pt", weights_only=False)["model"]
    second = torch.load(tmp_path / "recalibrated" / "run" / "checkpoint.pt", weights_only=False)["model"]
    trained = [name for name in first if "running" not in name and "num_batches" not in name]
    assert trained and all(torch.equal(first[name], second[name]) for name in trained)  # the same training
    assert any(not torch.equal(first[name], second[name]) for name in first if "running_var" in name)
    assert recalibrated["expected_density"] == plain["expected_density"]
    assert purged["purged_test_accuracy"] == recalibrated["test_accuracy"]  # the purge keeps what the eval used
