"""ImageNet (ILSVRC2012) from class folders ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``.

The validation images must be sorted into the same class folders as the training images (the usual
``valprep.sh`` layout); labels are the positions of the wnids in sorted order, as torchvision's
``ImageFolder`` assigns them. Decoded and augmented every epoch by DataLoader workers (paper.md §5): training
``RandomResizedCrop(224)`` (bilinear) + horizontal flip; evaluation resize 256 + centre crop 224; ImageNet
mean/std; no label smoothing. Every file is decoded once before training, as for imagefolder
(:mod:`ctrlsparse.data.imagecheck`; ``skip_bad_images`` leaves out the files that do not decode).
"""

from __future__ import annotations

from pathlib import Path

from ctrlsparse.data.download import ensure
from ctrlsparse.data.folders import StreamedImages, checked_folder_pair
from ctrlsparse.data.imagefiles import class_folders
from ctrlsparse.data.layouts import fail, locate

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CROP, RESIZE = 224, 256


def load_imagenet(
    root: Path, download: bool = False, workers: int = 0, skip_bad_images: bool = False
) -> StreamedImages:
    """Streamed images (3, 224, 224), labels 0..999 (as many as there are class folders)."""
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    ensure("imagenet", root, download)
    folder = locate("imagenet", root)
    train_classes, val_classes = class_folders(folder / "train"), class_folders(folder / "val")
    if not train_classes:
        raise fail("imagenet", folder / "train", "holds no class folders")
    if train_classes != val_classes:
        raise fail("imagenet", folder / "val", f"has {len(val_classes)} class folders, train/ has {len(train_classes)}")
    train_transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(CROP, interpolation=InterpolationMode.BILINEAR),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
        ]
    )
    test_transform = transforms.Compose(
        [
            transforms.Resize(RESIZE, interpolation=InterpolationMode.BILINEAR),
            transforms.CenterCrop(CROP),
            transforms.PILToTensor(),
        ]
    )
    shape = (3, CROP, CROP)
    train, test, skipped = checked_folder_pair(
        "imagenet", folder, train_classes, (train_transform, test_transform), shape, workers, skip_bad_images
    )
    return StreamedImages(train, test, len(train_classes), shape, MEAN, STD, workers=workers, skipped=skipped)
