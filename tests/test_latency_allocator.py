"""Models are timed while the process keeps the memory it frees (ctrlsparse.latency.allocator).

Checked on page faults, not on times: a call that makes a 40 MB tensor and drops it faults its 10,240 pages in
afresh under glibc's defaults (every block over 32 MB is mapped and unmapped), and none in a measurement's rounds
(after a few calls: the heap's free blocks take some to settle). In a fresh interpreter, so that no earlier test
has touched the allocator."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")

SCRIPT = """
import resource, torch
from ctrlsparse.latency import interleaved_times

x = torch.ones(10 * 2**20)  # 40 MB: each call's x * 2 is one block over glibc's largest mmap threshold
faults = []

def call(_):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    total = float((x * 2.0).sum())
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return total

torch.set_num_threads(1)
for _ in range(16):
    call(None)
untouched = sum(faults[-4:]) / 4
faults.clear()
interleaved_times({"call": call}, x[:1], seconds=0.0, min_rounds=14)
timed = sum(faults[-4:]) / 4
print(untouched, timed)
"""


def test_a_measurement_keeps_freed_memory_so_no_timed_call_faults_its_activations_in_afresh():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    untouched, timed = map(float, out.split())
    assert untouched > 5_000  # glibc's default: the 40 MB block's pages faulted in again every call
    assert timed < 100
