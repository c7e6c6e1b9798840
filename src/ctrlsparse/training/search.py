"""Train a search run (method ``search``, the bisection of :mod:`ctrlsparse.problems.search`): every step is a
penalized run with its own run key under a runs root, trained like any run (or found finished, or resumed from
its checkpoint); the search's own directory then holds ``hparams.json``, ``metrics.csv`` (one row per step) and
``summary.json``: the step closest to the target (its densities and accuracy), how many runs the search took
(``runs``) and their training time (``wall_seconds``, the sum of the steps' own, as a constrained run's is its
own), and the steps themselves (``search``).

A search stopped half-way (SIGTERM, a killed job) resumes when run again: the bisection is a deterministic
function of its runs' final densities, so it walks the same steps, finds the finished ones and resumes the one
that was training from its checkpoint. A step that another process is training (a grid's penalized run of the
same key, another search) is waited for, then read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrlsparse import feasibility
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash, pretrained_key, run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_csv, write_json
from ctrlsparse.plumbing.provenance import slurm_job, versions
from ctrlsparse.registry import METHODS
from ctrlsparse.training import run_lock

# Trains one run into a directory and returns the exit code ``ctrlsparse train`` would (0: finished).
StepTrainer = Callable[[HParams, Path], int]
BUSY = os.EX_TEMPFAIL  # ctrlsparse train's code when another process holds the run's lock
TERMINATED = 128 + signal.SIGTERM  # ctrlsparse train's code when SIGTERM stopped it (checkpoint saved)
FINISHED_CODES = (0, 4)  # 4: finished, a target missed under --require-feasible (a penalized run has none)
WAIT_SECONDS = 5.0  # between looks at a step another process is training
# What the search's summary takes from the step closest to the target.
CHOSEN = (
    "expected_density",
    "eval_density",
    "test_accuracy",
    "test_loss",
    "train_loss",
    "layer_expected_density",
    "layer_eval_density",
    "sparsifiable_params",
    "total_params",
    "steps",
    "gates_lr",
    "eval_density_gap",
    "layer_eval_density_gap",
    "fractional_gates",
    "chance_accuracy",
    "device",
)


class SearchStopped(RuntimeError):
    """A step did not finish (stopped by SIGTERM, diverged, bad input); ``code`` is its exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def train_in_process(hparams: HParams, out: Path) -> int:
    """The default :data:`StepTrainer`: :func:`ctrlsparse.training.loop.train` here, quietly."""
    from ctrlsparse.training.loop import train

    try:
        train(hparams, out, on_epoch=None)
    except run_lock.RunBusy:
        return BUSY
    return 0


def search(
    hparams: HParams,
    out: str | Path,
    runs_root: str | Path | None = None,
    train_step: StepTrainer = train_in_process,
    on_start: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume, or re-summarise) the search of ``hparams`` in ``out``, its steps under ``runs_root``
    (default ``out/steps``); returns its summary. :class:`SearchStopped` when a step does not finish."""
    out = Path(out)
    root = Path(runs_root) if runs_root else paths.search_steps_root(out)
    with run_lock.hold(out):
        identity = {
            **hparams.to_dict(),
            "run_key": run_key(hparams, pretrained_key(hparams)),  # a warm start names the dense run it starts from
            "hparams_hash": hparams_hash(hparams, pretrained_key(hparams)),
            "variant": hparams.variant,
            "level": hparams.level,
        }
        write_json(paths.hparams_path(out), identity)
        if on_start is not None:
            on_start(out)
        finished: list[tuple[Path, dict[str, Any]]] = []

        def density_of(penalty: float) -> float:
            step = METHODS[hparams.method].step(hparams, penalty)
            step_dir = paths.run_dir(root, run_key(step, pretrained_key(step)))
            finished.append((step_dir, _finished(step_dir) or _train(step, step_dir, train_step)))
            return finished[-1][1]["expected_density"]

        outcome = METHODS[hparams.method].of(hparams).run(density_of)
        rows = [
            {
                "step": index + 1,
                "penalty": done.penalty,
                "log10_penalty": done.log10_penalty,
                **{key: summary[key] for key in ("expected_density", "eval_density", "test_accuracy")},
                "wall_seconds": summary["wall_seconds"],
            }
            for index, (done, (_, summary)) in enumerate(zip(outcome.steps, finished, strict=True))
        ]
        write_csv(paths.metrics_path(out), rows)
        if paths.dataset_path(finished[0][0]).exists():  # what the steps trained on (MLflow's dataset input)
            shutil.copyfile(paths.dataset_path(finished[0][0]), paths.dataset_path(out))
        summary = search_summary(hparams, identity, outcome, finished, rows)
        write_json(paths.summary_path(out), summary)  # written last: its presence means "finished"
    return summary


def search_summary(
    hparams: HParams, identity: dict[str, Any], outcome: Any, finished: list[tuple[Path, dict[str, Any]]], rows: list
) -> dict[str, Any]:
    """The search's ``summary.json``: the run schema of :mod:`ctrlsparse.training.summary`, its numbers from the
    step closest to the target, ``wall_seconds`` and ``runs`` of all steps, the verdict (within the tolerance of
    the target: the search's stopping rule) and the steps."""
    chosen = finished[outcome.chosen][1]
    error = outcome.errors[outcome.chosen]
    collapsed, at_chance = feasibility.collapsed_layers(chosen), feasibility.at_chance(chosen)
    return {
        **{key: identity[key] for key in ("run_key", "hparams_hash", "variant", "level")},
        **{key: getattr(hparams, key) for key in ("dataset", "arch", "method", "target_scope", "constraint")},
        "target": list(hparams.target),
        "budgets": {},
        "penalty": chosen["penalty"],  # the lambda of the step closest to the target
        "seed": hparams.seed,
        "epochs": hparams.epochs,  # of every step
        **{key: chosen.get(key) for key in CHOSEN},
        "multipliers": {},
        "violations": {"model": error},
        "wall_seconds": sum(summary["wall_seconds"] for _, summary in finished),  # the training the search took
        "runs": len(finished),
        # within the tolerance (the search's stopping rule), and, as for a constrained run, no layer cut away and
        # not at chance (ctrlsparse.feasibility)
        "feasible": abs(error) <= hparams.feasibility_tolerance and not collapsed and not at_chance,
        "collapsed_layers": collapsed,
        "at_chance": at_chance,
        "feasibility_tolerance": hparams.feasibility_tolerance,
        "max_violation": error,
        "search": {
            "range": list(hparams.search_range),
            "iterations": hparams.search_iterations,
            "bracketed": outcome.bracketed,
            "converged": outcome.converged,
            "chosen": outcome.chosen,
            "steps": [row | {"run_key": summary["run_key"]} for row, (_, summary) in zip(rows, finished, strict=True)],
        },
        "slurm": slurm_job(),
        "versions": versions(),
    }


def _finished(step_dir: Path) -> dict[str, Any] | None:
    """A step's summary when the step finished (a summary that does not parse counts as not finished)."""
    try:
        return json.loads(paths.summary_path(step_dir).read_text())
    except (OSError, ValueError):
        return None


def _train(step: HParams, step_dir: Path, train_step: StepTrainer) -> dict[str, Any]:
    """Train (or resume) one step, waiting while another process trains the same run; its summary."""
    said = False
    while True:
        code = train_step(step, step_dir)
        if code != BUSY:
            break
        if not said:
            print(f"ctrlsparse: {step_dir} is being trained by another process; waiting for it", file=sys.stderr)
            said = True
        time.sleep(WAIT_SECONDS)
    summary = _finished(step_dir)
    if code not in FINISHED_CODES or summary is None:
        raise SearchStopped(code, f"the search's step {step_dir} did not finish (exit {code})")
    return summary


def main(hparams: HParams, args: Any, tracking: Any, train_step: StepTrainer) -> int:
    """``ctrlsparse train --method search`` (from :func:`ctrlsparse.training.cli.main`): the steps trained by
    ``train_step`` (the CLI's own, so each is tracked like any run) under ``--runs-root``; the search's directory is
    mirrored by ``tracking`` too (one MLflow run, a step a row). The exit code: 0, or the code of the step that did
    not finish (143 after SIGTERM: rerun to resume)."""
    from ctrlsparse.training.job_time import JobTime

    job = JobTime()

    def counted(step: HParams, out: Path) -> int:  # the search job's training time is its steps'
        code = train_step(step, out)
        if code in FINISHED_CODES and paths.train_job_path(out).exists():
            done = json.loads(paths.train_job_path(out).read_text())
            job.epochs += done.get("epochs", 0)
            job.training_seconds += done.get("training_seconds", 0.0)
        return code

    try:
        summary = search(hparams, args.out, args.runs_root, counted, on_start=job.mirroring(tracking.open))
    except SearchStopped as error:
        print(f"ctrlsparse train: {error}; rerun the same command to resume the search", file=sys.stderr)
        tracking.end(args.out, "KILLED" if error.code == TERMINATED else "FAILED", draw=False)
        return error.code
    except run_lock.RunBusy as error:  # another process runs this search
        print(f"ctrlsparse train: error: {error}", file=sys.stderr)
        return BUSY
    job.mirroring(tracking.end)(args.out, "FINISHED", False)
    job.write(args.out)
    print(
        f"{summary['run_key']}: {summary['runs']} runs, {summary['wall_seconds']:.1f}s of training; closest: "
        f"lambda {summary['penalty']:g}, expected density {summary['expected_density']:.4f}, test accuracy "
        f"{100 * summary['test_accuracy']:.2f}%"
        + ("" if summary["feasible"] else f" (not feasible: {_missed(summary)})"),
        file=sys.stderr,
    )
    return 0


def _missed(summary: dict[str, Any]) -> str:
    """Why a search's closest run is not feasible, in words."""
    parts = [f"{name} has no open gate" for name in summary["collapsed_layers"]]
    parts += ["test accuracy at chance"] if summary["at_chance"] else []
    if abs(summary["max_violation"]) > summary["feasibility_tolerance"]:
        parts.append(f"model at {summary['expected_density']:.3f}, not within {summary['feasibility_tolerance']:g}")
    return ", ".join(parts)
