"""Each conv in its own memory format (purge/conv_formats.py): the same function, each conv's weights and input in
the format asked, a conversion only where the model hands a conv its input in the other format, and the rule
that picks the format from times (no timed test: the choice's speed is shown by ``benchmarks/conv_formats.py``)."""

from __future__ import annotations

import pytest
import torch
from test_purge import gated_torchvision, set_gates
from torch import fx, nn

from ctrlsparse.latency.measure import never_much_slower
from ctrlsparse.purge import deploy_form, purge
from ctrlsparse.purge.conv_formats import FORMATS, chosen_formats, mixed_formats, planned_formats
from ctrlsparse.purge.deploy import fold_batchnorms


class Branches(nn.Module):
    """A stem, two convs reading its output (a block and its shortcut) and a last conv after their sum."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 8, 1)
        self.last = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        return self.last(torch.relu(self.block(y) + self.shortcut(y))).mean((2, 3))


def conversions(model: fx.GraphModule) -> list[tuple[str, torch.memory_format]]:
    return [
        (str(n.args[0]), n.kwargs["memory_format"])
        for n in model.graph.nodes
        if n.op == "call_method" and n.target == "contiguous"
    ]


def each_conv_sees(model: nn.Module, x: torch.Tensor) -> dict[str, bool]:
    """Per conv, whether its input and weight are both channels-last when ``model`` runs ``x``."""
    seen = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, a, name=name: seen.__setitem__(
                name,
                a[0].is_contiguous(memory_format=torch.channels_last)
                and m.weight.is_contiguous(memory_format=torch.channels_last),
            )
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        ({"stem": "contiguous", "block": "contiguous", "shortcut": "contiguous", "last": "contiguous"}, []),
        (
            {"stem": "channels_last", "block": "channels_last", "shortcut": "channels_last", "last": "contiguous"},
            [("x", torch.channels_last), ("relu_1", torch.contiguous_format)],
        ),
        (  # the block and its shortcut read the stem's output: one conversion for both
            {"stem": "contiguous", "block": "channels_last", "shortcut": "channels_last", "last": "channels_last"},
            [("relu", torch.channels_last)],
        ),
    ],
)
def test_each_conv_runs_in_its_format_with_a_conversion_only_where_its_input_is_in_the_other(formats, expected):
    torch.manual_seed(0)
    model = fx.symbolic_trace(Branches().eval())
    x = torch.randn(2, 3, 6, 6)
    mixed = mixed_formats(model, formats, x)
    assert conversions(mixed) == expected
    seen = each_conv_sees(mixed, x)
    assert seen == {name: fmt == "channels_last" for name, fmt in formats.items()}
    with torch.no_grad():
        assert torch.allclose(mixed(x), model(x), atol=1e-5)
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    ("ms", "chosen"),
    [
        ({"channels_last": [3.4, 1.0], "contiguous": [1.25, 1.1]}, "contiguous"),  # 2.7x slower at 16, 1.1x at 1
        ({"channels_last": [0.67, 0.10], "contiguous": [0.80, 0.12]}, "channels_last"),
        ({"channels_last": [1.0, 2.0], "contiguous": [1.5, 1.0]}, "contiguous"),  # worst 2.0 against 1.5
        ({"channels_last": [1.0], "contiguous": [1.0]}, "channels_last"),  # a tie
    ],
)
def test_the_format_never_much_slower_over_the_batches_is_chosen(ms, chosen):
    assert never_much_slower(ms) == chosen


def test_every_conv_of_a_purged_resnet_is_given_a_format_and_the_timed_form_keeps_its_function():
    _, gated, x = gated_torchvision("resnet18")
    set_gates(gated, "random", 3)
    plain = purge(gated, x)
    folded, _ = fold_batchnorms(plain)
    plans = chosen_formats(folded, x, [4, 1])
    assert len(plans) <= 3 and all(len(plan) == 20 and set(plan.values()) == set(FORMATS) for plan in plans)
    form = deploy_form(plain, x, timing=(torch.randn(4, *x.shape[1:]), x[:1]))
    assert form.memory_format in ("channels_last", "contiguous", "mixed")
    summary = form.summary()
    assert summary["deploy_convs"] == 20
    if form.memory_format == "mixed":
        assert 0 < summary["deploy_channels_last_convs"] < 20
    test = torch.randn(3, *x.shape[1:])
    with torch.no_grad():
        reference = plain(test)
        assert float((form.model(test) - reference).abs().max()) <= 1e-4 * max(1.0, float(reference.abs().max()))
    targets = [n.target for n in folded.graph.nodes if n.op == "call_module" and "conv" in str(n.target)]
    targets += [n.target for n in folded.graph.nodes if n.op == "call_module" and "downsample" in str(n.target)]
    alternating = {str(name): "contiguous" if i % 2 else "channels_last" for i, name in enumerate(targets)}
    assert len(alternating) == 20
    mixed = mixed_formats(folded, alternating, x)
    with torch.no_grad():
        assert float((mixed(test) - reference).abs().max()) <= 1e-4 * max(1.0, float(reference.abs().max()))


def times(*pairs: tuple[float, float]) -> list[dict[str, list[float]]]:
    """Per conv (channels-last ms, NCHW ms) at one batch."""
    return [{"channels_last": [cl], "contiguous": [nchw]} for cl, nchw in pairs]


@pytest.mark.parametrize(
    ("convs", "convert", "expected"),
    [
        ([(1.0, 2.0), (1.0, 2.0), (1.0, 2.0)], 0.1, ["channels_last"] * 3),
        ([(1.0, 2.0), (1.0, 0.9), (1.0, 2.0)], 0.2, ["channels_last"] * 3),  # 0.1 faster, two 0.2 switches
        ([(1.0, 2.0), (1.0, 0.5), (1.0, 2.0)], 0.2, ["channels_last", "contiguous", "channels_last"]),
        ([(1.0, 2.0), (3.4, 1.3), (3.3, 1.3)], 0.2, ["channels_last", "contiguous", "contiguous"]),  # resnet18's end
        ([(1.0, 1.1)], 0.5, ["contiguous"]),  # the input comes in NCHW: converting it costs more than it buys
    ],
)
def test_a_plan_switches_format_only_where_the_convs_after_gain_more_than_the_conversion(convs, convert, expected):
    assert planned_formats(times(*convs), [[convert]] * len(convs)) == expected


def test_a_plan_weighs_each_batch_by_its_own_time():
    """At batch 16 the second conv is 0.5 ms faster in NCHW, at batch 1 0.1 ms slower: at batch 1's scale
    (2 ms a model, against 20) that loss counts as 1 ms at batch 16's."""
    convs = [
        {"channels_last": [10.0, 1.0], "contiguous": [12.0, 1.2]},
        {"channels_last": [10.0, 0.9], "contiguous": [9.5, 1.0]},
    ]
    assert planned_formats(convs, [[0.0, 0.0], [0.0, 0.0]]) == ["channels_last", "channels_last"]
    assert planned_formats([{k: v[:1] for k, v in c.items()} for c in convs], [[0.0]] * 2) == [
        "channels_last",
        "contiguous",
    ]
