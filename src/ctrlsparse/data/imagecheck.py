"""The check before training: every image file of a folder data set (imagefolder, imagenet) is decoded once,
in parallel, and the files that do not decode are named in one line before any training step.

Without ``--skip-bad-images`` such a folder stops the run (:class:`BadImages`, one line naming the first files;
the run's ``bad_images.txt`` lists them all); with it, the run trains on the other files and counts the skipped
ones. The verdict is cached per folder, keyed by every file's path, size and modification time (and the Pillow
version), so a rerun or a second seed does not decode the folder again (``$CTRLSPARSE_CACHE``, else
``~/.cache/ctrlsparse``; :func:`ctrlsparse.plumbing.paths.cache_root`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import PIL
from torch.utils.data import DataLoader, Dataset

from ctrlsparse.data.imagefiles import problem
from ctrlsparse.data.layouts import DataError
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_json, write_text

CHECK_VERSION = 1  # raise when what passes changes (the reader, the conversions): cached verdicts are then stale
NAMED = 5  # files named in the one line; the run's bad_images.txt lists every one


@dataclass(frozen=True)
class Verdict:
    """What the check found under ``folder``: ``files`` image files, of which ``bad`` (path, reason) do not
    decode; ``seconds`` the decoding took when it ran; ``cached``: read back, not decoded again."""

    folder: Path
    files: int
    bad: tuple[tuple[Path, str], ...]
    seconds: float
    cached: bool = False


class BadImages(DataError):
    """A folder with files that do not decode: one line naming the first ones; ``listed(out)`` writes them all
    into the run's ``bad_images.txt`` and names it in the line."""

    def __init__(self, dataset: str, verdict: Verdict, listing: Path | None = None):
        self.dataset, self.verdict = dataset, verdict
        count = len(verdict.bad)
        named = ", ".join(f"{relative(verdict.folder, path)} ({why})" for path, why in verdict.bad[:NAMED])
        more = f" and {count - NAMED} more" if count > NAMED else ""
        where = f"; all listed in {listing}" if listing is not None else ""
        super().__init__(
            f"dataset {dataset!r}: {count} of {verdict.files} image files under {verdict.folder} cannot be read: "
            f"{named}{more}{where}; fix or remove them, or give --skip-bad-images to train on the rest"
        )

    def listed(self, out: Path, write: bool = True) -> BadImages:
        """The same error naming ``out``'s ``bad_images.txt``, written first (``write``: by the main process)."""
        listing = paths.bad_images_path(out)
        if write:
            write_listing(listing, self.verdict.bad)
        return BadImages(self.dataset, self.verdict, listing)


def relative(folder: Path, path: Path) -> str:
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def write_listing(listing: Path, bad: Sequence[tuple[Path, str]]) -> None:
    """``bad_images.txt``: one ``<absolute path>\\t<reason>`` line per file (``cut -f1`` gives the paths)."""
    write_text(listing, "".join(f"{Path(path).absolute()}\t{why}\n" for path, why in bad))


class _Problems(Dataset):
    def __init__(self, files: Sequence[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, str]:
        return index, problem(self.files[index])


def _as_list(items: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return items


def decode_each(files: Sequence[Path], workers: int) -> list[tuple[Path, str]]:
    """(file, reason) of each file of ``files`` that does not decode, in order; ``workers`` processes."""
    loader = DataLoader(_Problems(files), batch_size=64, num_workers=workers, collate_fn=_as_list)
    return [(files[index], why) for batch in loader for index, why in batch if why]


def folder_key(folder: Path, files: Sequence[Path]) -> str:
    """What the verdict depends on: the folder, every file's path, size and modification time, Pillow's
    version and :data:`CHECK_VERSION` (hashed; the files' stat is the whole cost)."""
    digest = hashlib.sha256(f"{CHECK_VERSION}\0{PIL.__version__}\0{folder.resolve()}\n".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{relative(folder, path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cached(path: Path, folder: Path) -> Verdict | None:
    try:
        saved = json.loads(path.read_text())
        bad = tuple((folder / name, why) for name, why in saved["bad"])
        return Verdict(folder, int(saved["files"]), bad, float(saved["seconds"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_folder(folder: Path, files: Sequence[Path], workers: int = 0) -> Verdict:
    """The verdict on ``files`` (the image files of ``folder``): from the cache, or decoded by ``workers``
    processes and cached (a cache that cannot be written costs one warning, never the run)."""
    folder = Path(folder)
    cache = paths.image_check_path(folder_key(folder, files))
    cached = _read_cached(cache, folder)
    if cached is not None and cached.files == len(files):
        return cached
    start = time.perf_counter()
    bad = tuple(decode_each(files, workers))
    verdict = Verdict(folder, len(files), bad, time.perf_counter() - start)
    record = {"folder": str(folder.resolve()), "files": len(files), "seconds": round(verdict.seconds, 3)}
    record["bad"] = [[relative(folder, path), why] for path, why in bad]
    try:
        write_json(cache, record)
    except OSError as error:
        print(f"ctrlsparse: warning: the image check is not cached ({error}); set ${paths.CACHE_ENV}", file=sys.stderr)
    return verdict


def record_skipped(out: Path, dataset: str, skipped: Sequence[tuple[Path, str]]) -> None:
    """A run that trains without the ``skipped`` files lists them in ``out``'s ``bad_images.txt`` and says so in
    one line; one that skipped none removes an old list (from the run that stopped on them)."""
    listing = paths.bad_images_path(out)
    if not skipped:
        listing.unlink(missing_ok=True)
        return
    write_listing(listing, skipped)
    named = ", ".join(f"{path} ({why})" for path, why in skipped[:NAMED])
    more = f" and {len(skipped) - NAMED} more" if len(skipped) > NAMED else ""
    print(
        f"ctrlsparse: dataset {dataset!r}: training without {len(skipped)} image file{'s' * (len(skipped) != 1)} "
        "that cannot be read "
        f"(--skip-bad-images): {named}{more}; all listed in {listing}",
        file=sys.stderr,
    )
