"""TinyImageNet (200 classes, 64x64) from the official folder layout ``<root>/tiny-imagenet-200/``:

    wnids.txt                          the 200 class ids (label = position in sorted order)
    train/<wnid>/images/*.JPEG         500 training images per class
    val/images/*.JPEG                  10,000 validation images (the test set here; the official test has no labels)
    val/val_annotations.txt            "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per validation image

The JPEGs are decoded once (by DataLoader workers) into uint8 tensors that live on the training device.
paper.md §5: horizontal flip, random crop 64 with zero padding 4, normalised to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from ctrlsparse.data.download import ensure
from ctrlsparse.data.folders import decode_all
from ctrlsparse.data.images import ImageTensors
from ctrlsparse.data.layouts import fail, locate

SIZE = (64, 64)
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def read_index(folder: Path) -> tuple[list[Path], list[int], list[Path], list[int], list[str]]:
    """(train files, train labels, val files, val labels, class ids) from the folder layout."""
    wnids = sorted(set((folder / "wnids.txt").read_text().split()))
    if not wnids:
        raise fail("tinyimagenet", folder / "wnids.txt", "lists no class ids")
    label = {wnid: index for index, wnid in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise fail("tinyimagenet", folder / "train" / wnid / "images", "holds no .JPEG images")
        train_files += files
        train_labels += [label[wnid]] * len(files)
    val_files, val_labels = [], []
    annotations = folder / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label:
            raise fail(
                "tinyimagenet", annotations, f"line {number} is not '<file>\\t<wnid>...' with a wnid of wnids.txt"
            )
        val_files.append(folder / "val" / "images" / fields[0])
        val_labels.append(label[fields[1]])
    if not val_files:
        raise fail("tinyimagenet", annotations, "lists no validation images")
    return train_files, train_labels, val_files, val_labels, wnids


def load_tinyimagenet(root: Path, download: bool = False, workers: int = 0) -> ImageTensors:
    """Images (3, 64, 64) uint8 on the device (normalised per batch), labels 0..199."""
    ensure("tinyimagenet", root, download)
    folder = locate("tinyimagenet", root)
    train_files, train_labels, val_files, val_labels, wnids = read_index(folder)
    return ImageTensors(
        decode_all("tinyimagenet", train_files, SIZE, workers),
        torch.tensor(train_labels),
        decode_all("tinyimagenet", val_files, SIZE, workers),
        torch.tensor(val_labels),
        len(wnids),
        mean=MEAN,
        std=STD,
        crop_padding=4,
        flip=True,
    )
