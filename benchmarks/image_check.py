"""What the check before training costs on an image folder, and what cheaper checks would miss (issue 27).

Writes a folder of ``--images`` small images (10 classes, train/val 4:1, half PNG, half JPEG, 24-64 px) into a
temporary directory, then times:

- the listing and the cache key (every file's stat): what a run whose verdict is cached pays;
- the check itself (:func:`ctrlsparse.data.imagecheck.check_folder`, cache off) with 0 and ``--workers``
  worker processes, and the cached rerun;
- per-file alternatives, one process: header only (``Image.open``), ``verify()`` (PNG chunk CRCs; a no-op for
  JPEG), the check's own reader (JPEG at 1/8 scale, the rest in full, converted to RGB), and a full decode;
- on ``--photos`` ImageNet-sized JPEGs (500x375, quality 90): full decode vs the 1/8-scale decode, per file;
- which alternatives catch a file cut short: a 256x256 PNG, baseline JPEG and progressive JPEG, each cut at 200
  points spread over its length.

    .venv/bin/python benchmarks/image_check.py                      # 10,000 images, workers 0 and nproc - 1
    .venv/bin/python benchmarks/image_check.py --images 2000 --workers 1,2,4

The files are fresh in the page cache: the times are decoding, not disk reads.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ctrlsparse.data.imagecheck import check_folder, folder_key
from ctrlsparse.data.imagefiles import class_folders, list_images, problem, to_rgb
from ctrlsparse.plumbing import paths


def picture(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A smooth picture with noise (compresses like a photo, not like pure noise)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], -1)
    return Image.fromarray((base + rng.integers(0, 48, base.shape)).clip(0, 255).astype(np.uint8))


def write_folder(root: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    for index in range(count):
        split = "val" if index // 10 % 5 == 4 else "train"
        folder = root / split / f"c{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.integers(24, 65, 2)
        suffix = "png" if index % 2 else "jpg"
        picture(rng, int(size[0]), int(size[1])).save(folder / f"{index}.{suffix}")
    classes = class_folders(root / "train")
    return [path for split in ("train", "val") for path, _ in list_images(root / split, classes)]


def failure(read: Callable[[Path], object]) -> Callable[[Path], str]:
    """A check that reads a file with ``read``: "" when it passes, else the error."""

    def check(path: Path) -> str:
        try:
            read(path)
        except Exception as error:
            return str(error) or type(error).__name__
        return ""

    return check


def verified(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()


def decoded(path: Path) -> None:
    with Image.open(path) as image:
        to_rgb(image)


METHODS = {
    "header only": failure(lambda path: Image.open(path).close()),
    "verify()": failure(verified),
    "the check (JPEG 1/8)": problem,
    "full decode": failure(decoded),
}


def timed(method, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        method(path)
    return time.perf_counter() - start


def detection(workdir: Path) -> None:
    rng = np.random.default_rng(1)
    image = picture(rng, 256, 256)
    kinds = {"PNG": ("PNG", {}), "JPEG": ("JPEG", {"quality": 90}), "progressive JPEG": ("JPEG", {"progressive": True})}
    print("\nfiles cut short (200 cut points each): share caught")
    print(f"| file | {' | '.join(METHODS)} |\n|---|{'---|' * len(METHODS)}")
    for name, (fmt, options) in kinds.items():
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        data = buffer.getvalue()
        caught = dict.fromkeys(METHODS, 0)
        cuts = np.linspace(1, len(data) - 1, 200).astype(int)
        for cut in cuts:
            path = workdir / f"cut.{fmt.lower()}"
            path.write_bytes(data[:cut])
            for method, check in METHODS.items():
                caught[method] += bool(check(path))
        print(f"| {name} ({len(data):,} B) | " + " | ".join(f"{caught[m] / len(cuts):.0%}" for m in METHODS) + " |")


def photos(workdir: Path, count: int) -> None:
    rng = np.random.default_rng(2)
    folder = workdir / "photos"
    folder.mkdir()
    files = []
    for index in range(count):
        files.append(folder / f"{index}.JPEG")
        picture(rng, 375, 500).save(files[-1], quality=90)
    for method in ("full decode", "the check (JPEG 1/8)"):
        seconds = timed(METHODS[method], files)
        print(f"500x375 JPEG, {method}: {1000 * seconds / count:.2f} ms a file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument(
        "--workers", type=lambda text: [int(n) for n in text.split(",")], default=[len(os.sched_getaffinity(0)) - 1]
    )
    parser.add_argument("--photos", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        os.environ[paths.CACHE_ENV] = str(workdir / "cache")
        root = workdir / "folder"
        start = time.perf_counter()
        files = write_folder(root, args.images)
        print(f"{len(files):,} images written in {time.perf_counter() - start:.1f}s ({os.cpu_count()} CPUs)")
        start = time.perf_counter()
        classes = class_folders(root / "train")
        listed = [path for split in ("train", "val") for path, _ in list_images(root / split, classes)]
        folder_key(root, listed)
        print(f"listing + cache key (stat of every file): {time.perf_counter() - start:.2f}s")
        for workers in sorted({0, *args.workers}):
            for cached in paths.cache_root().glob("*/*.json"):
                cached.unlink()
            start = time.perf_counter()
            verdict = check_folder(root, listed, workers)
            print(f"check, {workers} workers: {time.perf_counter() - start:.2f}s ({len(verdict.bad)} bad)")
        start = time.perf_counter()
        verdict = check_folder(root, listed, max(args.workers))
        print(f"check again (cached: {verdict.cached}): {time.perf_counter() - start:.2f}s")
        print("\nper-file alternatives, one process:")
        for name, method in METHODS.items():
            seconds = timed(method, files)
            print(f"{name}: {seconds:.2f}s ({1e6 * seconds / len(files):.0f} us a file)")
        photos(workdir, args.photos)
        detection(workdir)


if __name__ == "__main__":
    main()
