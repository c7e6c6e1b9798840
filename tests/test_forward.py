"""The forward pass's speed-ups: torch.compile traces the gated models whole and trains as eager does;
channels-last inputs; the speed-up flags are execution settings, outside a run's identity."""

import pytest
import torch

from ctrlsparse.density import Density
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash, run_key
from ctrlsparse.training import forward
from ctrlsparse.training.loop import train
from ctrlsparse.training.setup import build_model


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("wrn16_4", (3, 32, 32))])
def test_compile_traces_each_gated_model_in_one_graph(arch, shape):
    hparams = HParams.resolve(dataset="digits", arch=arch)
    torch.manual_seed(0)
    model = build_model(hparams, shape, 10).train()
    density = Density(model)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    inputs = torch.randn(4, *shape)
    outputs = []
    for module in (model, compiled):
        torch.manual_seed(1)
        density.sample_gates_()  # drawn outside the graph, taken by each layer inside it
        outputs.append(module(inputs))
        assert all(layer.next_gates is None for layer in density.layers)  # each sample used once
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6)
    outputs[1].sum().backward()
    assert all(layer.log_alpha.grad is not None for layer in density.layers)


def test_compiled_run_trains_as_the_eager_run(tmp_path, monkeypatch):
    eager = train(HParams.resolve(arch="cnn", epochs=2, threads=1), tmp_path / "eager", on_epoch=None)
    calls = []

    def compile_eagerly(module, **kwargs):  # dynamo's real tracing, without inductor's minute of C++ builds
        calls.append(module)
        return real_compile(module, backend="eager", fullgraph=True)

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_eagerly)
    hparams = HParams.resolve(arch="cnn", epochs=2, threads=1, compile=True)
    compiled = train(hparams, tmp_path / "compiled", on_epoch=None)
    assert len(calls) == 1  # the training forward only; evaluation stays eager
    for key in ("train_loss", "test_accuracy", "expected_density", "eval_density"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-6), key


def test_channels_last_inputs_reach_the_model_unchanged_in_value():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.sum((2, 3))

    inputs = torch.randn(2, 3, 5, 5)
    out = forward.DeviceForward(Probe(), amp=False, channels_last=True)(inputs)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and torch.equal(seen[0], inputs)
    assert torch.allclose(out, inputs.sum((2, 3)))  # summed in another order
    flat = torch.randn(2, 7)  # a 2-d input (MLP) passes as it is
    assert forward.DeviceForward(torch.nn.Identity(), amp=False, channels_last=True)(flat) is flat


def test_cpu_runs_skip_the_cuda_only_speed_ups():
    hparams = HParams.resolve(arch="cnn", amp=True, channels_last=True)
    model = build_model(hparams, (1, 8, 8), 10)
    assert forward.device_forward(model, hparams, torch.device("cpu")) is model
    prepared = forward.prepare_model(model, hparams, torch.device("cpu"))
    assert prepared.conv2.weight.is_contiguous()  # (32, 16, 3, 3): channels-last would not be contiguous


def test_speed_ups_are_not_part_of_a_runs_identity():
    plain = HParams.resolve(arch="cnn")
    fast = HParams.resolve(arch="cnn", channels_last=True, compile=True)
    assert run_key(plain) == run_key(fast) and hparams_hash(plain) == hparams_hash(fast)
    assert hparams_hash(HParams.resolve(arch="cnn", amp=True)) != hparams_hash(plain)  # bf16 changes the numbers
