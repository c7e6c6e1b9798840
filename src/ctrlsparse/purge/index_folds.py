"""The purge's re-indexing folded away where a shape read or a Linear layer makes it unnecessary.

The purge re-indexes a tensor with ``index_select`` wherever a reader wants other channels than its producer
holds, zero-padded first (a ``cat`` with a zero slice) where it wants channels the producer lost
(:mod:`~ctrlsparse.purge.build`); attention's q, k and v are each selected from the one qkv projection. Every
such op copies the whole activation, and at batch 1 on a small model its call costs as much as the MACs pruning
saved. Three exact rewrites of the inference form remove them:

- **shape reads**: ``x.shape[k]``, ``x.size(k)``, ``x.dim()`` or ``x.ndim`` of a tensor re-indexed along
  another dim reads the tensor it was re-indexed from (a ViT's class token is expanded to the batch size of the
  padded patch tokens, torchvision's encoder blocks assert the rank of theirs: the padding, the cat and the
  index_select went only to that read);
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

import copy
import operator
from collections import Counter

import torch
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp


def fold_index_ops(module: fx.GraphModule, example: Tensor) -> int:
    """Apply the three rewrites to ``module`` in place (shapes from running ``example``); the number of index ops
    (``index_select``, ``cat``) its graph lost."""
    before = index_ops(module)
    ShapeProp(module).propagate(example)
    _shape_reads(module)
    _gathers_into_linears(module)
    _split_outputs(module)
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return before - index_ops(module)


def index_ops(module: nn.Module) -> int:
    """``index_select`` and ``cat`` nodes of ``module``'s graph (0: not a GraphModule)."""
    if not isinstance(module, fx.GraphModule):
        return 0
    return sum(n.op == "call_function" and n.target in (torch.index_select, torch.cat) for n in module.graph.nodes)


def _rank(node: fx.Node) -> int | None:
    meta = node.meta.get("tensor_meta")
    return len(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _width(node: fx.Node) -> int:
    return int(node.meta["tensor_meta"].shape[-1])


def _dim(node: fx.Node, dim: int) -> int | None:
    rank = _rank(node)
    return None if rank is None or not isinstance(dim, int) else dim % rank


def _reindexed(node: fx.Node) -> tuple[fx.Node, int] | None:
    """(source, dim) when ``node`` is ``index_select(source, dim, i)`` or ``cat([source, ...], dim)``."""
    if node.op != "call_function":
        return None
    if node.target is torch.index_select and isinstance(node.args[0], fx.Node):
        dim = _dim(node, node.args[1])
        return None if dim is None else (node.args[0], dim)
    if node.target is torch.cat and node.args and isinstance(node.args[0], list | tuple):
        dim = _dim(node, node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0))
        first = node.args[0][0]
        return None if dim is None or not isinstance(first, fx.Node) else (first, dim)
    return None


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
            found = _reindexed(node)
            if found is None:
                continue
            source, dim = found
            rank = _rank(node)
            for reader in list(node.users):
                dims = _shape_dims_read(reader, node)
                if dims is not None and all(k % rank != dim for k in dims):
                    reader.replace_input_with(node, source)
                    changed = True


def _called_once(module: fx.GraphModule, kind: type) -> dict[fx.Node, nn.Module]:
    calls = Counter(str(n.target) for n in module.graph.nodes if n.op == "call_module")
    found = {}
    for node in module.graph.nodes:
        if node.op == "call_module" and calls[str(node.target)] == 1:
            layer = module.get_submodule(str(node.target))
            if type(layer) is kind and len(node.args) == 1 and not node.kwargs:
                found[node] = layer
    return found


def _constant(module: fx.GraphModule, node: object) -> Tensor | None:
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = fx.Interpreter(module).fetch_attr(str(node.target))
    return value if isinstance(value, Tensor) else None


def _zero_pad(node: object) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target is torch.zeros_like


def _last_dim_kept(node: fx.Node) -> bool:
    """Whether ``node`` is ``x[index]`` whose index leaves ``x``'s last dim whole and last."""
    index = node.args[1] if node.target is operator.getitem and len(node.args) == 2 else None
    index = index if isinstance(index, tuple) else (index,)
    rank = _rank(node.args[0]) if isinstance(node.args[0], fx.Node) else None
    return rank is not None and all(isinstance(i, int | slice) for i in index) and len(index) < rank


def _gathers_into_linears(module: fx.GraphModule) -> None:
    for node, layer in _called_once(module, nn.Linear).items():
        columns = torch.arange(layer.in_features)  # the layer's input column -> the chain's column (-1: a zero)
        value, index_ops, picks = node.args[0], 0, []
        while isinstance(value, fx.Node) and len(value.users) == 1 and value.op == "call_function":
            found = _reindexed(value)
            last = found is not None and found[1] == _rank(value) - 1
            if last and value.target is torch.index_select:
                index = _constant(module, value.args[2])
                if index is None:
                    break
                columns = torch.where(columns >= 0, index.cpu()[columns.clamp(min=0)], columns)
            elif last:  # cat([source, zeros], last dim)
                parts = value.args[0]
                if len(parts) != 2 or not _zero_pad(parts[1]):
                    break
                columns = torch.where(columns < _width(found[0]), columns, -1)
            elif value.target is operator.getitem and _last_dim_kept(value):
                picks.append(value.args[1])
                value = value.args[0]
                continue
            else:
                break
            index_ops += 1
            value = found[0]
        used = columns[columns >= 0].unique()
        whole = len(used) == _width(value) if isinstance(value, fx.Node) and "tensor_meta" in value.meta else False
        if index_ops - (0 if whole else 1) <= 0:
            continue
        gathered = nn.Linear(len(used), layer.out_features, bias=layer.bias is not None).to(layer.weight)
        with torch.no_grad():
            kept = columns >= 0
            position = torch.searchsorted(used, columns[kept])
            weight = torch.zeros_like(gathered.weight)
            weight.index_add_(1, position.to(weight.device), layer.weight[:, kept.to(layer.weight.device)])
            gathered.weight.copy_(weight)
            if layer.bias is not None:
                gathered.bias.copy_(layer.bias)
        module.set_submodule(str(node.target), gathered)
        with module.graph.inserting_before(node):
            for pick in reversed(picks):
                value = module.graph.call_function(operator.getitem, (value, pick))
            if not whole:
                name = _buffer(module, "fold_index", used.to(layer.weight.device))
                value = module.graph.call_function(torch.index_select, (value, -1, module.graph.get_attr(name)))
        node.args = (value,)


def _split_outputs(module: fx.GraphModule) -> None:
    for node, layer in _called_once(module, nn.Linear).items():
        readers = list(node.users)
        rank = _rank(node)
        if not readers or rank is None:
            continue
        indices = []
        for reader in readers:
            found = _reindexed(reader)
            index = _constant(module, reader.args[2]) if reader.target is torch.index_select else None
            if found is None or found != (node, rank - 1) or index is None or node in reader.args[2:]:
                break
            indices.append(index.cpu())
        else:
            rows = torch.cat(indices)
            if len(rows) > layer.out_features:
                continue
            if not torch.equal(rows, torch.arange(layer.out_features)):
                split = copy.deepcopy(layer)
                with torch.no_grad():
                    split.weight = nn.Parameter(layer.weight[rows.to(layer.weight.device)].clone())
                    if layer.bias is not None:
                        split.bias = nn.Parameter(layer.bias[rows.to(layer.weight.device)].clone())
                split.out_features = len(rows)
                module.set_submodule(str(node.target), split)
            start = 0
            for reader, index in zip(readers, indices, strict=True):
                with module.graph.inserting_before(reader):
                    view = module.graph.call_method("narrow", (node, -1, start, len(index)))
                reader.replace_all_uses_with(view)
                module.graph.erase_node(reader)
                start += len(index)


def _buffer(module: fx.GraphModule, name: str, value: Tensor) -> str:
    unique, number = name, 0
    while hasattr(module, unique):
        number += 1
        unique = f"{name}_{number}"
    module.register_buffer(unique, value)
    return unique
