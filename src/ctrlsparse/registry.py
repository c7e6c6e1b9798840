"""Name -> constructor maps, one per pluggable axis (dataset, architecture, method).

Entries are ``"module:attribute"`` strings resolved on first use, so listing or validating names never
imports torch (the Snakemake workflow and ``--help`` stay fast). A registry may also accept every name that
starts with one of its ``prefixes`` (the archs ``torchvision:<builder>``, ``module:<package.module>:<function>``):
those resolve to the prefix's target called with the name; what follows the prefix is checked when it is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ctrlsparse.errors import UnknownNameError


class Registry(Mapping[str, Callable[..., Any]]):
    """One pluggable axis (``axis``: dataset, arch, method): a read-only map of name -> constructor.

    ``entries`` map names to ``"module:attribute"`` strings, imported on first lookup; ``prefixes`` map a name
    prefix to (the form shown in errors, ``"module:attribute"``), whose target is called with the whole name.
    :meth:`check` raises :class:`~ctrlsparse.errors.UnknownNameError` naming the valid choices; ``in`` and
    iteration see the listed names only.
    """

    def __init__(self, axis: str, entries: Mapping[str, str], prefixes: Mapping[str, tuple[str, str]] | None = None):
        self.axis = axis
        self._targets = dict(entries)
        self._prefixes = dict(prefixes or {})  # prefix -> (the form shown in errors, "module:attribute")
        self._resolved: dict[str, Callable[..., Any]] = {}

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
METHODS = Registry(
    "method",
    {
        "constrained": "ctrlsparse.problems.constrained:ConstrainedL0Problem",
        "penalized": "ctrlsparse.problems.penalized:PenalizedL0Problem",
        "dense": "ctrlsparse.problems.dense:DenseProblem",
        "magnitude": "ctrlsparse.problems.magnitude:MagnitudePruningProblem",
        "search": "ctrlsparse.problems.search:PenaltySearch",
    },
)
