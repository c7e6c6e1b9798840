"""Which channels of every tensor the purged model keeps: the channel analysis in booleans, on the eval gates."""

from __future__ import annotations

import torch

from ctrlsparse import gates as hc
from ctrlsparse.channels.algebra import Booleans
from ctrlsparse.channels.flow import Flow, gate_offsets
from ctrlsparse.channels.graph import ChannelGraph
from ctrlsparse.layers import gated_layers


def eval_flow(graph: ChannelGraph) -> Flow:
    """:class:`~ctrlsparse.channels.flow.Flow` with every gate open where its eval (median) gate is non-zero."""
    units = [unit for _, unit in gated_layers(graph.module)]
    opened = [hc.median_gates(unit.log_alpha.detach()).cpu() > 0 for unit in units]
    opened_all = torch.cat(opened) if opened else torch.zeros(0, dtype=torch.bool)
    return Flow(graph, Booleans(opened_all), gate_offsets(units))
