"""Which channels of every tensor the purged model keeps: the channel analysis in booleans, on the eval gates."""

from __future__ import annotations

import torch

from ctrlsparse.channels.algebra import Booleans
from ctrlsparse.channels.flow import Flow, gate_offsets
from ctrlsparse.channels.graph import ChannelGraph
from ctrlsparse.layers import gated_layers


def eval_flow(graph: ChannelGraph) -> Flow:
    """:class:`~ctrlsparse.channels.flow.Flow` with every gate open where the eval model keeps it: its eval (median)
    gate non-zero, the count of each set rounded (``round_channels``, :meth:`~ctrlsparse.layers.Gates.eval_open`)."""
    units = [unit for _, unit in gated_layers(graph.module)]
    opened = [unit.eval_open().cpu() for unit in units]
    opened_all = torch.cat(opened) if opened else torch.zeros(0, dtype=torch.bool)
    return Flow(graph, Booleans(opened_all), gate_offsets(units))
