"""Training problems behind one interface (registry: ``ctrlsparse.registry.METHODS``).

``constrained`` (the paper), ``penalized`` (loss + lambda * density) and ``dense`` (no gates) all expose
``compute_cmp_state(inputs, labels)``, ``build_optimizer(primal)`` and ``after_step(cmp_state)``, so the
training loop never branches on the method.
"""
