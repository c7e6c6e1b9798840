"""The warm job server: a served command behaves exactly like the command line (files, output, exit codes,
SIGTERM), falls back to running itself when no server fits, and never outlives its clients or its parent."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ctrlsparse.plumbing import job_client, paths

TRAIN = ["train", "--arch", "mlp", "--epochs", "2", "--threads", "1", "--quiet"]


def ctrlsparse(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "ctrlsparse", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def listening(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(address))
        except OSError:
            return False
    return True


def children(pid):
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(item) for item in found]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running server and the environment that sends commands to it."""
    address = tmp_path_factory.mktemp("server") / "s.sock"
    process = ctrlsparse("serve", "--socket", str(address))
    assert wait_for(lambda: listening(address))
    yield process, {job_client.ENV_VAR: str(address)}
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert not address.exists()  # the server removes its socket on the way out


def test_a_served_run_equals_the_same_run_on_the_command_line(served, tmp_path):
    process, env = served
    own = ctrlsparse(*TRAIN, "--out", str(tmp_path / "own"))
    forked = ctrlsparse(*TRAIN, "--out", str(tmp_path / "forked"), env=env)
    assert forked.wait(timeout=120) == 0 and own.wait(timeout=120) == 0, forked.stderr.read()
    assert "test accuracy" in forked.stderr.read()  # the child wrote to the client's own stderr

    def numbers(name):
        summary = json.loads(paths.summary_path(tmp_path / name).read_text())
        return {key: value for key, value in summary.items() if "seconds" not in key and "time" not in key}

    assert numbers("forked") == numbers("own")
    assert (tmp_path / "forked" / "metrics.csv").read_text().count("\n") == 3


def test_bad_flags_come_back_as_one_line_and_exit_2(served, tmp_path):
    _, env = served
    result = ctrlsparse("train", "--arch", "nope", "--out", str(tmp_path / "r"), env=env)
    assert result.wait(timeout=60) == 2
    lines = result.stderr.read().strip().splitlines()
    assert len(lines) == 1 and "--arch" in lines[0]


def test_sigterm_reaches_the_served_run_which_saves_its_checkpoint(served, tmp_path):
    _, env = served
    out = tmp_path / "long"
    client = ctrlsparse(*TRAIN[:-1], "--epochs", "100000", "--checkpoint-seconds", "0", "--out", str(out), env=env)
    assert wait_for(lambda: (out / "metrics.csv").exists())
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=60) == 128 + signal.SIGTERM
    assert paths.checkpoint_path(out).exists()


def test_a_killed_client_takes_its_served_run_with_it(served, tmp_path):
    process, env = served
    out = tmp_path / "orphan"
    client = ctrlsparse(*TRAIN[:-1], "--epochs", "100000", "--out", str(out), env=env)
    assert wait_for(lambda: (out / "hparams.json").exists())
    assert children(process.pid)
    client.kill()
    client.wait()
    assert wait_for(lambda: not children(process.pid), timeout=30)


def test_without_a_fitting_server_the_command_runs_itself(served, tmp_path, monkeypatch):
    _, env = served
    monkeypatch.setenv(job_client.ENV_VAR, str(tmp_path / "absent.sock"))
    assert job_client.run_served("train", ["--help"]) is None  # nothing listens there
    monkeypatch.setenv(job_client.ENV_VAR, env[job_client.ENV_VAR])
    monkeypatch.setattr(job_client, "identity", lambda: {"prefix": "/another/env", "executable": "", "version": ""})
    assert job_client.run_served("train", ["--help"]) is None  # another environment: the server refuses
    assert job_client.run_served("report", ["--help"]) is None  # not a served subcommand


def test_the_server_exits_when_its_parent_is_gone(tmp_path):
    parent = subprocess.Popen(["sleep", "1"])
    address = tmp_path / "s.sock"
    process = ctrlsparse("serve", "--socket", str(address), "--parent", str(parent.pid))
    parent.wait()
    assert process.wait(timeout=90) == 0
    assert not address.exists()
