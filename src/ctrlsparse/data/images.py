"""Image data sets kept as uint8 tensors on the training device (MNIST, CIFAR, TinyImageNet).

The whole set is copied to the device once (CIFAR-10: 150 MB; TinyImageNet: 1.2 GB); every minibatch is then
indexed, augmented (random crop of the zero-padded image, horizontal flip) and normalised on the device, with
no DataLoader, no worker processes and no host copies. The augmentation's randomness is drawn from the data
generator, so a resumed run sees the same batches as an uninterrupted one. An epoch's order and augmentation
are drawn at once and copied to the device in one go: a copy per batch would make the host wait for the GPU
at every step (a blocking copy waits for the kernels queued before it), and then the GPU for the host.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ctrlsparse.data.base import TensorData


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale, shift) of the normalisation on ``device``, made once (a fresh copy per batch would block)."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, -1, 1, 1)
    return scale.to(device), shift.to(device)


def normalise(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 images (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` per channel."""
    scale, shift = _affine(tuple(mean), tuple(std), images.device)
    return torch.addcmul(shift, images.float(), scale)


@dataclass(frozen=True)
class Augmentation:
    """Random draws for one batch: crop offsets (n, 2) into the image zero-padded by ``padding`` (torchvision's
    ``RandomCrop(size, padding)``) and horizontal flips (n,) with probability 1/2."""

    padding: int
    offsets: Tensor | None
    flips: Tensor | None

    @classmethod
    def draw(cls, n: int, padding: int, flip: bool, generator: torch.Generator) -> Augmentation:
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator) if padding else None
        flips = torch.rand(n, generator=generator) < 0.5 if flip else None
        return cls(padding, offsets, flips)

    def to(self, device: torch.device) -> Augmentation:
        return Augmentation(
            self.padding,
            None if self.offsets is None else self.offsets.to(device),
            None if self.flips is None else self.flips.to(device),
        )

    def __getitem__(self, part: slice) -> Augmentation:
        return Augmentation(
            self.padding,
            None if self.offsets is None else self.offsets[part],
            None if self.flips is None else self.flips[part],
        )

    def apply(self, images: Tensor) -> Tensor:
        n, _, height, width = images.shape
        device, pad = images.device, self.padding
        if self.offsets is not None:
            offsets = self.offsets.to(device)
            padded = F.pad(images, (pad, pad, pad, pad))
            rows = (offsets[:, :1] + torch.arange(height, device=device)).view(n, height, 1)
            cols = (offsets[:, 1:] + torch.arange(width, device=device)).view(n, 1, width)
            images = padded[torch.arange(n, device=device).view(n, 1, 1), :, rows, cols].permute(0, 3, 1, 2)
        if self.flips is not None:
            images = torch.where(self.flips.to(device).view(n, 1, 1, 1), images.flip(3), images)
        return images


@dataclass
class ImageTensors(TensorData):
    """uint8 images (N, C, H, W) and int64 labels, resident on one device; normalised per batch with ``mean``
    and ``std`` (on the [0, 1] scale). ``crop_padding``/``flip`` set the training augmentation (0/False:
    none); test batches are never augmented."""

    mean: tuple[float, ...] = field(kw_only=True)
    std: tuple[float, ...] = field(kw_only=True)
    crop_padding: int = field(default=0, kw_only=True)
    flip: bool = field(default=False, kw_only=True)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """A reshuffled, augmented pass over the training set; depends only on ``generator``."""
        device = self.train_x.device
        order = torch.randperm(self.num_train, generator=generator).to(device)
        # one draw per position of the epoch, for whole global batches: the generators of all processes stay
        # in step (DDP) and each process takes its share
        augmentation = Augmentation.draw(self.num_train, self.crop_padding, self.flip, generator).to(device)
        rank, world = self.shard
        mine = slice(rank, None, world)
        for start in range(0, self.num_train, batch_size):
            index = order[start : start + batch_size]
            if len(index) < world:
                return
            index = index[mine]
            images = augmentation[start : start + batch_size][mine].apply(self.train_x[index])
            yield normalise(images, self.mean, self.std), self.train_y[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in super().test_batches(batch_size):
            yield normalise(images, self.mean, self.std), labels
