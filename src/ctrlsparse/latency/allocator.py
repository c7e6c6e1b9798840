"""Time models in a process that reuses the memory it frees, as a serving runtime does.

glibc's ``malloc`` hands every block over its mmap threshold (32 MB at most, dynamically) to the kernel afresh and
returns it on ``free``; the next forward's activation of that size then faults its pages in again, zero-filled. A
dense torchvision mobilenet_v2 at batch 128, 64x64, has activations of 50 MB: 12,289 minor page faults and 21.6 of
its 49.8 ms in the kernel a call, and a purged model of 0.3 of its MACs measured 0.348 of it instead of 0.472
(``benchmarks/page_faults.py``, both ways in one process; efficientnet_b0 at 224x224, batch 16: 58,737 faults, 0.328
instead of 0.480). Serving stacks keep their memory (ONNX Runtime's arena; jemalloc or tcmalloc, which PyTorch's
performance tuning guide recommends): so every measurement here runs with the mmap and trim thresholds of the
process raised (``mallopt``), under which no page faults a call after the first two. Not glibc (macOS, musl): left
as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEPT = (1 << 30, (1 << 31) - 1)  # blocks under 1 GiB from the heap; its free top never returned to the kernel
# after a measurement: the limits glibc's own dynamic thresholds rise to in a long-running process (32 MB, 64 MB)
AFTER = (32 << 20, 64 << 20)


@functools.cache
def _mallopt():
    """glibc's ``mallopt``, looked up once; None elsewhere."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def _set(mmap_threshold: int, trim_threshold: int) -> bool:
    mallopt = _mallopt()
    return mallopt is not None and bool(
        mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """While inside, this process's allocator keeps what it frees (glibc; yields whether it could). On leaving,
    the thresholds glibc's own rise to: a training run that calibrates its latency keeps no heap it does not use.
    Also a decorator: ``@freed_memory_kept()`` around every call of a timing function."""
    kept = _set(*KEPT)
    try:
        yield kept
    finally:
        if kept:
            _set(*AFTER)
