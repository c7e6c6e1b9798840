"""Image folders read with PIL by DataLoader worker processes (TinyImageNet, ImageNet).

- :func:`decode_all` decodes a list of small images once into one uint8 tensor (TinyImageNet then lives on
  the device like CIFAR).
- :class:`StreamedImages` decodes and augments every epoch in workers (ImageNet): pinned uint8 host batches,
  non-blocking copies, normalisation on the device. Its order comes from the data generator and each process
  of a DDP job reads only its share of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ctrlsparse.data.base import shard_batches
from ctrlsparse.data.images import normalise
from ctrlsparse.data.layouts import fail


class DecodedFiles(Dataset):
    """Item i: (uint8 CHW tensor of ``paths[i]`` as RGB, i, ok); ok is False (and the tensor zeros) when the file
    cannot be decoded or has another size, so the caller can name the file in one line."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int]):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int, bool]:
        try:
            with Image.open(self.paths[index]) as image:
                rgb = image.convert("RGB")
            ok = rgb.size == self.size[::-1]
        except OSError:
            ok = False
        if not ok:
            return torch.zeros(3, *self.size, dtype=torch.uint8), index, False
        return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1), index, True


def decode_all(dataset: str, paths: Sequence[Path], size: tuple[int, int], workers: int) -> Tensor:
    """All ``paths`` decoded into one (N, 3, H, W) uint8 tensor; a bad file raises the data set's one-line error."""
    loader = DataLoader(DecodedFiles(paths, size), batch_size=512, num_workers=workers)
    parts = []
    for images, indices, ok in loader:
        if not bool(ok.all()):
            bad = paths[int(indices[~ok][0])]
            raise fail(dataset, bad, f"is not a readable {size[0]}x{size[1]} image")
        parts.append(images)
    return torch.cat(parts) if parts else torch.zeros(0, 3, *size, dtype=torch.uint8)


def _seed_worker(rank: int, worker_id: int) -> None:
    """Workers of different DDP processes draw different augmentations (torch seeds each worker already)."""
    torch.manual_seed(torch.initial_seed() + 7919 * rank)


@dataclass
class StreamedImages:
    """Labelled image datasets (items: uint8 CHW tensor, label) decoded by ``workers`` processes per epoch.

    ``train``/``test`` are torch datasets whose transforms end in a uint8 tensor of ``input_shape``; batches
    are normalised with ``mean``/``std`` on ``device``.
    """

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    workers: int = 0
    device: torch.device = torch.device("cpu")
    shard: tuple[int, int] = (0, 1)

    @property
    def num_train(self) -> int:
        return len(self.train)

    def to(self, device: torch.device | str) -> StreamedImages:
        self.device = torch.device(device)
        return self

    def _loader(self, dataset: Dataset, **kwargs: object) -> DataLoader:
        extra: dict[str, object] = {"persistent_workers": False}
        if self.workers:
            extra |= {"prefetch_factor": 4, "worker_init_fn": partial(_seed_worker, self.shard[0])}
        return DataLoader(dataset, num_workers=self.workers, pin_memory=self.device.type == "cuda", **extra, **kwargs)

    def _batches(self, loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            yield normalise(images, self.mean, self.std), labels.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(self.num_train, generator=generator)
        batches = [index.tolist() for index in shard_batches(order, batch_size, self.shard)]
        seed = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
        return self._batches(self._loader(self.train, batch_sampler=batches, generator=seed))

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._batches(self._loader(self.test, batch_size=batch_size, shuffle=False))


def image_folder_pair(name: str, folder: Path, train_transform, test_transform) -> tuple[Dataset, Dataset]:
    """torchvision ImageFolders over ``folder/train`` and ``folder/val`` (RGB); a class folder without images is
    one line naming data set ``name`` and the folder."""
    from torchvision import datasets

    try:
        train = datasets.ImageFolder(str(folder / "train"), transform=train_transform, loader=rgb_image)
        test = datasets.ImageFolder(str(folder / "val"), transform=test_transform, loader=rgb_image)
    except FileNotFoundError as error:
        raise fail(name, folder, str(error).splitlines()[0]) from None
    return train, test


def rgb_image(path: str) -> Image.Image:
    """ImageFolder's loader (module level, so worker processes can pickle it)."""
    with Image.open(path) as image:
        return image.convert("RGB")
