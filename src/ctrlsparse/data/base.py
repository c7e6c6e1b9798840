"""The interface every data set returns: batches of (inputs, labels) for training and testing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor


def bundled_file(dataset: str, package: str, relative: str) -> Path:
    """A data file that an installed package ships (located without importing the package)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"dataset {dataset!r} needs the {package} package installed (it ships the data file)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"dataset {dataset!r}: {path} is missing; reinstall {package}")
    return path


@dataclass
class TensorData:
    """A data set small enough to live as tensors on the training device (digits, MNIST, CIFAR).

    Batching is indexing into resident tensors: no DataLoader, no worker processes, no host copies.
    ``shard = (rank, world)``: with several training processes (DDP), each takes its share of every batch.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    shard: tuple[int, int] = (0, 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    def to(self, device: torch.device | str) -> TensorData:
        names = ("train_x", "train_y", "test_x", "test_y")
        return replace(self, **{name: getattr(self, name).to(device) for name in names})

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """A reshuffled pass over the training set; the order depends only on ``generator``."""
        order = torch.randperm(self.num_train, generator=generator).to(self.train_x.device)
        for index in shard_batches(order, batch_size, self.shard):
            yield self.train_x[index], self.train_y[index]

    @property
    def test_labels(self) -> Tensor:
        return self.test_y

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            yield self.test_x[start : start + batch_size], self.test_y[start : start + batch_size]


def chance_accuracy(labels: Tensor) -> float:
    """The test accuracy of a model that always answers the most frequent class."""
    return float(torch.bincount(labels.cpu()).max()) / max(1, len(labels))


def shard_batches(order: Tensor, batch_size: int, shard: tuple[int, int]) -> Iterator[Tensor]:
    """``order`` cut into global minibatches of ``batch_size``, each reduced to this process's share (every
    ``world``-th entry from ``rank``); a last global batch smaller than ``world`` is dropped, so no process ever
    gets an empty batch. With ``shard = (0, 1)`` these are the plain minibatches."""
    rank, world = shard
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        if len(index) < world:
            return
        yield index[rank::world]
