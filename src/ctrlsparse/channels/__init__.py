"""The one channel analysis: which channels of every tensor of a traced model go together, may be non-zero and
are read. Gating (:func:`ctrlsparse.gate`: which channels share a gate), the purge (which channels the smaller
model keeps) and the expected cost (the probability that each channel is kept) all read it, with booleans or
with probabilities (:mod:`~ctrlsparse.channels.algebra`), so the three cannot disagree.

- :mod:`~ctrlsparse.channels.ops`: the op table (one rule per kind of node);
- :mod:`~ctrlsparse.channels.graph`: the trace, each node's op, channel dim and shape;
- :mod:`~ctrlsparse.channels.flow`: non-zero / needed / kept channels in either algebra;
- :mod:`~ctrlsparse.channels.coupling`: the coupled channel sets of a dense model, each to share one gate;
- :mod:`~ctrlsparse.channels.attention`: attention (``nn.MultiheadAttention``, written out of Linear layers, Swin's
  windows) rewritten into the one op the table knows, :class:`~ctrlsparse.channels.heads.Attention`.
"""

from ctrlsparse.channels.graph import ChannelGraph, trace

__all__ = ["ChannelGraph", "trace"]
