"""Transformers through ctrlsparse.gate: attention heads, MLP neurons and the embedding width as gate groups.

torchvision's VisionTransformer (nn.MultiheadAttention) and Swin (shifted windows), and attention written out of
Linear layers (a fused qkv with scaled_dot_product_attention, timm's way; separate q / k / v with softmax(q @ kᵀ) @ v;
Hugging Face's transpose_for_scores) each: with every gate open
the gated model computes the original, on a random gate pattern the purged model computes the gated eval
function, and at 0/1 gates the expected cost (QKᵀ and AV included) is the purged model's size."""

from __future__ import annotations

import math

import pytest
import torch
from channels import check_exact, check_export_without_ctrlsparse, max_error, randomised, reach_macs, set_pattern
from torch import nn

import ctrlsparse
from ctrlsparse.channels.heads import Attention
from ctrlsparse.group_gates import MaskedLayerNorm
from ctrlsparse.layers import gated_layers
from ctrlsparse.purge import count, purge


def small_vit(layers: int = 2, heads: int = 2, width: int = 16, mlp: int = 32) -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        image_size=16, patch_size=4, num_layers=layers, num_heads=heads, hidden_dim=width, mlp_dim=mlp, num_classes=3
    )


class FusedQKV(nn.Module):
    """timm's block: one qkv Linear, reshape / permute / unbind into heads, q_norm / k_norm off (Identity),
    scaled_dot_product_attention."""

    def __init__(self, width: int = 12, heads: int = 3):
        super().__init__()
        self.heads = heads
        self.embed, self.norm = nn.Linear(5, width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2, self.head = nn.Linear(width, 20), nn.Linear(20, width), nn.Linear(width, 4)
        self.q_norm = self.k_norm = nn.Identity()

    def forward(self, x):
        x = self.embed(x)
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = nn.functional.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, c))
        x = x + self.fc2(nn.functional.gelu(self.fc1(x)))
        return self.head(x.mean(1))


class SeparateQKV(nn.Module):
    """q, k, v Linear layers, view + transpose into heads, a scaled q, softmax(q @ kᵀ) with dropout, @ v."""

    def __init__(self, width: int = 12, heads: int = 3):
        super().__init__()
        self.heads = heads
        self.embed = nn.Linear(5, width)
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))
        self.drop, self.head = nn.Dropout(0.1), nn.Linear(width, 4)

    def forward(self, x):
        x = self.embed(x)
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2) * (c // self.heads) ** -0.5
        k = self.k(x).view(b, n, self.heads, -1).transpose(1, 2)
        v = self.v(x).view(b, n, self.heads, -1).transpose(1, 2)
        weights = self.drop((q @ k.transpose(-2, -1)).softmax(dim=-1))
        y = (weights @ v).transpose(1, 2).contiguous().view(b, n, c)
        return self.head((x + self.out(y)).mean(1))


class HuggingFace(nn.Module):
    """Hugging Face's BERT / ViT self-attention: view + permute into heads (transpose_for_scores), q @ kᵀ / sqrt(d),
    F.softmax, dropout, @ v, merged by a view to ``size()[:-2] + (all_head_size,)``."""

    def __init__(self, width: int = 12, heads: int = 3):
        super().__init__()
        self.heads, self.size = heads, width // heads
        self.embed = nn.Linear(5, width)
        self.query, self.key, self.value, self.output = (nn.Linear(width, width) for _ in range(4))
        self.dropout, self.head = nn.Dropout(0.1), nn.Linear(width, 4)

    def split(self, x):
        return x.view(x.size()[:-1] + (self.heads, self.size)).permute(0, 2, 1, 3)

    def forward(self, x):
        h = self.embed(x)
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.size)
        context = torch.matmul(self.dropout(nn.functional.softmax(scores, dim=-1)), v).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (self.heads * self.size,))
        return self.head((h + self.output(context)).mean(1))


def groups(gated: nn.Module) -> dict[str, int]:
    return {name.removeprefix("gates."): group.n_gates for name, group in gated_layers(gated)}


def test_a_vit_gates_its_heads_mlp_neurons_and_embedding_width():
    x = torch.randn(2, 3, 16, 16)
    model = small_vit()
    gated = check_exact(model, x)
    layer = "encoder_layers_encoder_layer_{}_"
    assert groups(gated) == {
        "conv_proj": 16,  # the residual stream: patch embedding, class token, positions, norms, every block, head
        **{layer.format(i) + "self_attention_q": 2 for i in range(2)},  # heads
        **{layer.format(i) + "mlp_0": 32 for i in range(2)},  # MLP neurons
    }
    assert sum(isinstance(m, Attention) for m in gated.modules()) == 2
    assert sum(isinstance(m, MaskedLayerNorm) for m in gated.modules()) == 5
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.conv_proj").log_alpha[[0, 5, 6]] = -5.0
        gated.get_submodule("gates." + layer.format(0) + "self_attention_q").log_alpha[1] = -5.0
        gated.get_submodule("gates." + layer.format(1) + "mlp_0").log_alpha[:10] = -5.0
    purged = purge(gated, x)
    modules = dict(purged.named_modules())
    block = "encoder_layers_encoder_layer_{}_"
    assert modules["conv_proj"].out_channels == 13 and modules["heads_head"].in_features == 13
    assert modules[block.format(0) + "self_attention_q"].weight.shape == (8, 13)  # one head of 8 channels left
    assert modules[block.format(0) + "self_attention_out_proj"].weight.shape == (13, 8)
    assert modules[block.format(1) + "self_attention_q"].weight.shape == (16, 13)
    assert (
        modules[block.format(1) + "mlp_0"].out_features == 22 and modules[block.format(1) + "mlp_3"].in_features == 22
    )
    shapes = {name.rstrip("_0123456789"): tuple(p.shape) for name, p in purged.named_parameters()}
    assert shapes["class_token"] == (1, 1, 13) and shapes["encoder_pos_embedding"] == (1, 17, 13)
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5


def small_swin() -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=3
    )


@pytest.mark.parametrize("size", [32, 40])  # 40: windows padded (10 -> 12 patches a side)
def test_a_swin_gates_its_heads_mlp_neurons_and_each_stages_width(size):
    """Shifted windows with the relative position bias and the shift mask: heads, MLP neurons and each stage's
    stream (the patch embedding's, then each patch merging's reduction) are gate groups, exactly."""
    x = torch.randn(2, 3, size, size)
    gated = check_exact(small_swin(), x)
    assert groups(gated) == {
        "features_0_0": 16,  # stage 1's stream
        **{f"features_1_{b}_attn_qkv": 2 for b in range(2)},
        **{f"features_1_{b}_mlp_0": 64 for b in range(2)},
        "features_2_reduction": 32,  # stage 2's stream
        **{f"features_3_{b}_attn_qkv": 4 for b in range(2)},
        **{f"features_3_{b}_mlp_0": 128 for b in range(2)},
    }
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.features_3_1_attn_qkv").log_alpha[[0, 2, 3]] = -5.0
    purged = purge(gated, x)
    assert purged.get_submodule("features_3_1_attn_qkv").out_features == 3 * 8
    assert purged.get_submodule("features_3_1_attn_proj").in_features == 8
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("vit_b_16", 32), ("swin_t", 64)])
def test_vit_b_16_and_swin_t_are_exact_and_reach_below_five_percent_of_their_macs(name, size):
    import torchvision

    torch.manual_seed(0)
    fixed = {"image_size": size} if name.startswith("vit") else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **fixed)
    x = torch.randn(2, 3, size, size)
    gated = check_exact(model, x, seeds=(1,))
    assert reach_macs(gated, x) <= 0.05 * count(model, x).macs


def test_the_mac_count_includes_attention_on_the_cpu():
    """torch's counter leaves out the CPU kernel of scaled_dot_product_attention and nn.MultiheadAttention's
    fast path; ctrlsparse counts them as the matrix products they are."""
    layer = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 5, 8)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x, x, x, need_weights=False)[0]

    projections, products = 4 * 5 * 8 * 8, 2 * 5 * 5 * 8
    assert count(Wrapped(), x).macs == projections + products
    gated = ctrlsparse.gate(Wrapped(), x)
    assert count(gated, x).macs == projections + products


@pytest.mark.parametrize("model", [FusedQKV, SeparateQKV, HuggingFace])
def test_attention_written_out_of_linear_layers_gates_its_heads(model):
    x = torch.randn(2, 7, 5)
    gated = check_exact(model(), x, seeds=(1, 2, 3))
    assert sum(isinstance(m, Attention) for m in gated.modules()) == 1
    heads = [n for n in groups(gated) if n in ("qkv", "q", "query")]
    assert len(heads) == 1 and groups(gated)[heads[0]] == 3
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule(f"gates.{heads[0]}").log_alpha[[0, 2]] = -5.0
    purged = purge(gated, x)
    linears = {name: m.weight.shape for name, m in purged.named_modules() if isinstance(m, nn.Linear)}
    if model is FusedQKV:  # q, k and v rows of the one head left
        assert linears["qkv"][0] == 3 * 4 and linears["proj"][1] == 4
    elif model is HuggingFace:
        assert linears["query"][0] == linears["key"][0] == linears["value"][0] == linears["output"][1] == 4
    else:
        assert linears["q"][0] == linears["k"][0] == linears["v"][0] == linears["out"][1] == 4
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5


class CrossAttention(nn.Module):
    """nn.MultiheadAttention sequence-first (batch_first False), keys and values of another width (kdim, vdim)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 12), nn.Linear(5, 8)
        self.attention = nn.MultiheadAttention(12, 3, kdim=8, vdim=8)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        query, memory = self.a(x).transpose(0, 1), self.b(x.flip(1)).transpose(0, 1)
        y, _ = self.attention(query, memory, memory)
        return self.head(y.mean(0))


def test_sequence_first_cross_attention_gates_its_heads():
    gated = check_exact(CrossAttention(), torch.randn(2, 7, 5))
    assert groups(gated) == {"a": 12, "b": 8, "attention_q": 3, "attention_out_proj": 12}


class Masked(SeparateQKV):
    """A causal mask (a buffer) plus a learned bias per head, added to the scaled scores; or (``fill``) the mask
    applied with masked_fill, which the rewrite does not know."""

    def __init__(self, fill: bool = False):
        super().__init__()
        self.fill = fill
        self.register_buffer("mask", torch.ones(7, 7).triu(1) * -1e4)
        self.bias = nn.Parameter(torch.randn(self.heads, 7, 7))

    def forward(self, x):
        x = self.embed(x)
        b, n, c = x.shape
        q, k, v = (f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) * 0.5
        scores = (
            (scores + self.bias).masked_fill(self.mask < 0, -1e4) if self.fill else scores + (self.mask + self.bias)
        )
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.head((x + self.out(y)).mean(1))


def test_attention_with_an_additive_mask_and_a_bias_per_head_gates_its_heads():
    x = torch.randn(2, 7, 5)
    gated = check_exact(Masked(), x, seeds=(1, 2))
    assert sum(isinstance(m, Attention) for m in gated.modules()) == 1 and groups(gated)["q"] == 3
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.q").log_alpha[1] = -5.0
    purged = purge(gated, x)  # the bias keeps the slices of heads 0 and 2
    assert purged.get_submodule("q").out_features == 8
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5


def test_attention_masked_in_another_way_is_left_whole_and_stays_exact():
    gated = check_exact(Masked(fill=True), torch.randn(2, 7, 5), seeds=(1,))
    assert not any(isinstance(m, Attention) for m in gated.modules())


@pytest.mark.parametrize("model", [small_vit, pytest.param(small_swin, marks=pytest.mark.slow)])
def test_a_purged_transformer_exports_and_loads_without_ctrlsparse(model, tmp_path):
    x = torch.randn(2, 3, 32, 32) if model is small_swin else torch.randn(2, 3, 16, 16)
    gated = ctrlsparse.gate(randomised(model()), x).eval()
    set_pattern(gated, 3, fractional=True)
    check_export_without_ctrlsparse(gated, x, tmp_path)


def test_the_registered_vit_gates_heads_mlp_and_width_and_trains_to_a_density(tmp_path):
    """The small ViT (arch vit) on digits: dense and gated builds, then a short constrained run for real."""
    from ctrlsparse.hparams import HParams
    from ctrlsparse.models.factory import LayerFactory
    from ctrlsparse.registry import ARCHS
    from ctrlsparse.training.loop import train

    dense = ARCHS["vit"]((1, 8, 8), 10, LayerFactory(gated=False))
    assert not gated_layers(dense)
    gated = ARCHS["vit"]((1, 8, 8), 10, LayerFactory())
    sizes = groups(gated)
    assert sizes["embed"] == 48 and [sizes[f"blocks_{i}_qkv"] for i in range(3)] == [3, 3, 3]
    assert [sizes[f"blocks_{i}_fc1"] for i in range(3)] == [96, 96, 96]
    with torch.device("meta"):  # the preflight lists the groups of a model built without memory
        assert groups(ARCHS["vit"]((3, 32, 32), 10, LayerFactory())) == sizes
    assert HParams.resolve(arch="vit").gates_polarization == 2.0  # the gate groups' tie-breaker
    summary = train(HParams.resolve(arch="vit", epochs=3, target=0.5), tmp_path / "run", on_epoch=None)
    assert 0.0 < summary["expected_density"] < 1.0 and summary["train_loss"] == summary["train_loss"]  # not NaN


@pytest.mark.slow
def test_the_vit_preset_trains_through_the_workflow_into_tables_report_and_mlflow(tmp_path):
    """workflow/presets/vit.yaml shrunk to 2 epochs: its five runs are purged, tabled, plotted, reported and mirrored
    to MLflow like the CNNs' (the smoke run's checks, on the transformer)."""
    import json

    from workflow_cli import PRESETS, ROOT, preset, readable, runs_of, snakemake

    keys = [run.key for run in runs_of(preset("vit"), {"hparams": {"epochs": 2}})]
    assert sorted(readable(k) for k in keys) == [
        "mnist5k/vit/constrained-budget~macs=0.3/seed~0",
        "mnist5k/vit/constrained-budget~macs=0.5/seed~0",
        "mnist5k/vit/constrained-model~0.3/seed~0",
        "mnist5k/vit/constrained-model~0.5/seed~0",
        "mnist5k/vit/dense~1/seed~0",
    ]
    (tmp_path / "short.yaml").write_text("hparams: {epochs: 2}\n")
    configs = ["--configfile", str(PRESETS / "vit.yaml"), str(tmp_path / "short.yaml")]
    snakemake(tmp_path, *configs, "--cores", "2", "--profile", str(ROOT / "profiles" / "local"), timeout=900)
    results = tmp_path / "results"
    for key in keys:
        summary = json.loads((results / "runs" / key / "summary.json").read_text())
        assert summary["arch"] == "vit" and 0 < summary["macs_pct"] <= 100
        assert (results / "runs" / key / "purged.pt2").stat().st_size > 0
    grid = results / "ctrlsparse-vit"
    assert len((grid / "tables" / "runs.csv").read_text().splitlines()) == 1 + len(keys)
    assert (grid / "report.pdf").read_bytes().startswith(b"%PDF") and (grid / "plots" / "budget_control.png").exists()
    from test_workflow import mlflow_runs

    assert sorted(r.data.tags["run_key"] for r in mlflow_runs(tmp_path, experiment="ctrlsparse-vit")) == sorted(keys)


def test_layer_wise_targets_by_kind_stream_heads_and_mlp(tmp_path):
    """Gate groups know their kind (width: a residual stream, heads, hidden: MLP neurons); a layer-wise target
    list of one number per kind applies each to every group of that kind, in training and in the verdict."""
    from ctrlsparse.density_targets import layer_targets
    from ctrlsparse.errors import HParamError
    from ctrlsparse.feasibility import constraint_targets
    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.loop import train

    swin = ctrlsparse.gate(small_swin(), torch.randn(2, 3, 32, 32))
    kinds = {name.removeprefix("gates."): group.kind for name, group in gated_layers(swin)}
    assert kinds["features_0_0"] == kinds["features_2_reduction"] == "width"  # each stage's stream
    assert kinds["features_3_1_attn_qkv"] == "heads" and kinds["features_3_1_mlp_0"] == "hidden"
    names = ["embed", "blocks_0_qkv", "blocks_0_fc1", "blocks_1_qkv", "blocks_1_fc1"]
    kinds = ["width", "heads", "hidden", "heads", "hidden"]
    assert layer_targets((0.8, 0.5, 0.3), names, "vit", kinds=kinds) == [0.8, 0.5, 0.3, 0.5, 0.3]
    with pytest.raises(HParamError, match=r"give one target or 5, or one per kind \(width, heads, hidden\)"):
        layer_targets((0.8, 0.5), names, "vit", kinds=kinds)
    hparams = HParams.resolve(arch="vit", epochs=1, target_scope="layer", target=(0.8, 0.5, 0.3))
    summary = train(hparams, tmp_path / "run", on_epoch=None)
    assert summary["layer_kinds"]["gates.blocks_2_qkv"] == "heads"
    assert constraint_targets(summary) == {
        "gates.embed": 0.8,
        **{f"gates.blocks_{b}_qkv": 0.5 for b in range(3)},
        **{f"gates.blocks_{b}_fc1": 0.3 for b in range(3)},
    }


@pytest.mark.parametrize("model", [small_vit, small_swin])
def test_a_gated_transformer_loads_its_dense_models_weights(model):
    """A warm start loads the dense run's state dict: nn.MultiheadAttention's in_proj into the q / k / v Linear
    layers it became, Swin's shift mask is no state; then, all gates open, the gated model computes the dense one."""
    x = torch.randn(2, 3, 32, 32) if model is small_swin else torch.randn(2, 3, 16, 16)
    dense, other = randomised(model()), model()
    gated = ctrlsparse.gate(other, x).eval()  # other weights than dense's
    missing, unexpected = gated.load_state_dict(dense.state_dict(), strict=False)
    assert not unexpected and all("log_alpha" in key or key.endswith(".index") for key in missing)
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        assert max_error(gated(x), dense(x)) <= 1e-5
