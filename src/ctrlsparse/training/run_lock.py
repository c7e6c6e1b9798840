"""One trainer per run directory: ``train.lock``, flock'ed by the process that trains the run.

A second ``ctrlsparse train`` on the same directory (a duplicate submission, a rerun while the first still
runs) stops at once with :class:`RunBusy`, naming the first's pid, instead of training the run a second time
over the first's files. The lock is the kernel's: it goes when the process ends however it ends (SIGKILL, OOM,
a node reboot), so a killed run never leaves a stale lock; the file itself stays (removing it could let two
processes lock two different files), except when a run that created its directory fails before writing
anything else (bad input). With DDP only rank 0 takes it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ctrlsparse.plumbing import paths


class RunBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


@contextmanager
def hold(out_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of ``out_dir`` (created if needed) for the block; :class:`RunBusy` if another process has it."""
    if not enabled:
        yield
        return
    path = paths.train_lock_path(out_dir)
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown (it is just starting)"
            raise RunBusy(
                f"{out_dir} is being trained by another process (pid {owner}, lock {path}); "
                "let it finish or stop it, then rerun"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        except BaseException:
            if created and [p.name for p in path.parent.iterdir()] == [path.name]:
                path.unlink()  # bad input found before any work: leave nothing behind
                path.parent.rmdir()
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
