"""Gated layers: groups, counts, the gated forward, expected L2 and the masked BatchNorm."""

import pytest
import torch
import torch.nn.functional as F

from ctrlsparse.density import Density
from ctrlsparse.layers import L0BatchNorm2d, L0Conv2d, L0Linear, gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.models.mlp import build_mlp
from ctrlsparse.models.norm import conv_bn_relu


def test_structured_linear_gates_input_neurons():
    layer = L0Linear(6, 4)
    assert layer.n_gates == 6 and layer.group_size == 4 and layer.n_sparsifiable == 24  # bias not counted
    z = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.25])
    weight, bias = layer.gated_params(z)
    assert torch.equal(weight, layer.weight * z) and bias is layer.bias


def test_structured_conv_gates_output_channels_with_their_bias():
    layer = L0Conv2d(3, 5, 3, bias=True)
    assert layer.n_gates == 5 and layer.group_size == 3 * 3 * 3 + 1
    z = torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0])
    weight, bias = layer.gated_params(z)
    assert torch.equal(weight[0], torch.zeros_like(weight[0])) and bias[0] == 0 and bias[3] == 0
    assert torch.equal(weight[2], layer.weight[2] * 0.5)


@pytest.mark.parametrize("bias", [True, False])
def test_unstructured_layers_have_one_gate_per_parameter(bias):
    linear = L0Linear(5, 3, bias=bias, structured=False)
    conv = L0Conv2d(2, 4, 3, bias=bias, structured=False)
    assert linear.n_sparsifiable == 15 + 3 * bias and linear.group_size == 1
    assert conv.n_sparsifiable == 72 + 4 * bias


def test_eval_forward_uses_the_deterministic_median_gates():
    torch.manual_seed(0)
    layer = L0Linear(8, 3).eval()
    with torch.no_grad():
        layer.log_alpha.copy_(torch.tensor([-3.0, 3.0, 0.0, -1.7, 1.7, 0.5, -0.5, 2.0]))
    x = torch.randn(5, 8)
    weight, bias = layer.eval_params()
    assert torch.allclose(layer(x), F.linear(x, weight, bias), atol=1e-6)
    assert torch.equal(layer(x), layer(x))
    assert (weight[:, 0] == 0).all() and (weight[:, 3] == 0).all()  # log alpha below -1.599


def test_training_forward_samples_one_gate_vector_per_minibatch():
    torch.manual_seed(0)
    layer = L0Linear(4, 2).train()
    x = torch.ones(3, 4)
    layer(x)
    assert layer.last_gates.shape == (4,)


def test_expected_l2_weights_groups_by_their_probability():
    layer = L0Linear(3, 2, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [1.0, 0.0, 3.0]]))
        layer.bias.copy_(torch.tensor([1.0, 1.0]))
    p = layer.prob_active().detach()
    expected = 0.5 * (p[0] * 2 + p[1] * 4 + p[2] * 9 + 2)
    assert layer.expected_l2(detach_gates=True).item() == pytest.approx(expected.item(), rel=1e-6)
    layer.expected_l2(detach_gates=True).backward()
    assert layer.log_alpha.grad is None or layer.log_alpha.grad.abs().sum() == 0


def test_density_of_a_model_counts_only_gated_parameters():
    model = build_mlp((1, 8, 8), 10, LayerFactory(droprate_init=0.5))
    density = Density(model)
    assert density.names == ["fc1", "fc2", "fc3"]
    assert density.total == 64 * 300 + 300 * 100 + 100 * 10
    assert density.model_expected().item() == pytest.approx(0.832, abs=2e-3)
    assert density.model_eval().item() == 1.0
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.fill_(-3.0)
    assert density.model_eval().item() == 0.0


def test_batchnorm_normalises_only_active_channels_and_keeps_their_statistics():
    torch.manual_seed(0)
    bn = L0BatchNorm2d(4)
    x = torch.randn(8, 4, 3, 3) * 3 + 2
    x[:, 1] = 0  # a closed channel
    active = torch.tensor([True, False, True, True])
    out = bn(x, active)
    assert torch.equal(out[:, 1], x[:, 1])
    reference = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True)
    assert torch.allclose(out[:, active], reference[:, active], atol=1e-5)
    assert bn.running_mean[1] == 0 and bn.running_var[1] == 1  # untouched
    assert bn.running_mean[0] != 0
    bn.eval()
    assert torch.equal(bn(x, active)[:, 1], x[:, 1])


def test_batchnorm_masked_affine_equals_passing_closed_channels_through():
    """The mask on the scale and shift gives the outputs and gradients of normalising the open channels and
    passing the (zero) closed ones through; a BatchNorm without affine parameters still passes them through."""
    torch.manual_seed(0)
    conv, bn = L0Conv2d(3, 6, 3, padding=1, bias=False).train(), L0BatchNorm2d(6)
    with torch.no_grad():
        conv.log_alpha.copy_(torch.tensor([3.0, -9.0, 3.0, -9.0, 3.0, 3.0]))  # channels 1 and 3 sample as 0
        bn.weight.uniform_(0.5, 2.0), bn.bias.uniform_(-1.0, 1.0)
    x = torch.randn(4, 3, 5, 5)
    grads = []
    for masked_affine in (True, False):
        torch.manual_seed(1)
        for param in (*conv.parameters(), *bn.parameters()):
            param.grad = None
        h = conv(x)
        active = conv.active_channels()
        assert active.tolist() == [True, False, True, False, True, True]
        if masked_affine:
            out = bn(h, active)
        else:
            normed = F.batch_norm(h, None, None, bn.weight, bn.bias, training=True)
            out = torch.where(active.view(1, -1, 1, 1), normed, h)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([out.detach()] + [p.grad.clone() for p in (conv.weight, conv.log_alpha, bn.weight, bn.bias)])
    for ours, reference in zip(*grads, strict=True):
        assert torch.allclose(ours, reference, atol=1e-5)
    plain = L0BatchNorm2d(2, affine=False).eval()
    plain.running_mean.fill_(1.0)
    closed = torch.zeros(1, 2, 2, 2)
    assert torch.equal(plain(closed, torch.tensor([True, False]))[:, 1], closed[:, 1])


def test_unstructured_conv_gates_each_weight_and_bias():
    torch.manual_seed(0)
    conv = L0Conv2d(2, 3, 3, padding=1, structured=False).train()
    out = conv(torch.randn(4, 2, 5, 5))
    out.sum().backward()
    assert conv.log_alpha.grad.shape == (2 * 3 * 9 + 3,)
    z = torch.zeros(conv.n_gates)
    z[0] = 1.0
    weight, bias = conv.gated_params(z)
    assert weight.count_nonzero() == 1 and bias.count_nonzero() == 0


def test_vectorised_density_equals_the_per_layer_closed_forms_and_their_gradient():
    torch.manual_seed(0)
    model = build_mlp((1, 8, 8), 10, LayerFactory(droprate_init=0.3))
    layers = [layer for _, layer in gated_layers(model)]
    with torch.no_grad():
        for layer in layers:
            layer.log_alpha.uniform_(-4, 4)
    density = Density(model)
    per_layer = torch.stack([layer.prob_active().sum() * layer.group_size for layer in layers])
    assert torch.allclose(density.expected_active(), per_layer)
    density.model_expected().backward()
    for layer in layers:  # d(model density)/d(log alpha) = group_size * P' / total, layer by layer
        p = layer.prob_active().detach()
        assert torch.allclose(layer.log_alpha.grad, layer.group_size * p * (1 - p) / density.total, atol=1e-9)
    evals = torch.stack([(layer.eval_params()[0] != 0).any(0).sum() * layer.group_size for layer in layers])
    assert torch.equal(density.eval_active(), evals.float())


def test_one_pass_sampling_gives_every_layer_its_own_sample_once():
    torch.manual_seed(0)
    model = build_mlp((1, 8, 8), 10, LayerFactory())
    density = Density(model)
    density.sample_gates_()
    drawn = [layer.next_gates for layer in density.layers]
    assert [z.shape[0] for z in drawn] == [64, 300, 100]
    model.train()
    model(torch.randn(2, 1, 8, 8))
    assert all(layer.next_gates is None for layer in density.layers)  # consumed
    assert all(layer.last_gates is z for layer, z in zip(density.layers, drawn, strict=True))
    model(torch.randn(2, 1, 8, 8))  # without a pass-wide draw, each layer samples for itself
    assert not any(layer.last_gates is z for layer, z in zip(density.layers, drawn, strict=True))


@pytest.mark.parametrize("after_norm", [False, True])
def test_the_loss_reaches_the_gates_of_a_conv_before_a_batchnorm_only_when_the_norm_applies_them(after_norm):
    """Training-mode BatchNorm divides a channel's scale away: a gate that scales the filter gets (almost) no
    gradient from the loss; a gate that scales the normalised channel (gate_after_norm) gets the loss's."""
    torch.manual_seed(0)
    layers = LayerFactory(droprate_init=0.05, gate_after_norm=after_norm)
    conv = layers.conv(3, 8, 3, padding=1, bias=False)
    bn = layers.batchnorm(conv)
    x = torch.randn(16, 3, 6, 6)
    out = conv_bn_relu(conv, bn, x)
    (out * torch.randn_like(out)).sum().backward()
    gradient = conv.log_alpha.grad.abs().max().item()
    assert gradient > 1e-3 if after_norm else gradient < 1e-4
    assert conv.norm_applies_gates is after_norm
