"""The warm job server's client: hand ``ctrlsparse train|purge|track`` to the server named in
``$CTRLSPARSE_SERVER`` and wait for it (stdlib only: a served command costs a connect, not an import of torch).

See :mod:`ctrlsparse.plumbing.job_server` for the server and how the two meet; when no server fits, the
caller runs the command itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

from ctrlsparse.plumbing.provenance import library_version

ENV_VAR = "CTRLSPARSE_SERVER"
# Subcommands a server runs; the others (report, plots, ...) are torch-free and start fast on their own.
SERVED = frozenset({"train", "purge", "track"})
HEADER = struct.Struct("!I")  # length of the JSON request that follows
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def identity() -> dict[str, str]:
    """A client and a server must run the same interpreter and library to swap one for the other."""
    return {"prefix": sys.prefix, "executable": sys.executable, "version": library_version()}


def run_served(command: str, argv: list[str]) -> int | None:
    """Run ``ctrlsparse COMMAND ARGV`` in the server named by $CTRLSPARSE_SERVER and return its exit code;
    None when there is no usable server (the caller then runs the command itself)."""
    address = os.environ.get(ENV_VAR)
    if not address or command not in SERVED or "LOCAL_RANK" in os.environ:  # torchrun workers run themselves
        return None
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(address)
    except OSError:
        return None
    with connection:
        request = {"argv": [command, *argv], "cwd": os.getcwd(), "env": dict(os.environ), **identity()}
        payload = json.dumps(request).encode()
        try:
            socket.send_fds(connection, [HEADER.pack(len(payload))], [0, 1, 2])
            connection.sendall(payload)
            reader = connection.makefile("r")
            first = reader.readline().split()
        except OSError:
            return None
        if first[:1] != ["pid"]:  # "refused <why>": another environment; run here
            return None
        child = int(first[1])
        forward = {sig: signal.signal(sig, lambda signum, frame: kill(child, signum)) for sig in FORWARDED}
        try:
            last = reader.readline().split()
        finally:
            for sig, previous in forward.items():
                signal.signal(sig, previous)
        if last[:1] != ["exit"]:
            print(f"ctrlsparse: the job server ({address}) went away while running the command", file=sys.stderr)
            return 1
        return int(last[1])


def kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
