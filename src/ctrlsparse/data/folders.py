"""Image folders read with PIL by DataLoader worker processes (TinyImageNet, ImageNet, imagefolder).

- :func:`decode_all` decodes a list of small images once into one uint8 tensor (TinyImageNet then lives on
  the device like CIFAR).
- :class:`StreamedImages` decodes and augments every epoch in workers (ImageNet, imagefolder): pinned uint8 host
  batches, non-blocking copies, normalisation on the device. Its order comes from the data generator and each
  process of a DDP job reads only its share of every global batch. Its files are checked before training
  (:func:`checked_folder_pair`, :mod:`ctrlsparse.data.imagecheck`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ctrlsparse.data.base import shard_batches
from ctrlsparse.data.imagecheck import BadImages, check_folder
from ctrlsparse.data.imagefiles import EXTENSIONS, UnreadableImage, list_images, read_rgb, reason
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
    """Labelled image datasets (:class:`LabelledFiles`) decoded by ``workers`` processes per epoch.

    ``train``/``test`` hold items (uint8 tensor of ``input_shape``, label, problem); batches are normalised with
    ``mean``/``std`` on ``device``, and a file that failed to decode raises :class:`UnreadableImage` naming it.
    ``skipped``: the files (path, reason) the check before training left out (``--skip-bad-images``).
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
    skipped: tuple[tuple[Path, str], ...] = ()

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
        for images, labels, problems in loader:
            failed = next((problem for problem in problems if problem), "")
            if failed:
                raise UnreadableImage(
                    f"{failed}; it passed the check before training, so it changed on disk since: the run stopped "
                    "and its last checkpoint is kept; restore the file, then rerun the same command to resume"
                )
            images = images.to(self.device, non_blocking=True)
            yield normalise(images, self.mean, self.std), labels.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(self.num_train, generator=generator)
        batches = [index.tolist() for index in shard_batches(order, batch_size, self.shard)]
        seed = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
        return self._batches(self._loader(self.train, batch_sampler=batches, generator=seed))

    @property
    def test_labels(self) -> Tensor:
        return torch.tensor([label for _, label in self.test.samples])

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._batches(self._loader(self.test, batch_size=batch_size, shuffle=False))


class LabelledFiles(Dataset):
    """Item i: (uint8 tensor of ``samples[i]``'s file read as RGB by :func:`~ctrlsparse.data.imagefiles.read_rgb`
    and ``transform``, its label, "") or, for a file that fails to decode, (zeros of ``shape``, label, "<path>:
    <reason>"): the batches name it in one line instead of a worker's traceback."""

    def __init__(self, samples: Sequence[tuple[Path, int]], transform, shape: tuple[int, ...]):
        self.samples, self.transform, self.shape = samples, transform, shape

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, str]:
        path, label = self.samples[index]
        try:
            return self.transform(read_rgb(path)), label, ""
        except Exception as error:  # whatever Pillow raises on a file that changed on disk since the check
            return torch.zeros(self.shape, dtype=torch.uint8), label, f"{path}: {reason(error)}"


def checked_folder_pair(
    name: str,
    folder: Path,
    classes: list[str],
    transforms: tuple[Any, Any],
    shape: tuple[int, ...],
    workers: int = 0,
    skip_bad_images: bool = False,
) -> tuple[LabelledFiles, LabelledFiles, tuple[tuple[Path, str], ...]]:
    """(train, test, skipped (file, reason)) over ``folder/train`` and ``folder/val`` (the ``classes``), every
    image file checked first (:func:`~ctrlsparse.data.imagecheck.check_folder`): files that do not decode raise
    :class:`~ctrlsparse.data.imagecheck.BadImages`, or with ``skip_bad_images`` are left out."""
    samples = [list_images(folder / split, classes) for split in ("train", "val")]
    verdict = check_folder(folder, [path for found in samples for path, _ in found], workers)
    if verdict.bad and not skip_bad_images:
        raise BadImages(name, verdict)
    bad = {path for path, _ in verdict.bad}
    datasets = []
    for split, found, transform in zip(("train", "val"), samples, transforms, strict=True):
        kept = [(path, label) for path, label in found if path not in bad]
        empty = sorted(set(range(len(classes))) - {label for _, label in kept})
        if empty:
            readable = "readable " if bad else ""
            raise fail(
                name, folder / split / classes[empty[0]], f"holds no {readable}image files ({', '.join(EXTENSIONS)})"
            )
        datasets.append(LabelledFiles(kept, transform, shape))
    return datasets[0], datasets[1], verdict.bad
