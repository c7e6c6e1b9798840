"""Typed hyperparameters of one run: the :class:`HParams` type (``fields``), the checks it passes when made
(``checks``), the per-data-set, per-arch and per-method presets it resolves from (``defaults``), and how its
numbers are written (``text``). Run identity is computed from them in :mod:`ctrlsparse.identity`.

Torch-free: the CLI derives its flags from :class:`HParams` and the Snakemake workflow resolves them to name
output directories, without paying for ``import torch``.

Resolution order (later wins): field defaults < ``DATASET_DEFAULTS`` for the dataset < ``ARCH_DEFAULTS`` for
the arch < ``LAYERWISE_DEFAULTS`` for the dataset (layer-wise runs only) < ``BUDGET_DEFAULTS`` (runs with a
MAC / parameter budget) < ``GATE_GROUP_DEFAULTS`` (archs gated by ``ctrlsparse.gate``) < ``WARM_START_DEFAULTS``
(warm starts) < the method's own ``defaults`` (its spec in ``ctrlsparse.registry.METHODS``: magnitude pruning's
fine-tuning recipe) < values given (``defaults.case_defaults``).
"""

from ctrlsparse.hparams.fields import EXECUTION, HParams
from ctrlsparse.hparams.text import format_number

__all__ = ["EXECUTION", "HParams", "format_number"]
