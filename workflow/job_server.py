"""The workflow's warm job server (ctrlsparse.plumbing.job_server): started by ``onstart`` for local runs, stopped when the
workflow ends, however it ends (``onsuccess``/``onerror``, interpreter exit; the server itself also exits when
this Snakemake process is gone). Train, purge and track jobs then run as forks of one process that imported
torch, cooper and mlflow once, instead of paying ~10 s of imports each. Cluster runs never use it: a job must
run inside its own allocation.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

from ctrlsparse.plumbing.job_client import ENV_VAR

_server: subprocess.Popen | None = None


def start(enabled: bool, local: bool, log_path: str) -> None:
    """Start ``ctrlsparse serve`` and name its socket in the environment the jobs inherit."""
    global _server
    if not enabled or not local or _server is not None or os.environ.get(ENV_VAR):
        return
    directory = tempfile.mkdtemp(prefix="ctrlsparse-")  # short: Unix socket paths are limited to ~107 bytes
    address = os.path.join(directory, "server.sock")
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "ab") as log:
        _server = subprocess.Popen(
            [sys.executable, "-m", "ctrlsparse", "serve", "--socket", address, "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the jobs (their clients forward it), not the server
        )
    os.environ[ENV_VAR] = address  # jobs started before the server listens simply run on their own
    atexit.register(stop)


def stop() -> None:
    global _server
    server, _server = _server, None
    if server is None:
        return
    address = os.environ.pop(ENV_VAR, "")
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    if address:
        shutil.rmtree(os.path.dirname(address), ignore_errors=True)
