"""The warm job server: run ``ctrlsparse train|purge|track`` commands as forks of one process that has already
imported torch, torch._dynamo, cooper and mlflow (about 10 s of CPU per process on the 2-core VMs).

``ctrlsparse serve --socket PATH`` imports once and listens on a Unix socket. A command whose environment
names that socket in ``CTRLSPARSE_SERVER`` sends its argv, working directory, environment and its own stdin,
stdout and stderr (the file descriptors themselves, SCM_RIGHTS) to the server, which forks a child that runs
the command exactly as the command line would: same output files, same log, same exit code. The client
waits, forwards SIGTERM/SIGINT/SIGHUP to the child (so SLURM-style stops still save the checkpoint) and exits
with the child's code. When the server is absent or belongs to another Python environment (conda jobs), the
command simply runs in its own process.

The Snakemake workflow starts a server for local execution only (never for cluster jobs: a forked child
would escape the job's allocation) and stops it when the workflow ends; the server also exits when the
process that started it dies. Fork safety: the server never starts threads, OpenMP pools or CUDA, so each
child starts from a clean single-threaded image and sets its own thread count (``--threads``).

The commands a child runs come from the table handed to :func:`main` (``ctrlsparse.cli.dispatch``): the
server never imports the command line, and the client (:mod:`ctrlsparse.plumbing.job_client`) never imports
the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ctrlsparse.plumbing.job_client import ENV_VAR, HEADER, identity, kill

# What the children would import anyway; the train CLI imports torch only once its flags are valid.
PRELOAD = (
    "torch",
    "torch._dynamo",
    "cooper",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",  # the SQLite store's ORM: ~1.2 s of imports in every train job
    "matplotlib.figure",  # each run's dynamics.png
    "matplotlib.backends.backend_agg",
    "ctrlsparse.training.loop",
    "ctrlsparse.problems.constrained",
    "ctrlsparse.problems.penalized",
    "ctrlsparse.problems.magnitude",
    "ctrlsparse.training.purge_cli",
    "onnxscript",  # the purge's ONNX export and check: ~0.8 s of imports in every purge job
    "onnxruntime",
    "ctrlsparse.tracking.mirror",
)


class Server:
    """One listening socket, one forked child per request; single-threaded (selectors + SIGCHLD wake-ups)."""

    def __init__(
        self,
        address: Path,
        dispatch: Callable[[list[str]], int],
        parent: int | None = None,
        idle_seconds: float = 3600.0,
    ):
        self.address = address
        self.dispatch = dispatch  # runs one command line (argv) in this process: the CLI's command table
        self.parent = parent
        self.idle_seconds = idle_seconds
        self.children: dict[int, socket.socket] = {}  # pid -> the client's connection
        self.selector = selectors.DefaultSelector()
        self.stopping = False

    def serve_forever(self) -> None:
        me = identity()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.address.parent.mkdir(parents=True, exist_ok=True)
        self.address.unlink(missing_ok=True)
        listener.bind(str(self.address))
        listener.listen(64)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_read, selectors.EVENT_READ, "signal")
        print(f"ctrlsparse serve: listening on {self.address} (pid {os.getpid()})", flush=True)
        last_active = time.monotonic()
        try:
            while not self.stopping:
                for key, _ in self.selector.select(timeout=2.0):
                    if key.data == "accept":
                        self._accept(listener, me, wake_read, wake_write)
                    elif key.data == "signal":
                        _drain(wake_read)
                    else:  # a client hung up before its child ended (killed): stop the child
                        kill(key.data, signal.SIGTERM)
                        self.selector.unregister(key.fileobj)
                self._reap()
                if self.children:
                    last_active = time.monotonic()
                if self.parent is not None and not _alive(self.parent):
                    break
                if time.monotonic() - last_active > self.idle_seconds:
                    break
        finally:
            for pid in self.children:
                kill(pid, signal.SIGTERM)
            listener.close()
            self.address.unlink(missing_ok=True)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _accept(self, listener: socket.socket, me: dict, *private: socket.socket) -> None:
        connection, _ = listener.accept()
        try:
            connection.settimeout(10.0)
            message, fds, _, _ = socket.recv_fds(connection, HEADER.size, 3)
            if not message:  # a readiness probe: connected, sent nothing
                connection.close()
                return
            if len(message) != HEADER.size or len(fds) != 3:
                raise OSError("malformed request")
            request = json.loads(_receive(connection, HEADER.unpack(message)[0]))
        except (OSError, ValueError) as error:
            print(f"ctrlsparse serve: dropped a request: {error}", file=sys.stderr, flush=True)
            connection.close()
            return
        try:
            mismatch = [key for key in me if request.get(key) != me[key]]
            if mismatch:
                connection.sendall(f"refused {','.join(mismatch)} differ\n".encode())
                connection.close()
                return
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in (*private, *self.children.values()):
                    other.close()
                _run_child(request, fds, connection, self.dispatch)
            self.children[pid] = connection
            connection.sendall(f"pid {pid}\n".encode())
            self.selector.register(connection, selectors.EVENT_READ, pid)
        except OSError:
            connection.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.children.pop(pid, None)
            if connection is None:
                continue
            if connection.fileno() >= 0 and self.selector.get_map().get(connection.fileno()) is not None:
                self.selector.unregister(connection)
            code = os.waitstatus_to_exitcode(status)  # -N when signal N ended it: report 128 + N, as a shell does
            with contextlib.suppress(OSError):
                connection.sendall(f"exit {code if code >= 0 else 128 - code}\n".encode())
            connection.close()


def _run_child(request: dict, fds: list[int], connection: socket.socket, dispatch: Callable[[list[str]], int]) -> None:
    """In the forked child: become the command (cwd, environment, stdio, argv), run it, exit with its code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        connection.close()
        os.setsid()  # the client forwards signals; a Ctrl-C at the server's terminal must not reach the child
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["ctrlsparse", *request["argv"]]
        code = dispatch(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # the command's own traceback, as the command line would print it
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _receive(connection: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 1 << 16))
        if not chunk:
            raise OSError("request cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _drain(wake: socket.socket) -> None:
    try:
        while wake.recv(4096):
            pass
    except BlockingIOError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def preload() -> None:
    """Import what the served commands import, and build one optimizer: torch.optim's first use imports
    torch._dynamo and caches its wrappers, which the forks then share."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, foreach=True).zero_grad()
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3).zero_grad()


def main(argv: list[str], dispatch: Callable[[list[str]], int]) -> int:
    """``ctrlsparse serve``: serve the commands that ``dispatch`` runs (handed in by :mod:`ctrlsparse.cli`)."""
    parser = argparse.ArgumentParser(
        prog="ctrlsparse serve",
        description="Run served commands (train, purge, track) as forks of one warm process; clients find it "
        f"through ${ENV_VAR}.",
    )
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, help="exit when this process id is gone (the workflow's)")
    parser.add_argument("--idle-seconds", type=float, default=3600.0, help="exit after this long without a job")
    args = parser.parse_args(argv)
    if len(str(args.socket)) > 100:  # AF_UNIX paths are limited to ~107 bytes
        parser.error(f"--socket: {str(args.socket)!r} is longer than 100 characters; choose a shorter path")
    preload()
    Server(args.socket, dispatch, parent=args.parent, idle_seconds=args.idle_seconds).serve_forever()
    return 0
