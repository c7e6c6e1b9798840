"""The purge's re-indexing folded away in the inference form (``purge/index_folds.py``): shape and rank reads
read the tensor before its padding, a Linear reads the source of its gathered input, a Linear's output split by
index_selects becomes narrow views; the function stays, and what cannot fold stays."""

from __future__ import annotations

import copy

import pytest
import torch
from channels import randomised, set_pattern
from test_purge import build, max_error, set_gates
from test_transformers import small_swin, small_vit
from torch import fx, nn

import ctrlsparse
from ctrlsparse.purge import deploy_form, purge, purge_dense
from ctrlsparse.purge.index_folds import fold_index_ops


def calls(model: nn.Module, *targets) -> int:
    return sum(n.op == "call_function" and n.target in targets for n in model.graph.nodes)


def folded(model: nn.Module, x: torch.Tensor) -> tuple[fx.GraphModule, int]:
    """``model`` traced, its index ops folded, checked to compute what it computed."""
    traced = fx.symbolic_trace(model)
    with torch.no_grad():
        reference = traced(x)
        count = fold_index_ops(traced, x)
        assert max_error(traced(x), reference) <= 1e-6
    return traced, count


class ShapeRead(nn.Module):
    """A re-indexed tensor whose batch size and rank are read (``reindexed`` too: its width)."""

    def __init__(self, width_read: bool):
        super().__init__()
        self.width_read = width_read
        self.register_buffer("index", torch.tensor([0, 2, 4]))

    def forward(self, x):
        padded = torch.cat([x, torch.zeros_like(x.narrow(1, 0, 1))], 1)
        y = torch.index_select(padded, 1, self.index)
        read = y.shape[0] * y.dim() + y.size(0)
        return x * (read + y.shape[1]) if self.width_read else x * read


def test_batch_size_and_rank_read_through_the_padding_and_the_width_does_not():
    x = torch.randn(3, 4)
    model, count = folded(ShapeRead(width_read=False), x)
    assert count == 2 and calls(model, torch.index_select, torch.cat) == 0
    model, count = folded(ShapeRead(width_read=True), x)  # y.shape[1] is 3, x.shape[1] 4: the ops stay
    assert count == 0 and calls(model, torch.index_select, torch.cat) == 2


class Gathered(nn.Module):
    """A Linear over ``x[:, 0]`` re-indexed twice, with zero padding: duplicates, pads and unread channels."""

    def __init__(self, first: list[int], second: list[int], other_reader: bool = False):
        super().__init__()
        self.other_reader = other_reader
        self.register_buffer("first", torch.tensor(first))
        self.register_buffer("second", torch.tensor(second))
        self.head = nn.Linear(len(second), 3)

    def forward(self, x):  # x: (batch, tokens, 5)
        padded = torch.cat([x, torch.zeros_like(x.narrow(2, 0, 1))], 2)
        tokens = torch.index_select(padded, 2, self.first)
        y = torch.index_select(tokens[:, 0], 1, self.second)
        out = self.head(y)
        return out + tokens.sum() if self.other_reader else out


@pytest.mark.parametrize(
    ("first", "second", "width", "left"),
    [
        ([4, 0, 5, 2, 1, 3], [0, 1, 1, 2, 5, 4, 3], 5, 0),  # every channel read, one twice, a pad: no op left
        ([4, 0, 5, 2, 5], [0, 2, 2, 4, 1], 2, 1),  # 3 of 5 columns pads, channels 0 and 4 read: one index_select
    ],
)
def test_a_linear_reads_the_source_of_its_gathered_input_with_its_columns_gathered(first, second, width, left):
    x = torch.randn(2, 4, 5)
    model, count = folded(Gathered(first, second), x)
    assert count == 3 - left and calls(model, torch.index_select, torch.cat) == left
    assert model.head.in_features == width  # at most the columns it had (7 and 5): fewer MACs, not more


def test_a_gathered_input_with_another_reader_is_left_alone():
    x = torch.randn(2, 4, 5)
    model, count = folded(Gathered([4, 0, 5, 2, 1, 3], [0, 1, 2, 2, 5], other_reader=True), x)
    assert count == 0 and model.head.in_features == 5


class Reselected(nn.Module):
    """Zero-padded index_selects of zero-padded index_selects, each source padded by a cat of its own: what the
    purge emits for a head whose q and k were pruned and its v kept."""

    def __init__(self):
        super().__init__()
        for name, index in {"q": [3], "k": [0, 3], "v": [2, 0, 3], "again": [1, 2, 0, 1], "q_again": [1, 0, 1]}.items():
            self.register_buffer(name, torch.tensor(index))

    @staticmethod
    def padded(x):
        return torch.cat([x, torch.zeros_like(x.narrow(1, 0, 1))], 1)

    def forward(self, x):  # x: (batch, 3)
        q, k, v = (torch.index_select(self.padded(x), 1, index) for index in (self.q, self.k, self.v))
        again = torch.index_select(self.padded(q), 1, self.q_again)
        return torch.cat([again, k * 2, torch.index_select(v, 1, self.again)], 1)


def test_index_selects_of_index_selects_become_one_of_their_source_with_one_shared_pad():
    x = torch.randn(2, 3)
    model, count = folded(Reselected(), x)
    assert calls(model, torch.cat) == 2 and calls(model, torch.zeros_like) == 1  # x padded once, and the output
    assert calls(model, torch.index_select) == 3 and count == 3 + 2
    assert all(n.args[0].target is torch.cat for n in model.graph.nodes if n.target is torch.index_select)


class Windows(nn.Module):
    """A Swin block's window partition over a tensor holding channels 0, 2, 3 of 5: padded to the full width,
    viewed into windows, selected back; permuted; padded, reshaped, selected back; then a Linear (``merged``:
    the last view folds the channels into the tokens, which no selection can pass)."""

    def __init__(self, merged: bool = False):
        super().__init__()
        self.merged = merged
        self.register_buffer("full", torch.tensor([0, 3, 1, 2, 3]))  # 3: the pad
        self.register_buffer("held", torch.tensor([0, 2, 3]))
        self.linear = nn.Linear(3 if not merged else 12, 2)

    def forward(self, x):  # x: (batch, 4, 4, 3)
        padded = torch.cat([x, torch.zeros_like(x.narrow(3, 0, 1))], 3)
        y = torch.index_select(torch.index_select(padded, 3, self.full).view(-1, 2, 2, 2, 2, 5), 5, self.held)
        y = y.permute(0, 1, 3, 2, 4, 5)
        y = torch.index_select(torch.cat([y, torch.zeros_like(y.narrow(5, 0, 1))], 5), 5, self.full)
        y = y.reshape(-1, 4, 5) if not self.merged else y.reshape(-1, 4, 4 * 5)
        return self.linear(torch.index_select(y, 2, self.held if not self.merged else torch.arange(12)))


def test_selections_pass_views_permutes_and_reshapes_that_keep_the_channels_last():
    x = torch.randn(2, 4, 4, 3)
    model, count = folded(Windows(), x)
    assert count == 6 and calls(model, torch.index_select, torch.cat) == 0
    model, count = folded(Windows(merged=True), x)  # the first view still passes; the merging reshape not
    assert calls(model, torch.index_select, torch.cat) > 0


class Transposed(nn.Module):
    """A padded selection of the channels, then a permute that moves them off the last dim."""

    def __init__(self):
        super().__init__()
        self.register_buffer("full", torch.tensor([0, 3, 1, 2, 3]))

    def forward(self, x):  # x: (batch, 4, 3)
        padded = torch.cat([x, torch.zeros_like(x.narrow(2, 0, 1))], 2)
        return torch.index_select(padded, 2, self.full).permute(0, 2, 1) * torch.arange(4.0)


def test_a_permute_that_moves_the_channels_keeps_its_selection():
    model, count = folded(Transposed(), torch.randn(2, 4, 3))
    assert count == 0


def test_a_purged_swins_windows_lose_their_padding():
    x = torch.randn(2, 3, 32, 32)
    gated = ctrlsparse.gate(randomised(small_swin()), x).eval()
    set_pattern(gated, 1)
    purged = purge(gated, x)
    before = calls(purged, torch.index_select, torch.cat)
    form = deploy_form(copy.deepcopy(purged), x)
    assert before >= 20 and form.folded_index_ops >= 0.7 * before
    with torch.no_grad():
        assert max_error(form.model(x), gated(x)) <= 1e-5


class Split(nn.Module):
    """One Linear's output read only by index_selects of its features (attention's q, k, v)."""

    def __init__(self, rows: list[list[int]]):
        super().__init__()
        self.qkv = nn.Linear(4, 9)
        for number, index in enumerate(rows):
            self.register_buffer(f"rows{number}", torch.tensor(index))
        self.parts = len(rows)

    def forward(self, x):
        y = self.qkv(x)
        parts = [torch.index_select(y, -1, getattr(self, f"rows{n}")) for n in range(self.parts)]
        return sum(part.sum(-1, keepdim=True) * (n + 1) for n, part in enumerate(parts)) + parts[0][..., :1]


@pytest.mark.parametrize(
    ("rows", "left", "out"),
    [
        ([[0, 1, 2], [3, 4, 5], [6, 7, 8]], 0, 9),  # the dense layout: narrow views of the same layer
        ([[6, 1], [8, 0, 3], [2]], 0, 6),  # a purge's: rows picked and reordered, three fewer
        ([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]], 2, 9),  # overlapping beyond the layer's rows: more MACs, left alone
    ],
)
def test_a_linear_split_by_index_selects_becomes_narrow_views_of_one_linear(rows, left, out):
    x = torch.randn(2, 3, 4)
    model, count = folded(Split(rows), x)
    assert calls(model, torch.index_select) == left and count == len(rows) - left
    assert model.qkv.out_features == out


def test_the_registered_vits_inference_form_has_no_index_op_left():
    model, x = build("vit")
    set_gates(model, "random", 3)
    with torch.no_grad():
        reference = model(x)
    for purged in (purge(model, x), purge_dense(model, x)):
        before = calls(purged, torch.index_select, torch.cat)
        form = deploy_form(purged, x)
        assert form.folded_index_ops == before - 1 >= 9  # all but the class token's cat
        assert calls(form.model, torch.index_select) == 0 and calls(form.model, torch.cat) == 1
        assert form.summary()["deploy_folded_index_ops"] == form.folded_index_ops
    with torch.no_grad():
        assert max_error(deploy_form(purge(model, x), x).model(x), reference) <= 1e-5


def test_a_torchvision_vits_blocks_read_their_rank_without_the_padding():
    x = torch.randn(2, 3, 16, 16)
    gated = ctrlsparse.gate(randomised(small_vit()), x).eval()
    set_pattern(gated, 1)
    purged = purge(gated, x)
    rank_reads = [n for n in purged.graph.nodes if n.op == "call_method" and n.target == "dim"]
    assert rank_reads and all(n.args[0].target is torch.index_select for n in rank_reads)  # padded for .dim()
    form = deploy_form(copy.deepcopy(purged), x)
    assert form.folded_index_ops >= 2 * len(rank_reads)
    for node in (n for n in form.model.graph.nodes if n.op == "call_method" and n.target == "dim"):
        assert node.args[0].target not in (torch.index_select, torch.cat)
    with torch.no_grad():
        assert max_error(form.model(x), gated(x)) <= 1e-5
