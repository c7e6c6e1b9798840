"""Atomic outputs: a writer that fails half-way, or a process SIGKILLed while it saves, never leaves a
half-written checkpoint, summary or metrics file behind; the previous complete file stays readable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import torch
from reliability import job_env

from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import save_torch, write_csv, write_json
from ctrlsparse.tracking import find_runs


class FailsWhenPickled:
    def __reduce__(self):
        raise OSError("disk full (simulated)")


class FailsWhenFormatted:
    def __str__(self):
        raise OSError("disk full (simulated)")


def test_a_writer_failing_half_way_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    checkpoint, metrics = paths.checkpoint_path(tmp_path), paths.metrics_path(tmp_path)
    save_torch(checkpoint, {"epoch": 1, "model": torch.ones(1000)})
    write_csv(metrics, [{"epoch": 1, "loss": 0.5}])
    before = checkpoint.read_bytes(), metrics.read_bytes()
    # the tensor is already streamed into the file when the second entry fails to pickle
    for write in (
        lambda: save_torch(checkpoint, {"model": torch.zeros(100_000), "bad": FailsWhenPickled()}),
        lambda: write_csv(metrics, [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": FailsWhenFormatted()}]),
    ):
        try:
            write()
        except OSError:
            pass
        else:
            raise AssertionError("the simulated failure did not happen")
    assert (checkpoint.read_bytes(), metrics.read_bytes()) == before
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.csv"]


SAVER = """
import sys, torch
from ctrlsparse.plumbing.files import save_torch, write_json
out, step = sys.argv[1], 0
while True:
    step += 1
    save_torch(out + "/checkpoint.pt", {"epoch": step, "model": torch.full((2_000_000,), float(step))})
    write_json(out + "/summary.json", {"run_key": "x", "epoch": step, "rows": list(range(200_000))})
    print(step, flush=True)
"""


def test_sigkill_during_saves_leaves_complete_files_only(tmp_path):
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=job_env()
    )
    for _ in range(3):  # a few complete saves, then kill while the next one is being written
        assert saver.stdout.readline()
    time.sleep(0.05)
    saver.send_signal(signal.SIGKILL)
    saver.wait(30)
    state = torch.load(paths.checkpoint_path(tmp_path), weights_only=True)
    assert state["epoch"] >= 3 and torch.equal(state["model"], torch.full((2_000_000,), float(state["epoch"])))
    summary = json.loads(paths.summary_path(tmp_path).read_text())
    assert summary["epoch"] >= 3 and len(summary["rows"]) == 200_000
    # A temporary left by the kill is hidden (dot-name) and never found as a run's summary.
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p.suffix == ".tmp")
    assert find_runs([str(tmp_path)]) == [tmp_path]
    write_json(paths.summary_path(tmp_path), {"run_key": "x"})  # and the next write still works
