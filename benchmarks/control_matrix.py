"""Density control with default settings only, over data sets x archs x step budgets x targets x scopes x seeds.

No setting can game it: every run takes the library's defaults but for its grid point and its number of epochs,
which is chosen so that the step budget (epochs x minibatches per epoch) is the same on every data set:

    .venv/bin/python benchmarks/control_matrix.py                     # the acceptance matrix: 154 runs, ~1-1.25 h
    .venv/bin/python benchmarks/control_matrix.py --targets 0.1,0.3,0.5,0.7,0.9              # 226 runs, ~1.5-2 h
    .venv/bin/python benchmarks/control_matrix.py --seeds 0 --targets 0.1,0.9 --budgets 600   # a quick look
    .venv/bin/python benchmarks/control_matrix.py --budgets 2000 --set formulation=augmented_lagrangian  # a row of it

Per budget it prints the share of constrained settings whose final expected density is within 0.01 of the target
(layer-wise: every layer within 0.01 of its target) and whose eval density (the purged model's) is within 0.02,
and the test accuracy at density 0.5 against the dense model of the same budget. Finished runs under --root are
reused (their directory is the run key, which hashes every hyperparameter). ``--set KEY=VALUE`` (repeatable)
changes one hyperparameter of the constrained runs (the dense runs they are compared with stay the defaults').
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ARCHS = {"digits": ("mlp", "cnn"), "mnist5k": ("mlp", "lenet5")}
BUDGETS = (600, 2000, 6400)  # optimizer steps: 10.7x from the shortest to the longest
TARGETS = (0.1, 0.5, 0.9)  # the ends and the middle: about the hour on 2 cores (--targets for more)
EXPECTED_TOLERANCE, EVAL_TOLERANCE = 0.01, 0.02
# LeNet5 costs ~90 ms a step on one CPU thread (30x the MLP): within the hour it gets three targets and the two
# shorter budgets; its 6,400-step runs are the acceptance runs (README: "Density control").
REDUCED = {"lenet5": {"targets": (0.1, 0.5, 0.9), "budgets": (600, 2000)}}
# Measured per-step times on one idle CPU thread (ms, 2026-12-01), for the printed estimate of a matrix's cost.
STEP_MS = {"mlp": {"digits": 5.7, "mnist5k": 12.7}, "cnn": {"digits": 12.6}, "lenet5": {"mnist5k": 79.0}}


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train one run in this worker (one torch thread) and return its summary with its per-layer errors."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from ctrlsparse.training.loop import train

    hparams, out, budget = locate(job)
    return with_reach(train(hparams, out, on_epoch=None), out, budget)


def finished_one(job: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a job whose run already finished under --root (with its errors' inputs); None if not."""
    import json

    from ctrlsparse.plumbing import paths

    _, out, budget = locate(job)
    if not paths.summary_path(out).exists():
        return None
    return with_reach(json.loads(paths.summary_path(out).read_text()), out, budget)


def locate(job: dict[str, Any]) -> tuple[Any, Path, int]:
    """(hparams, run directory under the job's root, budget) of a job (the job itself is left as it is)."""
    from ctrlsparse.hparams import HParams
    from ctrlsparse.identity import run_key

    given = {key: value for key, value in job.items() if key not in ("root", "budget")}
    hparams = HParams.resolve(**given)
    return hparams, Path(job["root"]) / run_key(hparams), job["budget"]


def with_reach(summary: dict[str, Any], out: Path, budget: int) -> dict[str, Any]:
    from ctrlsparse.tracking.mirror import read_metrics

    return summary | {"budget": budget, "reached": reached(summary, read_metrics(out / "metrics.csv"))}


def reached(summary: dict[str, Any], rows: list[dict[str, float]]) -> float:
    """Share of the run after which its expected density stays within tolerance of the target (nan: never)."""
    if summary["method"] != "constrained":
        return math.nan
    target = summary["target"][0]
    columns = [key for key in rows[-1] if key.startswith("expected_density/")]
    if summary["target_scope"] == "model":
        columns = ["expected_density"]
    since = None
    for index, row in enumerate(rows):
        inside = all(abs(row[key] - target) <= EXPECTED_TOLERANCE for key in columns)
        since = (since if since is not None else index) if inside else None
    return math.nan if since is None else (since + 1) / len(rows)


def steps_per_epoch(dataset: str, batch_size: int) -> int:
    from ctrlsparse.registry import DATASETS

    return math.ceil(DATASETS[dataset](None).num_train / batch_size)


def jobs_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ctrlsparse.hparams import HParams

    jobs = []
    for dataset in args.datasets:
        per_epoch = steps_per_epoch(dataset, HParams.resolve(dataset=dataset).batch_size)
        for budget in args.budgets:
            base = {"dataset": dataset, "epochs": max(1, round(budget / per_epoch)), "budget": budget}
            base |= {"root": str(args.root)}
            for arch in [a for a in ARCHS[dataset] if not args.archs or a in args.archs]:
                reduced = {} if args.full else REDUCED.get(arch, {})
                if budget not in reduced.get("budgets", (budget,)):
                    continue
                targets = [t for t in args.targets if t in reduced.get("targets", args.targets)]
                for seed in args.seeds:
                    jobs.append(base | {"arch": arch, "method": "dense", "seed": seed})
                    for scope in args.scopes:
                        jobs += [
                            base
                            | {"arch": arch, "method": "constrained", "target_scope": scope, "target": (t,)}
                            | {"seed": seed}
                            | args.set
                            for t in targets
                        ]
    return jobs


def errors(run: dict[str, Any]) -> tuple[float, float]:
    """(largest |expected - target| over the model or its layers, |eval density - target| of the model)."""
    target = run["target"][0]
    if run["target_scope"] == "layer":
        expected = max(abs(value - target) for value in run["layer_expected_density"].values())
    else:
        expected = abs(run["expected_density"] - target)
    return expected, abs(run["eval_density"] - target)


def report(results: list[dict[str, Any]], budgets: list[int]) -> None:
    print(
        f"\n{'budget':>7} {'within tol':>14} {'exp err max':>12} {'eval err max':>13} {'reached by (median/max)':>24}  "
        "accuracy at 0.5 vs dense"
    )
    for budget in budgets:
        mine = [r for r in results if r["budget"] == budget]
        constrained = [r for r in mine if r["method"] == "constrained"]
        errs = [errors(r) for r in constrained]
        ok = sum(e <= EXPECTED_TOLERANCE and v <= EVAL_TOLERANCE for e, v in errs)
        accuracy = []
        for dataset, arch in sorted({(r["dataset"], r["arch"]) for r in mine}):
            pick = [r for r in mine if (r["dataset"], r["arch"]) == (dataset, arch)]
            dense = [r["test_accuracy"] for r in pick if r["method"] == "dense"]
            half = [r["test_accuracy"] for r in pick if r["method"] == "constrained" and r["target"] == [0.5]]
            if dense and half:
                accuracy.append(
                    f"{dataset}/{arch} {100 * statistics.mean(half):.1f} vs {100 * statistics.mean(dense):.1f}"
                )
        share = f"{ok}/{len(errs)} = {100 * ok / max(1, len(errs)):.0f}%"
        reach = [r["reached"] for r in constrained if ok_run(r)]  # the latest share of the run a good one needed
        latest = f"{statistics.median(reach):.2f}/{max(reach):.2f}" if reach else "-"
        print(
            f"{budget:>7} {share:>14} {max(e for e, _ in errs):>12.4f} {max(v for _, v in errs):>13.4f} "
            f"{latest:>24}  " + "; ".join(accuracy)
        )
    misses = [r for r in results if r["method"] == "constrained" and not ok_run(r)]
    if misses:
        print("\nmisses (expected error, eval error):")
        for r in misses:
            e, v = errors(r)
            print(f"  {r['budget']:>5} steps  {r['run_key']}  {e:.4f}  {v:.4f}  (expected {r['expected_density']:.4f})")


def ok_run(run: dict[str, Any]) -> bool:
    expected, evaluated = errors(run)
    return expected <= EXPECTED_TOLERANCE and evaluated <= EVAL_TOLERANCE


def setting(text: str) -> dict[str, Any]:
    """``KEY=VALUE`` as {key: value}, the value a number where it reads as one."""
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return {key: cast(value)}
        except ValueError:
            continue
    return {key: value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    numbers = lambda cast: lambda text: [cast(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--datasets", type=numbers(str), default=list(ARCHS))
    parser.add_argument("--archs", type=numbers(str), default=[], help="only these archs (default: every one)")
    parser.add_argument("--budgets", type=numbers(int), default=list(BUDGETS), help="optimizer steps per run")
    parser.add_argument("--targets", type=numbers(float), default=list(TARGETS))
    parser.add_argument("--scopes", type=numbers(str), default=["model", "layer"])
    parser.add_argument("--seeds", type=numbers(int), default=[0, 1])
    parser.add_argument("--full", action="store_true", help="every arch at every budget and target (hours)")
    parser.add_argument(
        "--set",
        type=setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter of the constrained runs, e.g. formulation=augmented_lagrangian (repeatable)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--root", type=Path, default=Path("results/benchmarks/control_matrix"))
    parser.add_argument(
        "--report-only", action="store_true", help="report the runs already finished under --root; train none"
    )
    args = parser.parse_args()
    args.set = {key: value for item in args.set for key, value in item.items()}
    jobs = jobs_for(args)
    compute = sum(STEP_MS[job["arch"]][job["dataset"]] * job["budget"] for job in jobs) / 1e3
    print(
        f"{len(jobs)} runs, {compute / 60:.0f} min of training steps on one idle thread "
        f"({compute / 60 / args.workers:.0f} min on {args.workers} workers, before evaluation and start-up)"
    )
    if args.report_only:
        results = [run for run in map(finished_one, jobs) if run is not None]
        print(f"{len(results)} of {len(jobs)} runs finished under {args.root}")
        report(results, [b for b in args.budgets if any(r["budget"] == b for r in results)])
        return
    jobs.sort(key=lambda job: -job["budget"])  # longest first: the pool's tail is short runs
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    report(results, args.budgets)
    seconds = [r["wall_seconds"] for r in results]
    print(
        f"\n{len(results)} runs in {time.perf_counter() - start:.0f}s on {args.workers} workers (finished runs under "
        f"--root are reused); training per run mean {statistics.mean(seconds):.1f}s, max {max(seconds):.1f}s"
    )


if __name__ == "__main__":
    main()
