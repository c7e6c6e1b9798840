"""``ctrlsparse train``: flags are derived from :class:`~ctrlsparse.hparams.HParams`, never written twice."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from ctrlsparse.errors import HParamError
from ctrlsparse.feasibility import verdict_lines
from ctrlsparse.hparams import HParams, format_number
from ctrlsparse.hparams.defaults import DATASET_DEFAULTS
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import METHODS
from ctrlsparse.tracking.target import DEFAULT_EXPERIMENT, add_tracking_flags, off, tracking_target


def _number_list(cast: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(item) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {cast.__name__}s, got {text!r}") from None

    return parse


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class OneLineParser(argparse.ArgumentParser):
    """Bad input gets one line that names the flag and says where to look, not a screen of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ctrlsparse train",
        description="Train one run with L0 gates under a density constraint (or a baseline) into --out.",
        epilog=f"Unset flags take the dataset's defaults ({', '.join(DATASET_DEFAULTS)}), then the field defaults. "
        "Exit codes: 0 finished, 2 bad input (an image file that stopped decoding mid-run too), 3 diverged, 4 finished but a target missed with --require-feasible "
        "(the run's files are written and kept), 75 another process is training --out (its pid is named), 143 "
        "stopped by SIGTERM after saving the checkpoint (rerun to resume). A missed target (or fractional gates) is "
        "said on the last line either way. A search (--method search) trains its steps one after the other and exits "
        "with the code of a step that did not finish (rerun to resume it).",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory (created; resumed if it has a checkpoint)"
    )
    add_tracking_flags(parser, default="none: the run is not tracked")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    parser.add_argument(
        "--runs-root",
        type=Path,
        help="method search: train its steps, runs of their own, in RUNS_ROOT/<run key> (default: OUT/steps)",
    )
    group = parser.add_argument_group("hyperparameters")
    for spec in fields(HParams):
        default = spec.default if spec.default is not MISSING else None
        text = f"{spec.metadata['help']} (default: {default})"
        if spec.type == "bool":
            group.add_argument(flag(spec.name), action=argparse.BooleanOptionalAction, default=None, help=text)
        elif spec.type.startswith("tuple"):
            cast = float if "float" in spec.type else int
            group.add_argument(flag(spec.name), type=_number_list(cast), default=None, metavar="X[,X...]", help=text)
        else:
            group.add_argument(flag(spec.name), type={"int": int, "float": float}.get(spec.type, str), help=text)
    return parser


def train_argv(hparams: HParams) -> list[str]:
    """The hyperparameter flags of ``ctrlsparse train`` that :func:`build_parser` reads back into ``hparams``.

    The grid axes that name the run come first (dataset, arch, method, seed, then the method's own axes: scope and
    target or penalty, :attr:`MethodSpec.axes <ctrlsparse.registry.MethodSpec.axes>`), then every other field whose value differs from what :meth:`HParams.resolve` gives those axes; so
    ``HParams.resolve(**parsed flags) == hparams``. Without --out, --threads and the MLflow flags.
    """
    shown = ["dataset", "arch", "method", "seed", *METHODS.spec(hparams.method).axes]
    shown += ["budget"] if hparams.budget else []  # a budget run names its budget (scope none needs it)
    base = HParams.resolve(**{name: getattr(hparams, name) for name in shown})
    shown += [
        f.name for f in fields(HParams) if f.name not in shown and getattr(hparams, f.name) != getattr(base, f.name)
    ]
    argv: list[str] = []
    for name in shown:
        value = getattr(hparams, name)
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + flag(name)[2:])
            continue
        text = _flag_text(value)
        argv += [f"{flag(name)}={text}"] if text.startswith("-") else [flag(name), text]  # "-x" is no flag
    return argv


def _flag_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_flag_text(item) for item in value)
    return format_number(value) if isinstance(value, float) else str(value)


# Exit codes besides 0 and 2 (bad input): the run diverged; the run stopped on SIGTERM with its checkpoint saved
# (128 + 15, what a shell reports for a process that SIGTERM ended: not finished, rerun it to resume).
EXIT_DIVERGED = 3
EXIT_INFEASIBLE = 4  # finished, files kept, but a target missed and --require-feasible was given
EXIT_BUSY = os.EX_TEMPFAIL  # 75: another process holds --out's train.lock; nothing was done, retry later
EXIT_TERMINATED = 128 + signal.SIGTERM


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {spec.name: getattr(args, spec.name) for spec in fields(HParams)}
    try:
        hparams = HParams.resolve(**given)
    except HParamError as error:
        parser.error(f"{flag(error.key)}: {error.message}")
    tracking = Tracking.from_args(args) if is_main() else Tracking(None, DEFAULT_EXPERIMENT)
    if METHODS.spec(hparams.method).runs_of:  # a run of runs: each step is one train_one, tracked like any run
        from ctrlsparse.training.search import main as search_main

        fresh = lambda: Tracking(tracking.uri, tracking.experiment)  # noqa: E731  (one per step's MLflow run)
        return search_main(hparams, args, tracking, lambda step, out: train_one(step, out, args, fresh(), parser))
    return train_one(hparams, args.out, args, tracking, parser)


def is_main() -> bool:
    """Under torchrun (DDP) only rank 0 talks to MLflow and writes the job's files."""
    return os.environ.get("RANK", "0") == "0"


def train_one(
    hparams: HParams, out: Path, args: argparse.Namespace, tracking: Tracking, parser: argparse.ArgumentParser
) -> int:
    """Train one run into ``out`` (the CLI's flags ``args``: --quiet), mirrored by ``tracking``; the exit code."""
    from ctrlsparse.data.imagefiles import UnreadableImage
    from ctrlsparse.plumbing.files import CheckpointError  # torch only for valid flags
    from ctrlsparse.training.job_time import JobTime
    from ctrlsparse.training.loop import DivergenceError, Interrupted, print_progress, train
    from ctrlsparse.training.run_lock import RunBusy

    stop, job = StopOnSigterm(), JobTime()
    try:
        with stop:
            summary = train(
                hparams,
                out,
                on_epoch=job.counting(None if args.quiet else print_progress),
                on_start=job.mirroring(tracking.open),
                stop_requested=stop.is_set,
            )
    except HParamError as error:
        parser.error(f"{flag(error.key)}: {error.message}")
    except CheckpointError as error:
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        return 2
    except RunBusy as error:
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        return EXIT_BUSY
    except DivergenceError as error:
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        tracking.end(out, "FAILED")
        return EXIT_DIVERGED
    except UnreadableImage as error:  # an image file changed on disk after the check before training
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        tracking.end(out, "FAILED")
        return 2
    except Interrupted as error:
        print(f"ctrlsparse train: {error}; rerun the same command to resume", file=sys.stderr)
        tracking.end(out, "KILLED")
        return EXIT_TERMINATED
    job.mirroring(tracking.end)(out, "FINISHED")
    if is_main():
        job.write(out)  # where this job's time went, beside Snakemake's benchmark of it (the report's split)
    skipped = summary.get("skipped_images")
    print(
        f"{summary['run_key']}: test accuracy {100 * summary['test_accuracy']:.2f}%, expected density "
        f"{summary['expected_density']:.4f}, eval density {summary['eval_density']:.4f}, {summary['wall_seconds']:.1f}s"
        + (f", {skipped} unreadable image file{'s' * (skipped != 1)} skipped" if skipped else ""),
        file=sys.stderr,
    )
    return say_feasibility(summary, hparams.require_feasible)


def say_feasibility(summary: dict[str, Any], require_feasible: bool) -> int:
    """Print the fractional-gates and target-missed lines (the latter last); the exit code of the finished run."""
    lines = [f"ctrlsparse train: {line}" for line in verdict_lines(summary)]
    refused = require_feasible and summary.get("feasible") is False
    if refused:
        lines[-1] += f"; exit {EXIT_INFEASIBLE} (--require-feasible), the run's files are kept"
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_INFEASIBLE if refused else 0


class StopOnSigterm:
    """While active, SIGTERM (what SLURM sends before preemption or the time limit) only sets a flag: the
    loop then finishes its epoch, saves the checkpoint and stops."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: Any = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def _handle(self, signum: int, frame: Any) -> None:
        print("ctrlsparse train: SIGTERM: saving the checkpoint at the end of this epoch", file=sys.stderr)
        self._event.set()

    def __enter__(self) -> StopOnSigterm:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


@dataclass
class Tracking:
    """The run's MLflow mirror: opened when training starts, ended FINISHED, FAILED or KILLED.

    Files first, MLflow second: any tracking failure is one warning, and a store that could not be reached
    when the run started is not tried again at its end (backfill later with ``ctrlsparse track``).
    """

    uri: str | None
    experiment: str
    opened: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Tracking:
        target = tracking_target(args, off)  # the flags > the tracking env file > not tracked
        return cls(target.uri or None, target.experiment)

    def open(self, out: Path) -> None:
        if self.uri:
            from ctrlsparse.tracking import open_run

            self.opened = open_run(out, tracking_uri=self.uri, experiment=self.experiment) is not None

    def end(self, out: Path, status: str, draw: bool = True) -> None:
        """End the run's MLflow mirror with ``status`` (``draw``: its dynamics figure first; a search has none)."""
        if not self.opened:
            return
        from ctrlsparse.tracking import end_run, mirror_run

        if status == "KILLED":  # the metrics follow when the resumed run ends
            end_run(out, status)
        else:
            if draw:
                draw_dynamics(out)
            mirror_run(out, tracking_uri=self.uri, experiment=self.experiment, status=status)


def draw_dynamics(out: Path) -> None:
    """Draw the run's curves into ``dynamics.png`` (the MLflow artifact, which the mirror logs as it finds it)."""
    try:
        from ctrlsparse.report.run_plot import plot_run_dynamics

        plot_run_dynamics(out, paths.dynamics_plot_path(out))
    except Exception as error:  # a missing figure must not block the mirror
        print(f"ctrlsparse: warning: no dynamics plot for {out}: {error}", file=sys.stderr)
