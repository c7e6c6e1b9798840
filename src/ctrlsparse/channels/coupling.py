"""Coupled channels of a dense model: the sets of channels that can only go together, and which share a gate.

Every channel of every tracked tensor is one element; the op table ties elements together (the way
Torch-Pruning's DepGraph does): a map, a norm or a sum / product ties channel i of its output to channel i of
each operand (a residual stream is one set per channel: the stem or downsample, every block's last conv, every
reader), a move ties each output channel to the source channel it is (concatenations, splits, a channel
shuffle), attention ties each output channel to its value channel and a head's query, key, value and output
channels together (one set per head), and a grouped conv (depthwise included) ties each group's input channels to its output channels. A
move that copies a channel many times (flatten over H x W) ties nothing: each flattened entry is a channel of
its own, and the flatten zeroes the closed channels it reads.

The connected components are the coupled sets. A set is *gatable* unless it holds a channel of the model's input
or output, or of a layer called more than once. Sets that appear in exactly the same nodes (the 64 channels of a
ResNet stage's stream, a conv's output channels) form one gate group. The places a group's gate must act are the
channels read by anything that mixes channels (a conv or Linear, an op the analysis does not know, a flatten):
``need_zero`` maps each such tensor to its readers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import fx

from ctrlsparse.channels.graph import ChannelGraph


@dataclass
class GroupPlan:
    """One gate group: its name (the first layer whose channels it gates) and the component of each gate."""

    name: str
    components: list[int]
    kind: str = "hidden"  # heads (an attention's), width (a residual stream: it meets a sum), hidden (the rest)


class Coupling:
    """The coupled channel sets of ``graph`` (a dense model's), its gate groups and the tensors to gate."""

    def __init__(self, graph: ChannelGraph):
        self.graph = graph
        self.offsets: dict[fx.Node, int] = {}
        total = 0
        for node in graph.nodes:
            if graph.ops[node].tracked:
                self.offsets[node], total = total, total + graph.ops[node].width
        self.total = total
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        ungatable: list[np.ndarray] = []
        # tensor -> the readers that mix its channels (each needs the tensor's closed channels at zero)
        self.need_zero: dict[fx.Node, list[fx.Node]] = {}
        calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
        for node in graph.nodes:
            self._tie(node, rows, cols, ungatable, calls)
        edges_a = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        edges_b = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        matrix = coo_matrix((np.ones(len(edges_a)), (edges_a, edges_b)), shape=(total, total))
        _, self.component = connected_components(matrix, directed=False)
        blocked = np.zeros(self.component.max() + 1 if total else 0, dtype=bool)
        for elements in ungatable:
            blocked[self.component[elements]] = True
        self.gatable = ~blocked

    def elements(self, node: fx.Node, channels: np.ndarray | None = None) -> np.ndarray:
        start = self.offsets[node]
        if channels is None:
            return np.arange(start, start + self.graph.ops[node].width)
        return start + channels

    def tracked_sources(self, node: fx.Node) -> list[fx.Node]:
        """The tracked tensors a composite's channels come from (through composites of composites)."""
        found = []
        for source in self.graph.ops[node].sources:
            found += self.tracked_sources(source) if self.graph.ops[source].kind == "composite" else [source]
        return found

    def _tie(self, node: fx.Node, rows, cols, ungatable, calls: Counter) -> None:
        graph, op = self.graph, self.graph.ops[node]

        def tie(a: np.ndarray, b: np.ndarray) -> None:
            rows.append(a)
            cols.append(b)

        def zero_read(argument) -> None:  # a reader that mixes channels: the argument is gated in front of it
            arg_op = graph.ops.get(argument) if isinstance(argument, fx.Node) else None
            if arg_op is None:
                return
            if arg_op.kind == "composite":
                for source in self.tracked_sources(argument):
                    ungatable.append(self.elements(source))
            elif arg_op.tracked:
                self.need_zero.setdefault(argument, []).append(node)

        if op.kind == "input" and op.tracked:
            ungatable.append(self.elements(node))
        elif op.kind == "output":
            found: list[fx.Node] = []
            fx.node.map_arg(node.args, lambda arg: found.append(arg) or arg)
            for argument in found:
                arg_op = graph.ops[argument]
                if arg_op.tracked:
                    ungatable.append(self.elements(argument))
                for source in self.tracked_sources(argument) if arg_op.kind == "composite" else ():
                    ungatable.append(self.elements(source))
        elif op.kind in ("map", "norm", "layer_norm", "masked_bn", "masked_ln", "gate", "sum", "product"):
            for operand in op.operands:
                tie(self.elements(node), self.elements(operand))
        elif op.kind == "attention":  # one set per head: its q, k, v and output channels
            heads = op.module.heads
            first = self.offsets[node] + np.arange(heads) * (op.width // heads)
            for part in (*op.operands, node):
                tie(self.elements(part), np.repeat(first, graph.ops[part].width // heads))
            for bias in node.args[3:]:  # a score bias (sliced by head in the purge): no gate of its own
                bias_op = graph.ops.get(bias)
                if bias_op is not None and bias_op.tracked:
                    ungatable.append(self.elements(bias))
                elif bias_op is not None and bias_op.kind == "composite":
                    ungatable += [self.elements(source) for source in self.tracked_sources(bias)]
        elif op.kind == "move":
            starts, start = [], 0
            for source in op.sources:
                starts.append(start)
                start += graph.ops[source].width
            concatenated = np.concatenate([self.elements(source) for source in op.sources])
            index = op.index.numpy()
            if len(np.unique(index)) == len(index):
                tie(self.elements(node), concatenated[index])
            else:  # a flatten over H x W: each entry its own channel; the sources are read whole
                for source in op.sources:
                    zero_read(source)
        elif op.kind == "weight":
            source = op.operands[0]
            called_once = calls[str(node.target)] == 1
            if not called_once:
                ungatable.append(self.elements(node))
            source_op = graph.ops[source]
            rank = len(graph.shapes[source])
            reads = source_op.tracked and source_op.dim == (1 if op.name == "conv" else rank - 1)
            if not reads:
                zero_read(source)
                return
            if not called_once:
                ungatable.append(self.elements(source))
            groups = op.module.groups if op.name == "conv" else 1
            if groups > 1:  # each group's inputs go with its outputs
                per_in, per_out = source_op.width // groups, op.width // groups
                group_in = np.repeat(np.arange(groups), per_in)
                group_out = np.repeat(np.arange(groups), per_out)
                first_out = self.offsets[node] + np.arange(groups) * per_out
                tie(self.elements(source), first_out[group_in])
                tie(self.elements(node), first_out[group_out])
            self.need_zero.setdefault(source, []).append(node)
        elif op.kind == "other":
            found = []
            fx.node.map_arg((node.args, node.kwargs), lambda arg: found.append(arg) or arg)
            for argument in found:
                zero_read(argument)

    # --- gate groups ---
    def groups(self) -> list[GroupPlan]:
        """The gatable components grouped by the set of nodes they appear in, in graph order."""
        signatures: dict[int, list[int]] = {}  # component -> indices of the nodes it appears in
        first_node: dict[int, int] = {}
        for position, (node, start) in enumerate(self.offsets.items()):
            present = np.unique(self.component[start : start + self.graph.ops[node].width])
            for component in present[self.gatable[present]].tolist():
                signatures.setdefault(component, []).append(position)
                first_node.setdefault(component, position)
        by_signature: dict[tuple[int, ...], list[int]] = {}
        for component in sorted(signatures, key=lambda c: (first_node[c], c)):
            by_signature.setdefault(tuple(signatures[component]), []).append(component)
        nodes = list(self.offsets)
        plans = []
        for signature, components in by_signature.items():
            kinds = {self.graph.ops[nodes[position]].kind for position in signature}
            kind = "heads" if "attention" in kinds else "width" if "sum" in kinds else "hidden"
            plans.append(GroupPlan(self._name(nodes, signature), components, kind))
        return plans

    def _name(self, nodes: list[fx.Node], signature: tuple[int, ...]) -> str:
        """The first weight layer whose output the group gates, else the group's first node."""
        for position in signature:
            if self.graph.ops[nodes[position]].kind == "weight":
                return str(nodes[position].target)
        return str(nodes[signature[0]].name)

    def channel_gates(self, node: fx.Node, plans: list[GroupPlan]) -> list[tuple[int, int] | None]:
        """For each channel of ``node``: (group, gate within it), or None where it is not gated."""
        where = {component: (g, i) for g, plan in enumerate(plans) for i, component in enumerate(plan.components)}
        components = self.component[self.elements(node)]
        return [where.get(int(c)) for c in components]
