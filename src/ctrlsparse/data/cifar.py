"""CIFAR-10 and CIFAR-100 from torchvision's on-disk python pickles.

``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}`` (keys ``data``: N x 3072 uint8, ``labels``) and
``<root>/cifar-100-python/{train, test}`` (keys ``data``, ``fine_labels``). paper.md §5: random crop 32 with
zero padding 4, horizontal flip, per-dataset mean/std; kept on the training device and augmented there.
The pickles are read with an unpickler that builds only dicts, lists, bytes and numpy arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrlsparse.data.download import ensure
from ctrlsparse.data.images import ImageTensors
from ctrlsparse.data.layouts import fail, locate

# Channel statistics of the training images (on the [0, 1] scale).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class ArrayUnpickler(pickle.Unpickler):
    """Refuses every global but numpy's array reconstruction: a data file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(dataset: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as handle:
            batch = ArrayUnpickler(handle, encoding="bytes").load()
        batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, AttributeError, KeyError, ValueError, TypeError) as error:
        raise fail(dataset, path, f"is not a CIFAR pickle with keys data and {label_key} ({error})") from None
    if len(images) != len(labels):
        raise fail(dataset, path, f"holds {len(images)} images but {len(labels)} labels")
    return images, labels


def load_cifar(
    dataset: str, train_files: list[str], test_file: str, label_key: str, classes: int, root: Path
) -> ImageTensors:
    folder = locate(dataset, root)
    parts = [read_batch(dataset, folder / name, label_key) for name in [*train_files, test_file]]
    train = [np.concatenate(column) for column in zip(*parts[:-1], strict=True)]
    tensors = [torch.from_numpy(array) for array in (*train, *parts[-1])]
    if any(int(labels.max()) >= classes for labels in tensors[1::2]):
        raise fail(dataset, folder, f"has labels outside 0..{classes - 1}")
    mean, std = STATS[dataset]
    return ImageTensors(*tensors, classes, mean=mean, std=std, crop_padding=4, flip=True)


def load_cifar10(root: Path, download: bool = False, workers: int = 0) -> ImageTensors:
    ensure("cifar10", root, download)
    return load_cifar("cifar10", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10, root)


def load_cifar100(root: Path, download: bool = False, workers: int = 0) -> ImageTensors:
    ensure("cifar100", root, download)
    return load_cifar("cifar100", ["train"], "test", "fine_labels", 100, root)
