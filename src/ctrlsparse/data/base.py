"""The interface every data set returns: batches of (inputs, labels) for training and testing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorData:
    """A data set small enough to live as tensors on the training device (digits, MNIST, CIFAR).

    Batching is indexing into resident tensors: no DataLoader, no worker processes, no host copies.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.num_classes,
        )

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """A reshuffled pass over the training set; the order depends only on ``generator``."""
        order = torch.randperm(self.num_train, generator=generator).to(self.train_x.device)
        for start in range(0, self.num_train, batch_size):
            index = order[start : start + batch_size]
            yield self.train_x[index], self.train_y[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            yield self.test_x[start : start + batch_size], self.test_y[start : start + batch_size]
