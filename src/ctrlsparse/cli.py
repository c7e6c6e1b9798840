"""``ctrlsparse SUBCOMMAND ...``: a thin dispatcher; each subcommand lives with its concept.

Subcommands are resolved lazily so ``ctrlsparse report`` never pays for ``import torch``.
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). Each function takes argv (list[str]) and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "ctrlsparse.training.cli:main",
        "train one run into a directory (metrics, summary, checkpoint)",
    ),
    "purge": ("ctrlsparse.training.purge_cli:main", "purge a finished run into a smaller dense model; add its size"),
    "track": ("ctrlsparse.tracking:main_track", "mirror a finished run directory to MLflow"),
    "mlflow-init": ("ctrlsparse.tracking:main_init", "create the MLflow store and experiment once"),
    "aggregate": ("ctrlsparse.report.aggregate:main", "collect run summaries into tables"),
    "plots": ("ctrlsparse.report.plots:main", "draw the figures from the tables"),
    "report": ("ctrlsparse.report.pdf:main", "assemble the PDF report"),
    "serve": ("ctrlsparse.cli:serve", "run train/purge/track commands as forks of one warm process"),
}


def usage() -> str:
    lines = ["usage: ctrlsparse SUBCOMMAND [--help] ...", "", "subcommands:"]
    lines += [f"  {name:<12} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line: hand the command to a warm job server when one is named
    (:mod:`ctrlsparse.plumbing.job_client`), else run it here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        from ctrlsparse.plumbing.job_client import run_served

        code = run_served(argv[0], argv[1:])
        if code is not None:
            return code
    return dispatch(argv)


def dispatch(argv: list[str]) -> int:
    """Run one subcommand in this process."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(
            f"ctrlsparse: error: unknown subcommand {name!r}; choose one of: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module, _, function = SUBCOMMANDS[name][0].partition(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


def serve(argv: list[str]) -> int:
    """``ctrlsparse serve``: the warm job server, handed this command table (:func:`dispatch`)."""
    from ctrlsparse.plumbing.job_server import main as serve_main

    return serve_main(argv, dispatch)


if __name__ == "__main__":
    sys.exit(main())
