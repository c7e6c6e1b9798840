"""Expected MACs and parameters of a gated model: differentiable functions of the gates' P(active).

The purge keeps channel c of a tensor when it may be non-zero and some consumer reads it
(:class:`~ctrlsparse.channels.flow.Flow`); :class:`ExpectedCost` runs the same analysis with probability
expressions in place of booleans (:class:`~ctrlsparse.channels.algebra.Expressions`), once at construction, and
sums its terms (:mod:`~ctrlsparse.cost.terms`): a Conv / Linear of the purged model costs (kept input columns) x
(kept output rows) x its per-pair cost (kernel area x output positions for MACs, kernel area for weights) plus one
bias entry per row, a grouped conv its whole block per kept group, a BatchNorm two parameters per kept channel,
a masked LayerNorm its affine parameters per open channel. Inputs and outputs of one layer are decided by
distinct gates (upstream gate points vs this layer's readers' gates), so the product of expectations is the
expectation of the product; the same gate reached twice (a residual stream, a depthwise conv's input and
output) is one event.

With every P exactly 0 or 1 each expression is the purge's boolean rule, so the expected cost is the purged
model's (FlopCounterMode MACs, parameter count) exactly, and at all-open the dense model's. With fractional P the
OR terms assume the summed / reading gates independent, which distinct gates are. One exception to exactness:
the purge keeps one channel of a tensor whose channels are all closed; this counts 0. MACs of ops the analysis
does not model (they receive full-width inputs, so their cost does not depend on the gates) are a constant
measured once with the purge's counter.
"""

from ctrlsparse.cost.expected import ExpectedCost

__all__ = ["ExpectedCost"]
