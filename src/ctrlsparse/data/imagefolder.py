"""Your own images: ``imagefolder``, the torchvision ``ImageFolder`` convention, with ``--data-root`` pointing at

    train/<class>/*.png|jpg|...    the training images, one folder per class
    val/<class>/*                  the test images, in folders of the same class names

Labels are the positions of the class names in sorted order (as ``ImageFolder`` assigns them); train/ and val/
must hold the same classes. Streamed like ImageNet (:class:`~ctrlsparse.data.folders.StreamedImages`: decoded
every epoch by DataLoader workers, normalised on the device): each image is converted to RGB, its short side
resized to ``image_size`` (bilinear) and centre-cropped to ``image_size`` x ``image_size``, then normalised with
``image_mean``/``image_std`` (hyperparameters; ImageNet's by default). No augmentation: flips and crops are not
right for every image set (digits), so the images are seen as they are.

Before training every image file is decoded once (:mod:`ctrlsparse.data.imagecheck`): files that do not
decode stop the run with one line naming them, or are left out with ``skip_bad_images``. Which files count and
how each mode becomes RGB: :mod:`ctrlsparse.data.imagefiles` (hidden files and other extensions are ignored).
"""

from __future__ import annotations

from pathlib import Path

from ctrlsparse.data.folders import StreamedImages, checked_folder_pair
from ctrlsparse.data.imagefiles import class_folders
from ctrlsparse.data.layouts import fail, locate


def load_imagefolder(
    root: Path,
    download: bool = False,
    workers: int = 0,
    image_size: int = 32,
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406),
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225),
    skip_bad_images: bool = False,
) -> StreamedImages:
    """Streamed images (3, image_size, image_size), labels 0..classes-1. ``download`` is refused (your data);
    ``skip_bad_images``: train on the files that decode (else a bad file stops the run before training)."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    if download:
        raise fail("imagefolder", Path(root), "cannot be downloaded (it is your own image folder)")
    folder = locate("imagefolder", Path(root))
    train_classes, val_classes = class_folders(folder / "train"), class_folders(folder / "val")
    if not train_classes:
        raise fail("imagefolder", folder / "train", "holds no class folders")
    if train_classes != val_classes:
        raise fail("imagefolder", folder / "val", f"has classes {val_classes}, train/ has {train_classes}")
    transform = transforms.Compose(
        [
            transforms.Resize(image_size, interpolation=InterpolationMode.BILINEAR),
            transforms.CenterCrop(image_size),
            transforms.PILToTensor(),
        ]
    )
    shape = (3, image_size, image_size)
    train, test, skipped = checked_folder_pair(
        "imagefolder", folder, train_classes, (transform, transform), shape, workers, skip_bad_images
    )
    mean, std = tuple(image_mean), tuple(image_std)
    return StreamedImages(train, test, len(train_classes), shape, mean, std, workers=workers, skipped=skipped)
