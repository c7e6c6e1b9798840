"""Expected MACs and parameters of a gated model: differentiable functions of the gates' P(active).

The purge (:mod:`ctrlsparse.purge.plan`) keeps channel c of a tensor when it may be non-zero and some consumer
reads it; a Conv2d / Linear of the purged model then costs (kept input columns) x (kept output rows) x its
per-pair cost (kernel area x output H*W for MACs, kernel area for weights) plus one bias entry per row, and a
BatchNorm two parameters per kept channel. :class:`ExpectedCost` writes the same two passes over the same
torch.fx trace and node kinds with probabilities in place of booleans, once at construction:

- non-zero (forward): a gated conv's channel is non-zero with its gate's P(active); ReLU, pooling and the masked
  BatchNorm pass it on; a plain BatchNorm and anything unknown make every channel non-zero (1); a flatten repeats
  a channel's probability over its H*W; a residual add is non-zero where any summed input is: 1 - prod(1 - p).
- needed (backward): a gated Linear reads input j with P(active) of gate j; a flatten reads channel c when any of
  its H*W entries is read, 1 - prod(1 - p); several consumers likewise; a conv or an unknown op reads every channel.
- a layer's expected cost = E[kept inputs] x E[kept outputs] x per-pair cost, E[kept] = sum_c P(non-zero) x
  P(needed). Inputs and outputs of one layer are decided by disjoint gates (upstream convs and this Linear's
  gates vs this conv's gates and downstream Linears' gates), so the product of expectations is E[in x out].

With every P exactly 0 or 1 each formula is the purge's boolean rule, so the expected cost is the purged model's
(FlopCounterMode MACs, parameter count) exactly, and at all-open the dense model's. With fractional P the OR
terms assume the summed / reading gates independent: exact for a residual add of a block's conv output and a
shortcut fed by other gates (every registered arch); where both sides share gates it over-counts a little.
One exception to exactness: the purge keeps one channel of a layer whose gates are all closed; this counts 0.
MACs of ops the walk does not model (they receive full-width inputs, so their cost does not depend on the gates)
are a constant measured once with the purge's counter.
"""

from ctrlsparse.cost.expected import ExpectedCost

__all__ = ["ExpectedCost"]
