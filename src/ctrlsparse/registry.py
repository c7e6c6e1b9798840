"""Name -> constructor maps, one per pluggable axis (dataset, architecture, method).

A method's entry is a :class:`MethodSpec`: what the method is (its level field, whether it has gates, whether its
targets and budgets are constraints, what run it starts from, its defaults); every module that treats methods
differently reads the spec, never the method's name, so adding a method is one entry here, its problem class and
its tests.

Entries are ``"module:attribute"`` strings resolved on first use, so listing or validating names never
imports torch (the Snakemake workflow and ``--help`` stay fast). A registry may also accept every name that
starts with one of its ``prefixes`` (the archs ``torchvision:<builder>``, ``module:<package.module>:<function>``):
those resolve to the prefix's target called with the name; what follows the prefix is checked when it is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ctrlsparse.errors import UnknownNameError


class Registry(Mapping[str, Callable[..., Any]]):
    """One pluggable axis (``axis``: dataset, arch, method): a read-only map of name -> constructor.

    ``entries`` map names to ``"module:attribute"`` strings, imported on first lookup; ``prefixes`` map a name
    prefix to (the form shown in errors, ``"module:attribute"``), whose target is called with the whole name.
    :meth:`check` raises :class:`~ctrlsparse.errors.UnknownNameError` naming the valid choices; ``in`` and
    iteration see the listed names only.
    """

    def __init__(
        self,
        axis: str,
        entries: Mapping[str, str],
        prefixes: Mapping[str, tuple[str, str]] | None = None,
        specs: Mapping[str, Any] | None = None,
    ):
        self.axis = axis
        self._targets = dict(entries)
        self._prefixes = dict(prefixes or {})  # prefix -> (the form shown in errors, "module:attribute")
        self._specs = dict(specs or {})  # name -> what the entry is (methods: a MethodSpec)
        self._resolved: dict[str, Callable[..., Any]] = {}

    def spec(self, name: str) -> Any:
        """The spec of a known name (None for an axis without specs; :class:`UnknownNameError` for an unknown name)."""
        return self._specs.get(self.check(name))

    def select(self, test: Callable[[Any], bool]) -> list[str]:
        """The listed names whose spec passes ``test``, in registry order."""
        return [name for name in self._targets if test(self._specs.get(name))]

    def register(self, name: str, target: str | Callable[..., Any], spec: Any = None) -> None:
        """Add an entry: ``target`` is a ``"module:attribute"`` string or the constructor itself."""
        if name in self._targets:
            raise ValueError(f"{self.axis} {name!r} is registered already")
        if not isinstance(target, str):
            self._resolved[name] = target
            target = f"{target.__module__}:{target.__qualname__}"
        self._targets[name] = target
        self._specs[name] = spec

    def unregister(self, name: str) -> None:
        """Remove an entry added by :meth:`register`."""
        for table in (self._targets, self._specs, self._resolved):
            table.pop(name, None)

    def _prefix(self, name: str) -> str | None:
        return next((p for p in self._prefixes if name.startswith(p) and len(name) > len(p)), None)

    def check(self, name: str) -> str:
        if name not in self._targets and self._prefix(name) is None:
            choices = [*self._targets, *(form for form, _ in self._prefixes.values())]
            raise UnknownNameError(f"unknown {self.axis} {name!r}; choose one of: {', '.join(choices)}")
        return name

    def __getitem__(self, name: str) -> Callable[..., Any]:
        self.check(name)
        if name not in self._resolved:
            prefix = self._prefix(name) if name not in self._targets else None
            target = self._targets[name] if prefix is None else self._prefixes[prefix][1]
            module, _, attribute = target.partition(":")
            resolved = getattr(importlib.import_module(module), attribute)
            self._resolved[name] = resolved if prefix is None else functools.partial(resolved, name)
        return self._resolved[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets


DATASETS = Registry(
    "dataset",
    {
        "digits": "ctrlsparse.data.digits:load_digits",
        "mnist": "ctrlsparse.data.mnist:load_mnist",
        "mnist5k": "ctrlsparse.data.mnist5k:load_mnist5k",
        "cifar10": "ctrlsparse.data.cifar:load_cifar10",
        "cifar100": "ctrlsparse.data.cifar:load_cifar100",
        "tinyimagenet": "ctrlsparse.data.tinyimagenet:load_tinyimagenet",
        "imagenet": "ctrlsparse.data.imagenet:load_imagenet",
        "imagefolder": "ctrlsparse.data.imagefolder:load_imagefolder",
    },
)
ARCHS = Registry(
    "arch",
    {
        "mlp": "ctrlsparse.models.mlp:build_mlp",
        "cnn": "ctrlsparse.models.cnn:build_cnn",
        "lenet5": "ctrlsparse.models.lenet5:build_lenet5",
        "vit": "ctrlsparse.models.vit:build_vit",
        "wrn28_10": "ctrlsparse.models.resnet:build_wrn28_10",
        "wrn16_4": "ctrlsparse.models.resnet:build_wrn16_4",
        "resnet18": "ctrlsparse.models.resnet:build_resnet18",
        "resnet50": "ctrlsparse.models.resnet:build_resnet50",
    },
    prefixes={
        "torchvision:": ("torchvision:<builder>", "ctrlsparse.models.external:build_external"),
        "module:": ("module:<package.module>:<function>", "ctrlsparse.models.external:build_external"),
    },
)


# The symbol each level field is written with in the report's labels.
LEVEL_SYMBOLS = {"target": "ε", "penalty": "λ"}


@dataclass(frozen=True)
class MethodSpec:
    """What a training method is, read wherever methods differ (run keys, flags, checks, reports).

    ``problem`` is its class as ``"module:attribute"`` (resolved by ``METHODS[name]``), or the class itself (a
    method added by :func:`register_method`). The fields that name a run (:attr:`axes`) follow from ``gates`` and
    ``level``.
    """

    problem: str | Callable[..., Any]
    level: str = "target"  # the HParams field its run key's level shows ("target", "penalty"; "": level 1)
    gates: bool = True  # trains a gated model; without gates its variant has no scope and it cannot warm start
    constraints: bool = False  # its targets (and --budget) are constraints: multipliers, violations, feasibility
    starts_from: str = ""  # the method whose finished run it must start from (--pretrained); "": from scratch
    runs_of: str = ""  # it trains runs of this method instead of a model of its own (no checkpoint, no purge)
    priced_against: str = ""  # the report's price table sets its settings beside this method's (same scope, level)
    # Defaults over every preset (hparams.defaults.case_defaults), per data set ("*": the others).
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def axes(self) -> tuple[str, ...]:
        """The fields besides dataset, arch, method and seed that name its runs (shown first by the CLI)."""
        return (("target_scope",) if self.gates else ()) + ((self.level,) if self.level else ())

    @property
    def symbol(self) -> str:
        """How the report writes its level (ε a target, λ a penalty; "" without a level)."""
        return LEVEL_SYMBOLS.get(self.level, "")

    def recipe(self, dataset: str) -> Mapping[str, Any]:
        """Its defaults on ``dataset`` ({} for most methods)."""
        return self.defaults.get(dataset, self.defaults.get("*", {}))


# Magnitude pruning's fine-tuning recipe (paper.md §3): 20 epochs of SGD, momentum 0.9, constant lr 1e-3, wd 1e-4.
# On digits the dense run trained with Adam at 5e-3; 30 epochs (360 steps) of Adam at 1e-3 recover its accuracy.
MAGNITUDE_RECIPE: dict[str, dict[str, Any]] = {
    "*": {"epochs": 20, "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "lr_milestones": (), "weight_decay": 1e-4},
    "digits": {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "lr_milestones": (), "weight_decay": 0.0},
}
_METHOD_SPECS = {
    "constrained": MethodSpec("ctrlsparse.problems.constrained:ConstrainedL0Problem", constraints=True),
    "penalized": MethodSpec("ctrlsparse.problems.penalized:PenalizedL0Problem", level="penalty"),
    "dense": MethodSpec("ctrlsparse.problems.dense:DenseProblem", level="", gates=False),
    "magnitude": MethodSpec(
        "ctrlsparse.problems.magnitude:MagnitudePruningProblem", starts_from="dense", defaults=MAGNITUDE_RECIPE
    ),
    # the penalized method bisected over log10 lambda (ctrlsparse.problems.search)
    "search": MethodSpec("ctrlsparse.problems.search:PenaltySearch", runs_of="penalized", priced_against="constrained"),
}
METHODS = Registry("method", {name: str(spec.problem) for name, spec in _METHOD_SPECS.items()}, specs=_METHOD_SPECS)


def register_method(name: str, spec: MethodSpec) -> None:
    """Add a method (its spec and problem class) to :data:`METHODS`; :meth:`Registry.unregister` removes it."""
    METHODS.register(name, spec.problem, spec)


def method_spec(name: object) -> MethodSpec | None:
    """The spec of the method ``name`` (e.g. read from a summary); None for a name the registry does not list."""
    return METHODS.spec(name) if isinstance(name, str) and name in METHODS else None
