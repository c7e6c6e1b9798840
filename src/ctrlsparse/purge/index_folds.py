"""The purge's re-indexing folded away where a shape read or a Linear layer makes it unnecessary.

The purge re-indexes a tensor with ``index_select`` wherever a reader wants other channels than its producer
holds, zero-padded first (a ``cat`` with a zero slice) where it wants channels the producer lost
(:mod:`~ctrlsparse.purge.build`); attention's q, k and v are each selected from the one qkv projection. Every
such op copies the whole activation, and at batch 1 on a small model its call costs as much as the MACs pruning
saved. Four exact rewrites of the inference form remove them:

- **shape reads**: ``x.shape[k]``, ``x.size(k)``, ``x.dim()`` or ``x.ndim`` of a tensor re-indexed along
  another dim reads the tensor it was re-indexed from (a ViT's class token is expanded to the batch size of the
  padded patch tokens, torchvision's encoder blocks assert the rank of theirs: the padding, the cat and the
  index_select went only to that read);
- **selections composed**: an ``index_select`` of an ``index_select`` (each zero-padded or not) along one dim
  is one ``index_select`` of the first one's source, and the zero pads of one source are one (a trained ViT's
  head whose q and k were pruned and its v kept: three pads and six selects became one pad and three); a
  selection of the last dim passes below a view, reshape, permute, roll or contiguous that keeps that dim last
  and whole, to compose with the next (a Swin block's window partition and its reverse view their tokens at the
  full width, between a padded select to it and a select back: torchvision's swin_t lost 189 of 231 index ops);
- **gathers into a Linear**: a Linear reading its input features through ``index_select`` s, zero pads and
  ``getitem`` s of other dims reads their source (or one ``index_select`` of the features it uses), with its
  weight columns gathered (summed where a feature is read twice; a padded zero's column dropped): a ViT's head
  reading the class token of its final norm;
- **split outputs**: a Linear whose every reader is an ``index_select`` of its output features becomes one
  Linear with its rows in the readers' order, each reader a ``narrow`` view of it: attention's q, k and v out of
  one qkv projection, three copies fewer a block.

Each rewrite keeps the layer's MACs or lowers them; :func:`fold_index_ops` applies them to a GraphModule in
place (:func:`~ctrlsparse.purge.deploy.deploy_form` checks the outcome against the model before keeping it).
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ctrlsparse.purge.index_nodes import device_of, new_buffer, padded_source, rank_of, reindexed, selection
from ctrlsparse.purge.linear_folds import gathers_into_linears, split_outputs


def fold_index_ops(module: fx.GraphModule, example: Tensor) -> int:
    """Apply the four rewrites to ``module`` in place (shapes from running ``example``); the number of index ops
    (``index_select``, ``cat``) its graph lost."""
    before = index_ops_in(module)
    ShapeProp(module).propagate(example)  # the nodes the rewrites make carry their shapes themselves
    for rewrite in (_shape_reads, _composed_selects, gathers_into_linears, split_outputs):
        module.graph.eliminate_dead_code()  # a dead node's read is no reader
        rewrite(module)
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return before - index_ops_in(module)


def index_ops_in(module: nn.Module) -> int:
    """``index_select`` and ``cat`` nodes of ``module``'s graph (0: not a GraphModule)."""
    if not isinstance(module, fx.GraphModule):
        return 0
    return sum(n.op == "call_function" and n.target in (torch.index_select, torch.cat) for n in module.graph.nodes)


def _shape_dims_read(reader: fx.Node, node: fx.Node) -> list[int] | None:
    """The dims of ``node``'s shape that ``reader`` reads (``node.shape[k]``, ``node.size(k)``; none for
    ``node.dim()``, ``node.ndim``), or None when it reads anything else of ``node``."""
    if reader.args[:1] != (node,) or any(node is value for value in (*reader.args[1:], *reader.kwargs.values())):
        return None
    method, attribute = reader.op == "call_method", reader.op == "call_function" and reader.target is getattr
    if (method and reader.target == "dim" and len(reader.args) == 1) or (attribute and reader.args[1] == "ndim"):
        return []  # the rank
    if method and reader.target == "size" and len(reader.args) == 2 and isinstance(reader.args[1], int):
        return [reader.args[1]]
    if attribute and reader.args[1] == "shape":
        picked = [user.args[1] for user in reader.users if user.target is operator.getitem]
        if len(picked) == len(reader.users) and all(isinstance(k, int) for k in picked):
            return picked
    return None


def _shape_reads(module: fx.GraphModule) -> None:
    changed = True
    while changed:
        changed = False
        for node in list(module.graph.nodes):
            found = reindexed(node)
            if found is None:
                continue
            source, dim = found
            rank = rank_of(node)
            for reader in list(node.users):
                dims = _shape_dims_read(reader, node)
                if dims is not None and all(k % rank != dim for k in dims):
                    reader.replace_input_with(node, source)
                    changed = True


def _composed_selects(module: fx.GraphModule) -> None:
    """An ``index_select`` of an ``index_select`` (each zero-padded or not) along one dim: one ``index_select`` of
    the first one's source, and the zero pads of one source shared (a head whose q and k were pruned and its v
    kept: three pads and six selects became one pad and three)."""
    graph, pads = module.graph, {}

    def pad(source: fx.Node, dim: int) -> fx.Node:
        if (source, dim) not in pads:
            with graph.inserting_after(source):
                one = graph.call_method("narrow", (source, dim, 0, 1))
            with graph.inserting_after(one):
                zero = graph.call_function(torch.zeros_like, (one,))
            with graph.inserting_after(zero):
                pads[source, dim] = graph.call_function(torch.cat, ([source, zero], dim))
            meta = source.meta["tensor_meta"]  # the shapes the later rewrites read, as ShapeProp would find them
            for made, size in ((one, 1), (zero, 1), (pads[source, dim], meta.shape[dim] + 1)):
                made.meta["tensor_meta"] = meta._replace(
                    shape=torch.Size((*meta.shape[:dim], size, *meta.shape[dim + 1 :]))
                )
        return pads[source, dim]

    def selected(source: fx.Node, dim: int, index: Tensor, like: fx.Node) -> fx.Node:
        """``source`` at ``index`` along ``dim`` (an index of its width or more: a zero), in place of ``like``."""
        width = int(source.meta["tensor_meta"].shape[dim])
        index = index.clamp(max=width)  # every zero at the pad's one slice
        if torch.equal(index, torch.arange(width)):
            return source
        read = pad(source, dim) if bool((index == width).any()) else source
        name = new_buffer(module, "fold_index", index.to(device_of(module)))
        with graph.inserting_before(like):
            value = graph.call_function(torch.index_select, (read, dim, graph.get_attr(name)))
        value.meta = dict(like.meta)  # the same tensor
        return value

    for node in list(graph.nodes):
        found = selection(module, node) if node.op == "call_function" else None
        if found is None:
            value = _sunk(module, node, selected)
        else:
            source, dim, index = found
            inner = selection(module, source) if source.op == "call_function" else None
            if inner is not None and inner[1] == dim:  # compose: zeros stay zeros
                index = torch.where(index < len(inner[2]), inner[2][index.clamp(max=len(inner[2]) - 1)], 1 << 62)
                source = inner[0]
            elif padded_source(node.args[0], dim) is None:
                continue  # one plain index_select: nothing to compose or share
            value = selected(source, dim, index, node)
        if value is not None:
            node.replace_all_uses_with(value)
            graph.erase_node(node)


def _sunk(module: fx.GraphModule, node: fx.Node, selected) -> fx.Node | None:
    """``node``, a view, reshape, permute, roll or contiguous that keeps its input's last dim last and whole, on a
    selection of that dim read by nothing else: the same op on the selection's source, then the selection (which
    the selections after it then compose with: a Swin block's window partition views its tokens at the full
    width, between a select of the kept channels and one back)."""
    read = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    found = (
        selection(module, read) if read is not None and read.op == "call_function" and len(read.users) == 1 else None
    )
    if found is None or found[1] != rank_of(read) - 1 or "tensor_meta" not in node.meta:
        return None
    source, _, index = found
    width = int(source.meta["tensor_meta"].shape[-1])
    args = _on_source(node, source, len(index), width)
    if args is None:
        return None
    with module.graph.inserting_before(node):
        target = "reshape" if node.target == "view" else node.target  # the same values where a view cannot be
        moved = module.graph.create_node(node.op, target, args, dict(node.kwargs))
    meta = node.meta["tensor_meta"]
    moved.meta["tensor_meta"] = meta._replace(shape=torch.Size((*meta.shape[:-1], width)))
    return selected(moved, len(meta.shape) - 1, index, node)


def _on_source(node: fx.Node, source: fx.Node, selected: int, width: int) -> tuple | None:
    """``node``'s arguments with ``source`` for its input (of ``width`` channels in its last dim, where ``node``
    reads ``selected``), or None when ``node`` does not keep that dim last and whole."""
    rank, rest = rank_of(node.args[0]), node.args[1:]
    packed = len(rest) == 1 and isinstance(rest[0], list | tuple)
    values = list(rest[0]) if packed else list(rest)
    if node.op == "call_method" and node.target in ("view", "reshape") and values and values[-1] == selected:
        values[-1] = width
    elif node.op == "call_method" and node.target == "permute" and values:
        if not isinstance(values[-1], int) or values[-1] % rank != rank - 1:
            return None
    elif node.op == "call_function" and node.target is torch.roll:
        dims = node.kwargs.get("dims", rest[1] if len(rest) > 1 else None)
        dims = dims if isinstance(dims, list | tuple) else (dims,)
        if any(not isinstance(d, int) or d % rank == rank - 1 for d in dims):
            return None
    elif not (node.op == "call_method" and node.target == "contiguous" and not rest):
        return None
    return (source, tuple(values)) if packed else (source, *values)
