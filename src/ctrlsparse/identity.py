"""Run identity: readable grid axes, then a short hash of every other hyperparameter that changes the result.

A run's key is its directory under ``results/runs`` and its name in MLflow:
``{dataset}/{arch}/{variant}~{level}/{hash}/seed~{seed}``, e.g. ``digits/mlp/constrained-model~0.5/3f9c2a1b/seed~0``.
Runs that compute the same numbers share one key (and are trained once, whichever grid lists them); runs that
differ in anything but the execution fields (:data:`ctrlsparse.hparams.EXECUTION`: device, threads, ...) never
do. The seeds of one
setting sit side by side under one hash.

A run that starts from another one (``pretrained``: magnitude pruning starts from a dense run, a warm-started
constrained or penalized run from its weights) also hashes the key of that run: pruning a 30-epoch and a
150-epoch dense run are two runs.

Torch-free, like :mod:`ctrlsparse.hparams`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from ctrlsparse.constraint_kinds import BUDGET_KINDS
from ctrlsparse.hparams.checks import SCOPES
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import METHODS

if TYPE_CHECKING:
    from ctrlsparse.hparams import HParams

# Fields that form the readable part of a run's identity; everything else but the execution fields goes into
# the hash.
AXES = ("dataset", "arch", "method", "target_scope", "target", "budget", "penalty", "seed", "tag")
# Fields added after runs had been trained with this layout: a value at the field's default is left out of the
# hash, so that every run trained before the field existed (which computed what the default computes) keeps
# its key and is not trained again; any other value is hashed like every field.
LATER_FIELDS = (
    "formulation",
    "penalty_coefficient",
    "search_range",
    "search_iterations",
    "keep_a_gate_open",
    "target_anneal",
    "fix_gates",
    "gate_after_norm",
    "distill",
    "distill_temperature",
    "round_channels",
    "recalibrate_norms",
    "latency_batch",
)
# The key's layout; the workflow's wildcards are these names (``hash`` is 8 hex digits).
RUN_PATTERN = "{dataset}/{arch}/{variant}~{level}/{hash}/seed~{seed}"
HASH_LENGTH = 8
# The workflow's wildcard constraints of ``variant`` and ``level``, from the method registry, the scopes (a budget
# run without a density target: ``-budget``) and the budget kinds; ``+budget`` and ``+tag`` parts may follow.
_SCOPES = "|".join("budget" if scope == "none" else scope for scope in SCOPES)
_KINDS = "|".join(BUDGET_KINDS)
VARIANT_PATTERN = rf"({'|'.join(METHODS)})(-({_SCOPES}))?(\+[A-Za-z0-9_.,=-]+)*"
LEVEL_PATTERN = rf"[0-9.e+,-]+|({_KINDS})=[0-9.e+-]+(,({_KINDS})=[0-9.e+-]+)*"


def hparams_hash(hparams: HParams, pretrained_key: str = "") -> str:
    """Short hash of every computation field that is not a readable axis (epochs, learning rates, ...), and of
    the key of the run it starts from (``pretrained_key``: required by a method whose spec ``starts_from`` a run).
    A field of :data:`LATER_FIELDS` at its default is left out."""
    defaults = {f.name: f.default for f in fields(hparams) if f.name in LATER_FIELDS}
    rest: dict[str, Any] = {
        key: value
        for key, value in hparams.computation().items()
        if key not in AXES and not (key in defaults and value == _plain(defaults[key]))
    }
    if METHODS.spec(hparams.method).starts_from and not pretrained_key:
        raise ValueError(f"a {hparams.method} run's identity needs the key of the run it starts from")
    if pretrained_key:
        rest["pretrained"] = pretrained_key
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:HASH_LENGTH]


def _plain(value: Any) -> Any:
    """A default as :meth:`HParams.computation` writes values (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def run_fields(hparams: HParams, pretrained_key: str = "") -> dict[str, str]:
    """The named parts of a run's key (the workflow's wildcards): dataset, arch, variant, level, hash, seed."""
    return {
        "dataset": hparams.dataset,
        "arch": hparams.arch,
        "variant": hparams.variant,
        "level": hparams.level,
        "hash": hparams_hash(hparams, pretrained_key),
        "seed": str(hparams.seed),
    }


def run_key(hparams: HParams, pretrained_key: str = "") -> str:
    """Identity of a run: ``{dataset}/{arch}/{variant}~{level}/{hash}/seed~{seed}`` (see the module docstring)."""
    return RUN_PATTERN.format(**run_fields(hparams, pretrained_key))


def pretrained_key(hparams: HParams) -> str:
    """The key of the run that ``hparams`` starts from, read from its finished directory (``pretrained``);
    "" for a run from scratch."""
    if not hparams.pretrained:
        return ""
    return json.loads(paths.summary_path(hparams.pretrained).read_text())["run_key"]
