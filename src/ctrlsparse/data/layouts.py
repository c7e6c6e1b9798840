"""Where each data set lives under the data root and what its folder must hold (torch-free, so the workflow
and the CLI can check a data set without importing torch).

The data root is the hyperparameter ``data_root`` if given, else ``$CTRLSPARSE_DATA``, else ``./data``. Each data
set is a folder in torchvision's or the official on-disk format (``EXPECTED`` spells it out). A missing or
malformed data set raises :class:`DataError`: one line naming the path and the expected layout, before any
training starts; ``download=True`` (``--download``) fetches the downloadable ones first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ctrlsparse.errors import HParamError

ENV = "CTRLSPARSE_DATA"
DEFAULT_ROOT = "data"


class DataError(HParamError):
    """A missing or malformed data set; the message names the path and the expected layout."""

    def __init__(self, message: str):
        super().__init__("data_root", message)


@dataclass(frozen=True)
class Layout:
    folder: str  # under the data root
    required: tuple[str, ...]  # paths inside the folder; "a|b" accepts either
    expected: str  # the layout in words, for error messages
    downloadable: bool


IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
LAYOUTS: dict[str, Layout] = {
    "mnist": Layout(
        "MNIST/raw",
        tuple(f"{name}|{name}.gz" for name in IDX),
        "MNIST/raw/ with the 4 idx files (train-images-idx3-ubyte, ..., t10k-labels-idx1-ubyte, optionally .gz), "
        "as torchvision.datasets.MNIST writes them",
        True,
    ),
    "cifar10": Layout(
        "cifar-10-batches-py",
        (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
        "cifar-10-batches-py/ with the python pickles data_batch_1..5 and test_batch (keys data, labels)",
        True,
    ),
    "cifar100": Layout(
        "cifar-100-python",
        ("train", "test"),
        "cifar-100-python/ with the python pickles train and test (keys data, fine_labels)",
        True,
    ),
    "tinyimagenet": Layout(
        "tiny-imagenet-200",
        ("wnids.txt", "train", "val/images", "val/val_annotations.txt"),
        "tiny-imagenet-200/ as released: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
        "val/val_annotations.txt",
        True,
    ),
    "imagenet": Layout(
        "imagenet",
        ("train", "val"),
        "imagenet/ with ILSVRC2012 train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the validation images sorted into "
        "the same 1000 class folders)",
        False,
    ),
    "imagefolder": Layout(
        ".",
        ("train", "val"),
        "train/<class>/* and val/<class>/* (torchvision's ImageFolder; the data root is this folder itself)",
        False,
    ),
}


def data_root(given: str = "") -> Path:
    """``given`` > ``$CTRLSPARSE_DATA`` > ``./data``."""
    return Path(given or os.environ.get(ENV) or DEFAULT_ROOT)


def fail(dataset: str, path: Path, problem: str) -> DataError:
    """The one-line error for ``dataset`` at ``path``: what is wrong and the layout expected."""
    layout = LAYOUTS[dataset]
    hint = "; --download fetches it" if layout.downloadable else ""
    return DataError(
        f"dataset {dataset!r}: {path} {problem}; expected <data root>/{layout.expected} "
        f"(data root: --data-root, else ${ENV}, else ./{DEFAULT_ROOT}){hint}"
    )


def missing(dataset: str, root: Path) -> Path | None:
    """The first required path of ``dataset`` under ``root`` that does not exist, or None."""
    folder = root / LAYOUTS[dataset].folder
    if not folder.is_dir():
        return folder
    for required in LAYOUTS[dataset].required:
        options = [folder / option for option in required.split("|")]
        if not any(option.exists() for option in options):
            return options[0]
    return None


def locate(dataset: str, root: Path) -> Path:
    """The data set's folder under ``root``; :class:`DataError` if something required is missing."""
    absent = missing(dataset, root)
    if absent is not None:
        raise fail(dataset, absent, "is missing")
    return root / LAYOUTS[dataset].folder
