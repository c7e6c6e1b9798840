"""The purge's re-indexing folded into the Linear layers around it (:mod:`~ctrlsparse.purge.index_folds` applies
these with the rest): gathers into the Linear that reads them, index_selects that split a Linear's output into
narrow views of one Linear."""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx, nn

from ctrlsparse.purge.index_nodes import (
    called_once,
    constant_of,
    is_zero_pad,
    new_buffer,
    rank_of,
    reindexed,
    width_of,
)


def _last_dim_kept(node: fx.Node) -> bool:
    """Whether ``node`` is ``x[index]`` whose index leaves ``x``'s last dim whole and last."""
    index = node.args[1] if node.target is operator.getitem and len(node.args) == 2 else None
    index = index if isinstance(index, tuple) else (index,)
    rank = rank_of(node.args[0]) if isinstance(node.args[0], fx.Node) else None
    return rank is not None and all(isinstance(i, int | slice) for i in index) and len(index) < rank


def gathers_into_linears(module: fx.GraphModule) -> None:
    for node, layer in called_once(module, nn.Linear).items():
        columns = torch.arange(layer.in_features)  # the layer's input column -> the chain's column (-1: a zero)
        value, index_ops, picks = node.args[0], 0, []
        while isinstance(value, fx.Node) and len(value.users) == 1 and value.op == "call_function":
            found = reindexed(value)
            last = found is not None and found[1] == rank_of(value) - 1
            if last and value.target is torch.index_select:
                index = constant_of(module, value.args[2])
                if index is None:
                    break
                columns = torch.where(columns >= 0, index.cpu()[columns.clamp(min=0)], columns)
            elif last:  # cat([source, zeros], last dim)
                parts = value.args[0]
                if len(parts) != 2 or not is_zero_pad(parts[1]):
                    break
                columns = torch.where(columns < width_of(found[0]), columns, -1)
            elif value.target is operator.getitem and _last_dim_kept(value):
                picks.append(value.args[1])
                value = value.args[0]
                continue
            else:
                break
            index_ops += 1
            value = found[0]
        used = columns[columns >= 0].unique()
        whole = len(used) == width_of(value) if isinstance(value, fx.Node) and "tensor_meta" in value.meta else False
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
                name = new_buffer(module, "fold_index", used.to(layer.weight.device))
                value = module.graph.call_function(torch.index_select, (value, -1, module.graph.get_attr(name)))
        node.args = (value,)


def split_outputs(module: fx.GraphModule) -> None:
    for node, layer in called_once(module, nn.Linear).items():
        readers = list(node.users)
        rank = rank_of(node)
        if not readers or rank is None:
            continue
        indices = []
        for reader in readers:
            found = reindexed(reader)
            index = constant_of(module, reader.args[2]) if reader.target is torch.index_select else None
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
