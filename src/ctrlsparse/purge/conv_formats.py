"""Each convolution in the memory format that runs it faster: a model's convs need not share one.

oneDNN's CPU convolutions run a small map much faster in NCHW and a large one faster in channels-last. On an
Intel Xeon VM (2 threads, batch 16, each conv alone: ``benchmarks/conv_formats.py --model resnet18 --size 64``),
torchvision's resnet18 at 64x64 input: its 3x3 convs of 512 channels on 2x2 maps took 1.39-1.41 ms in NCHW and
3.54-3.68 ms in channels-last; of 256 channels on 4x4, 1.00 and 1.29 ms; of 64 channels on 16x16, 1.02-1.06 and
0.88-0.94 ms. A whole-model format leaves one end of such a model in its slow format (and the latency table,
which timed every layer in the dense model's one format, predicted 2.5x the time of those last convs for a
purged model that ran them in NCHW).

:func:`format_times` times one conv alone in both formats on each serving batch (its input already in that
format); :func:`planned_formats` picks the formats of the convs in the order the model calls them, a conversion
counted wherever one differs from the one before, so that a conv a little faster in the other format than its
neighbours stays in theirs. A conv's time alone leaves out what its format costs the ops around it (the
same command: the dense resnet18 at batch 1 took 6.34 ms in NCHW, 3.21 more than its convs alone, and 4.98 ms
in channels-last, 2.23 more), so the plans over all the batches and over each batch alone are candidates, and the purge times
them as whole models beside the uniform formats (:func:`~ctrlsparse.purge.deploy.fastest`). :func:`mixed_formats`
puts each conv of a traced model in its format: its 4-d parameters, and a ``contiguous(memory_format=...)``
before it where its input, as the model computes it, is in the other (one per tensor and format, shared by the
convs that read it; the ops between convs keep their input's format). :func:`conv_format` is one conv's own
choice, what the latency table times each layer in (:mod:`ctrlsparse.cost.latency_table`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, fx, nn

from ctrlsparse.latency.measure import least_ms, never_much_slower

FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def format_times(conv: nn.Conv2d, input_shape: Sequence[int], batches: Sequence[int]) -> dict[str, list[float]]:
    """``conv``'s least ms per call in each format (its input already in it) at each of ``batches``."""
    device = conv.weight.device
    ms: dict[str, list[float]] = {name: [] for name in FORMATS}
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, *input_shape[1:], device=device)
            for name, memory_format in FORMATS.items():
                module = copy.deepcopy(conv).to(memory_format=memory_format)
                ms[name].append(least_ms(module, x.contiguous(memory_format=memory_format), repeats=7, budget_s=0.2))
    return ms


def conversion_ms(input_shape: Sequence[int], batches: Sequence[int], device: torch.device) -> list[float]:
    """The least ms of converting a map of ``input_shape`` (at batch 1) from NCHW to channels-last, per batch."""

    def convert(x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    return [
        least_ms(convert, torch.randn(batch, *input_shape[1:], device=device), repeats=7, budget_s=0.1)
        for batch in batches
    ]


def conv_format(conv: nn.Conv2d, input_shape: Sequence[int], batches: Sequence[int]) -> str:
    """``"channels_last"`` or ``"contiguous"``: the format that runs ``conv`` alone (its input at batch 1:
    ``input_shape``) faster over ``batches`` (:func:`never_much_slower`)."""
    return never_much_slower(format_times(conv, input_shape, batches))


def conv_inputs(model: fx.GraphModule, example: Tensor) -> dict[str, tuple[int, ...]]:
    """Each called Conv2d's input shape (by its target) on ``example``."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())

    def seen(name: str):
        def hook(module: nn.Module, args: tuple) -> None:  # a pre-hook that returns something replaces the args
            shapes.setdefault(name, tuple(args[0].shape))

        return hook

    hooks = [modules[name].register_forward_pre_hook(seen(name)) for name in _conv_targets(model)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _conv_targets(model: fx.GraphModule) -> list[str]:
    modules = dict(model.named_modules())
    targets = [str(n.target) for n in model.graph.nodes if n.op == "call_module"]
    return list(dict.fromkeys(t for t in targets if type(modules.get(t)) is nn.Conv2d))


def mixed_formats(model: fx.GraphModule, formats: dict[str, str], example: Tensor) -> fx.GraphModule:
    """A copy of ``model`` with each conv (by target) in ``formats[target]``: its parameters, and its input
    converted where the model hands it over in the other format (see the module doc)."""
    mixed = copy.deepcopy(model)
    for target, name in formats.items():
        mixed.get_submodule(target).to(memory_format=FORMATS[name])
    graph = mixed.graph
    made: dict[tuple[fx.Node, str], fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_module" or str(node.target) not in formats or not isinstance(node.args[0], fx.Node):
            continue
        source, name = node.args[0], formats[str(node.target)]
        if (source, name) not in made:
            with graph.inserting_before(node):
                made[source, name] = graph.call_method("contiguous", (source,), {"memory_format": FORMATS[name]})
        node.args = (made[source, name], *node.args[1:])
    mixed.recompile()
    needless = _needless(mixed, list(made.values()), example)
    for node in needless:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    mixed.recompile()
    return mixed


def _needless(model: fx.GraphModule, conversions: list[fx.Node], example: Tensor) -> list[fx.Node]:
    """The conversions whose input already is in their format when the model runs ``example`` (no-ops)."""
    wanted = {node: node.kwargs["memory_format"] for node in conversions}
    needless: list[fx.Node] = []

    class Probe(fx.Interpreter):
        def run_node(self, n: fx.Node):
            if n in wanted:
                (value, *_), _ = self.fetch_args_kwargs_from_env(n)
                if isinstance(value, Tensor) and value.is_contiguous(memory_format=wanted[n]):
                    needless.append(n)
            return super().run_node(n)

    with torch.no_grad():
        Probe(model).run(example)
    return needless


def planned_formats(times: Sequence[dict[str, list[float]]], conversions: Sequence[list[float]]) -> list[str]:
    """Formats for convs called in this order (``times[i]``: :func:`format_times`; ``conversions[i]``: the
    cost of converting conv i's input, per batch) that make the least sum, over the batches, of each batch's
    time (the convs' and a conversion wherever a conv's format differs from the one before it; the input comes
    in NCHW) over that batch's best whole-model format: a conv slightly faster in the other format than its
    neighbours stays in theirs (a dynamic programme over the two formats)."""
    batches = len(conversions[0]) if conversions else 0
    scale = [1.0 / max(min(sum(t[name][b] for t in times) for name in FORMATS), 1e-9) for b in range(batches)]

    def weighted(values: Sequence[float]) -> float:
        return sum(v * w for v, w in zip(values, scale, strict=True))

    cost: dict[str, tuple[float, list[str]]] = {"contiguous": (0.0, [])}  # before the first conv: the input
    for conv, convert in zip(times, conversions, strict=True):
        step = {}
        for name in FORMATS:
            options = [(total + (weighted(convert) if before != name else 0.0), path)
                       for before, (total, path) in cost.items()]  # fmt: skip
            total, path = min(options, key=lambda option: option[0])
            step[name] = (total + weighted(conv[name]), [*path, name])
        cost = step
    return min(cost.values(), key=lambda entry: entry[0])[1] if times else []


def chosen_formats(model: fx.GraphModule, example: Tensor, batches: Sequence[int]) -> list[dict[str, str]]:
    """Plans for the called Conv2d modules' formats (by target), mixed ones only: :func:`planned_formats` of
    their times alone (:func:`format_times`) and their inputs' conversions over ``batches``, and over each batch
    alone when there are several (whole models are timed to choose among them: a conv's time alone leaves out
    what its format costs the ops around it)."""
    shapes = conv_inputs(model, example)
    modules = dict(model.named_modules())
    times = [format_times(modules[target], shape, batches) for target, shape in shapes.items()]
    conversions = [conversion_ms(shape, batches, example.device) for shape in shapes.values()]
    subsets = [list(range(len(batches)))] + ([[b] for b in range(len(batches))] if len(batches) > 1 else [])
    plans: list[dict[str, str]] = []
    for subset in subsets:
        picked_times = [{name: [t[name][b] for b in subset] for name in t} for t in times]
        picked_conversions = [[c[b] for b in subset] for c in conversions]
        plan = dict(zip(shapes, planned_formats(picked_times, picked_conversions), strict=True))
        if len(set(plan.values())) > 1 and plan not in plans:
            plans.append(plan)
    return plans
