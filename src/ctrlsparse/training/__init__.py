"""Training: build a run from its hyperparameters, then a short loop with small hooks."""
