"""The files of an image folder and how each is read as RGB: one reader for the check before training
(:mod:`ctrlsparse.data.imagecheck`) and for every epoch, so that a file the check passed reads the same later.

Which files: torchvision's ``ImageFolder`` convention, by extension (``.jpg .jpeg .png .ppm .bmp .pgm .tif
.tiff .webp``, any case), in the same order; hidden files and folders (a name starting with ``.``: ``.DS_Store``,
macOS's ``._photo.jpg``, ``.ipynb_checkpoints``) are never read. Everything else is ignored silently.

How each mode becomes RGB (README, "Your model, your images"): RGB as it is; grayscale (1, L) repeated to three
channels; palette (P) through its palette; CMYK and YCbCr by Pillow's conversion; alpha (RGBA, LA, PA) dropped,
as torchvision's loader does; 16-bit grayscale (I;16, and Pillow's I, which 16-bit PGMs open as) scaled to 8
bits as value / 257 (Pillow's own conversion clips it: nearly white); 16-bit RGB(A) PNGs Pillow reads at 8
bits already. 32-bit float pixels (F) have no scale to 8 bits: such a file is unsupported, like one that does not
decode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# torchvision.datasets.folder.IMG_EXTENSIONS (0.29), written out so that listing a folder needs no torchvision
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImage(RuntimeError):
    """A file that passed the check before training failed to decode during it (it changed on disk)."""


def hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_file(name: str) -> bool:
    return not hidden(name) and name.lower().endswith(EXTENSIONS)


def class_folders(split: Path) -> list[str]:
    """The class folders of ``split`` (train/ or val/), sorted: a label is a position in this list."""
    return sorted(entry.name for entry in split.iterdir() if entry.is_dir() and not hidden(entry.name))


def list_images(split: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(file, label) of every image file under ``split/<class>/`` (sub-folders too, links followed), in
    torchvision's order: class by class, folders sorted, files sorted in each."""
    samples = []
    for label, name in enumerate(classes):
        walked = []
        for root, folders, files in os.walk(split / name, followlinks=True):
            folders[:] = [folder for folder in folders if not hidden(folder)]
            walked.append((root, sorted(file for file in files if is_image_file(file))))
        samples += [(Path(root, file), label) for root, files in sorted(walked) for file in files]
    return samples


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` decoded and converted to RGB as the module docstring says; ValueError for a mode without one."""
    mode = image.mode
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(image.convert("I") if mode != "I" else image, dtype=np.int64)
        return Image.fromarray(((values.clip(0, 65535) + 128) // 257).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        raise ValueError("unsupported mode F (32-bit float pixels have no scale to 8 bits)")
    if mode == "P" and "transparency" in image.info:  # by way of RGBA: the same colours, without Pillow's warning
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as RGB (the loaders' reader)."""
    with Image.open(path) as image:
        return to_rgb(image)


def reason(error: BaseException) -> str:
    """Why a file cannot be read, in a few words."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image"
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if "truncated" in text.lower() or isinstance(error, EOFError):
        return "truncated"
    return text[:120]


def problem(path: str | Path) -> str:
    """ "" when ``path`` decodes to RGB as the loaders read it, else why not (:func:`reason`). JPEGs are decoded
    at 1/8 scale (libjpeg's DCT scaling): the whole entropy-coded stream is still read, so a truncated or
    corrupt file fails as at full size, at a fraction of the cost (benchmarks/image_check.py)."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft(None, (1, 1))
            to_rgb(image)
    except Exception as error:  # whatever Pillow raises on a bad file (OSError, SyntaxError, ValueError, ...)
        return reason(error)
    return ""
