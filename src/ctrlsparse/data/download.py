"""Fetch a data set into the data root, only when asked (``--download``); never in tests."""

from __future__ import annotations

from pathlib import Path

from ctrlsparse.data.layouts import LAYOUTS, fail, missing

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def ensure(dataset: str, root: Path, download: bool) -> None:
    """Download ``dataset`` into ``root`` if ``download`` and something is missing (torchvision's fetchers
    write exactly the layouts of :mod:`ctrlsparse.data.layouts`)."""
    if not download or missing(dataset, root) is None:
        return
    if not LAYOUTS[dataset].downloadable:
        raise fail(dataset, root / LAYOUTS[dataset].folder, "cannot be downloaded (licence: get it from image-net.org)")
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    if dataset == "mnist":
        tvd.MNIST(str(root), download=True)
    elif dataset == "cifar10":
        tvd.CIFAR10(str(root), download=True)
    elif dataset == "cifar100":
        tvd.CIFAR100(str(root), download=True)
    elif dataset == "tinyimagenet":
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINYIMAGENET_URL, str(root))
