"""The inference form of a purged (or dense) model: what the purge saves, exports and times.

Rewrites every deployment runtime makes (onnxruntime, TensorRT and oneDNN's graph mode do them), applied here
so that the model a user loads from ``purged.pt2`` runs as fast as the one the purge timed:

- **BatchNorm folded into the Conv before it** (eval mode: the running statistics and affine become the conv's
  weight scale and bias, :func:`torch.nn.utils.fusion.fuse_conv_bn_eval`), when the conv's output goes to that
  BatchNorm alone. A purged model's BatchNorms cost as much as its convs' memory traffic: a share of the time that
  falls only with the channels, not with the MACs.
- **Fractional eval gates folded into the layers that read them** (:mod:`~ctrlsparse.purge.gate_scales`): the
  purge's one ``mul`` per gated tensor, where every reader is a Conv or Linear.
- **Re-indexing folded away** (:mod:`~ctrlsparse.purge.index_folds`): the purge's ``index_select`` s and zero
  pads where only a shape is read from them, where a Linear reads them (its weight columns gathered instead) and
  where they split a Linear's output (narrow views of one Linear with its rows in their order: attention's q, k
  and v). The registered ViT's every-gate-open model loses 9 of its 10 index ops (the class token's cat stays),
  its purged model at half the MACs 14 of 15 (``benchmarks/index_folds.py``).
- **Attention above rank 4 written out** (:mod:`~ctrlsparse.purge.attention_rank`): a Swin's windowed
  attention, emitted at rank 5, as the matmuls and softmax torch's ONNX exporter takes.
- **The memory formats that run it faster**: channels-last, NCHW, or each conv in its own
  (:mod:`~ctrlsparse.purge.conv_formats`: oneDNN runs a small map much faster in NCHW, a large one in
  channels-last), timed side by side as whole models on a batch of the size it will serve (``timing``:
  interleaved calls, medians; without ``timing``, channels-last). ``timing`` may be several batches (the purge
  job: its latency batch and batch 1): then the form that is never much slower, the one whose worst ratio to the
  fastest over the batches is the lesser (:func:`fastest`). Chosen at batch 16 first, a steered resnet18 at 0.3
  of the MACs (``benchmarks/latency.py --patterns steered``) was put in NCHW, faster there, and ran at 0.93 of
  the dense model's time at batch 1, where channels-last was the faster. oneDNN's CPU convolutions take any
  channel count in NHWC but reorder an NCHW tensor whose count is not a multiple of their block (16 floats with
  AVX-512) on every call, which a purged model's odd counts (43 of 64) pay and the dense model's do not:
  torchvision's resnet18 at 64x64, batch 16, half the MACs, runs at 0.69 of the dense model's time as built and
  at 0.56 with both rewrites applied to both (``benchmarks/latency.py --form plain`` / default). Its last stage
  (2x2 maps) runs 2.5x faster in NCHW: on an Intel Xeon VM the dense resnet18 took 27.3 ms in NCHW, 29.8 in
  channels-last and 23.1 mixed at batch 16 (``benchmarks/conv_formats.py --model resnet18 --size 64``).

The form is checked on a random batch: its output must match the plain model's (``tolerance``, relative to the
output's scale); a model whose channels-last run fails (a ``view`` of a conv map) or differs stays in NCHW, and a
fold that changes the output is not kept. :class:`DeployForm` says what was applied.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ctrlsparse.latency.measure import interleaved_times, never_much_slower
from ctrlsparse.purge.attention_rank import written_out_attention
from ctrlsparse.purge.conv_formats import chosen_formats, mixed_formats
from ctrlsparse.purge.gate_scales import fold_gate_scales, foldable_scales
from ctrlsparse.purge.index_folds import fold_index_ops, index_ops_in

TOLERANCE = 1e-4  # max |form - plain| / max(1, max |plain|) on the example


@dataclass(frozen=True)
class DeployForm:
    """A model in its inference form and what was applied: ``folded`` BatchNorms, ``memory_format``; ``plain``:
    the model it was made from (whose parameters, BatchNorms included, are what the cost model counts)."""

    model: nn.Module
    folded: int
    memory_format: str  # "channels_last", "contiguous" or "mixed" (each conv in its own: conv_formats.py)
    plain: nn.Module
    channels_last_convs: int = 0  # of the model's Conv2d modules, those in channels-last
    folded_scales: int = 0  # fractional eval gates' multiplies folded into their readers (gate_scales.py)
    folded_index_ops: int = 0  # index_select / cat nodes folded away (index_folds.py)
    written_out_attention: int = 0  # attention calls of rank 5 or more written out as matmuls (attention_rank.py)

    def summary(self) -> dict[str, int | str]:
        return {
            "deploy_folded_batchnorms": self.folded,
            "deploy_folded_gate_scales": self.folded_scales,
            "deploy_folded_index_ops": self.folded_index_ops,
            "deploy_written_out_attention": self.written_out_attention,
            "deploy_memory_format": self.memory_format,
            "deploy_channels_last_convs": self.channels_last_convs,
            "deploy_convs": sum(type(m) is nn.Conv2d for m in self.model.modules()),
        }


def fold_batchnorms(model: nn.Module) -> tuple[fx.GraphModule, int]:
    """A copy of ``model`` (eval mode, traced with torch.fx unless it is a GraphModule) with every BatchNorm that
    reads a Conv's output alone folded into that Conv; and how many were folded."""
    module = copy.deepcopy(model).eval()
    if not isinstance(module, fx.GraphModule):
        module = fx.symbolic_trace(module)
    modules = dict(module.named_modules())
    folded = 0
    for node in list(module.graph.nodes):
        norm = modules.get(str(node.target)) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not _foldable(source, modules, norm):
            continue
        conv = modules[str(source.target)]
        module.set_submodule(str(source.target), fuse_conv_bn_eval(conv, norm))
        node.replace_all_uses_with(source)
        module.graph.erase_node(node)
        folded += 1
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return module, folded


def _foldable(source, modules: dict[str, nn.Module], norm: nn.Module) -> bool:
    """Whether ``norm`` reads the output of a Conv called once (a shared conv's other calls would change too)
    that nothing else reads."""
    if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
        return False
    calls = [n for n in source.graph.nodes if n.op == "call_module" and n.target == source.target]
    if len(calls) != 1:
        return False
    conv = modules.get(str(source.target))
    return (
        type(conv) in (nn.Conv1d, nn.Conv2d, nn.Conv3d)
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.num_features == conv.out_channels
        and conv.weight.dim() == {nn.BatchNorm1d: 3, nn.BatchNorm2d: 4, nn.BatchNorm3d: 5}.get(type(norm), -1)
    )


def _close(output, reference, tolerance: float) -> bool:
    if isinstance(reference, Tensor):
        if not isinstance(output, Tensor) or output.shape != reference.shape:
            return False
        if not reference.numel():
            return True
        scale = max(1.0, float(reference.abs().max()))
        return bool((output - reference).abs().max() <= tolerance * scale)
    if isinstance(reference, tuple | list):
        if not isinstance(output, tuple | list) or len(output) != len(reference):
            return False
        return all(_close(o, r, tolerance) for o, r in zip(output, reference, strict=True))
    return output == reference


def deploy_form(
    model: nn.Module,
    example: Tensor,
    timing: Tensor | Sequence[Tensor] | None = None,
    tolerance: float = TOLERANCE,
    index_folds: bool = True,
    attention_written_out: bool = True,
) -> DeployForm:
    """``model`` (eval mode; not changed) in its inference form, checked on a random batch of ``example``'s
    shape; the memory format timed on ``timing`` (a batch, or batches in order of weight) when given (see the
    module doc). ``index_folds=False`` leaves the purge's index ops as it emitted them,
    ``attention_written_out=False`` its attention above rank 4 (``benchmarks/index_folds.py`` times them)."""
    plain = model.eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn((2, *example.shape[1:]), generator=generator).to(example.device, example.dtype)
    with torch.no_grad():
        reference = plain(example)
        try:
            folded, count = fold_batchnorms(plain)
            if not _close(folded(example), reference, tolerance):
                folded, count = copy.deepcopy(plain), 0
        except Exception:  # a model fx cannot trace keeps its BatchNorms
            folded, count = copy.deepcopy(plain), 0
        rewrite = partial(_rewritten, example=example, reference=reference, tolerance=tolerance)
        folded, scales = rewrite(folded, lambda module, _: fold_gate_scales(module), foldable_scales)
        folded, index_ops = rewrite(folded, fold_index_ops, index_ops_in) if index_folds else (folded, 0)
        attention_needed = _calls_attention if attention_written_out else lambda _: False
        folded, attention = rewrite(folded, written_out_attention, attention_needed)
        if not any(isinstance(m, nn.Conv2d) for m in folded.modules()):
            return DeployForm(folded, count, "contiguous", plain, 0, scales, index_ops, attention)
        last = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        runs = _runs(last, example, reference, tolerance)
    candidates = {"channels_last": last} if runs else {}  # channels-last first: the untimed choice, and on ties
    candidates["contiguous"] = folded
    if timing is not None:
        for number, mixed in enumerate(_mixed(folded, example, timing, reference, tolerance)):
            candidates[f"mixed {number}"] = mixed
    chosen = fastest(candidates, timing) if timing is not None and len(candidates) > 1 else next(iter(candidates))
    model = candidates[chosen]
    return DeployForm(model, count, chosen.split()[0], plain, _channels_last_convs(model), scales, index_ops, attention)


def _rewritten(
    folded: nn.Module, rewrite, needed, example: Tensor, reference, tolerance: float
) -> tuple[nn.Module, int]:
    """``folded`` through ``rewrite(copy, example)`` (in place on a copy, returning how much it changed) when
    ``needed(folded)`` says there is something to rewrite (most models: no copy made), it changed anything and
    the copy computes the same; and how much."""
    if not isinstance(folded, fx.GraphModule) or not needed(folded):
        return folded, 0
    candidate = copy.deepcopy(folded)
    try:
        changed = rewrite(candidate, example)
    except Exception:  # a graph the shape propagation cannot run: the model stays as it is
        return folded, 0
    if changed and _runs(candidate, example, reference, tolerance):
        return candidate, changed
    return folded, 0


def _calls_attention(module: fx.GraphModule) -> bool:
    return any(node.target is F.scaled_dot_product_attention for node in module.graph.nodes)


def _runs(model: nn.Module, example: Tensor, reference, tolerance: float) -> bool:
    """Whether ``model`` runs ``example`` (an NCHW input, as a user passes it) to ``reference``'s output."""
    try:
        with torch.no_grad():
            return _close(model(example), reference, tolerance)
    except Exception:  # e.g. a view of a channels-last map (RuntimeError); whatever fails keeps NCHW
        return False


def _channels_last_convs(model: nn.Module) -> int:
    return sum(
        type(m) is nn.Conv2d and m.weight.is_contiguous(memory_format=torch.channels_last) for m in model.modules()
    )


def _mixed(folded: nn.Module, example: Tensor, timing, reference, tolerance: float) -> list[nn.Module]:
    """``folded`` with its convs in mixed formats (:mod:`~ctrlsparse.purge.conv_formats`), each plan that runs
    to the same output."""
    if not isinstance(folded, fx.GraphModule):
        return []
    try:
        plans = chosen_formats(folded, example, [batch.shape[0] for batch in _batches(timing)])
        models = [mixed_formats(folded, plan, example) for plan in plans]
    except Exception:  # a graph the probe cannot run; the uniform forms stand
        return []
    return [model for model in models if _runs(model, example, reference, tolerance)]


def _batches(timing: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [timing] if isinstance(timing, Tensor) else list(timing)


def deployed(
    gated: nn.Module, example: Tensor, timing: Tensor | Sequence[Tensor] | None = None, dense: bool = False
) -> DeployForm:
    """The purged ``gated`` model (``dense``: its every-gate-open baseline, :func:`~ctrlsparse.purge.purge_dense`,
    with its weights re-drawn, :func:`redrawn_`) in its inference form: what the purge job saves and times, and
    what a latency budget is measured on."""
    from ctrlsparse.purge.core import purge, purge_dense

    if dense:
        return deploy_form(redrawn_(purge_dense(gated, example)), example, timing)
    return deploy_form(purge(gated, example), example, timing)


def redrawn_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw ``model``'s weights and BatchNorm statistics in place (each module's own initialisation, seeded;
    the caller's random streams untouched): the dense baseline is timed for its architecture, not its values. A
    trained run's every-gate-open model opens channels its gates kept shut, whose BatchNorm variances are ~0
    (1e-22 in a digits mobilenet_v2): scaled by 1/sqrt(eps), they make folding those BatchNorms change the
    output by 3e-3 of its scale, so the fold was refused and that dense model ran 3.5x slower than the same
    architecture at batch 128 (231 against 67 ms: ``benchmarks/dense_baseline.py RUN_DIR``), and its purged model
    looked that much faster."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.cpu()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not model and callable(reset):
                reset()
    return model.to(device)


def fastest(models: dict[str, nn.Module], batches: Tensor | Sequence[Tensor], seconds: float = 0.3) -> str:
    """The name of the model never much slower than the fastest over ``batches`` (interleaved calls, medians;
    :func:`~ctrlsparse.latency.measure.never_much_slower`; the first named on a tie)."""
    ms: dict[str, list[float]] = {name: [] for name in models}
    for batch in _batches(batches):
        times = interleaved_times(models, batch, seconds=seconds, min_rounds=7)
        for name, values in times.items():
            ms[name].append(statistics.median(values))
    return never_much_slower(ms)
