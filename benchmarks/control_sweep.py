"""Density control on digits: does every constrained run land on its target? (issue 2's acceptance sweep)

Runs archs x scopes x targets x seeds with the constrained method, the penalized lambda grid beside it and a
dense reference, in worker processes (one torch thread each), then prints one table per arch and a verdict:

    .venv/bin/python benchmarks/control_sweep.py                      # the full acceptance sweep
    .venv/bin/python benchmarks/control_sweep.py --seeds 0 --set gates_lr=0.02   # a quick what-if

Criteria: |expected density - target| <= 0.01 and eval density <= target + 0.02 in every run; mean test
accuracy at target 0.5 within 2 points of the dense model's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

TARGETS = (0.2, 0.35, 0.5, 0.65, 0.8)
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from ctrlsparse.hparams import HParams
    from ctrlsparse.identity import run_key
    from ctrlsparse.training.loop import train

    root = job.pop("root")
    hparams = HParams.resolve(**job)
    return train(hparams, Path(root) / run_key(hparams), on_epoch=None)


def parse_set(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        for cast in (int, float):
            try:
                values[key] = cast(text)
                break
            except ValueError:
                continue
        else:
            values[key] = text
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="mlp,cnn")
    parser.add_argument("--scopes", default="model,layer")
    parser.add_argument("--targets", default=",".join(map(str, TARGETS)))
    parser.add_argument("--penalties", default=",".join(map(str, PENALTIES)), help="empty: skip the penalized grid")
    parser.add_argument("--penalized-scopes", default="model,layer", help="scopes of the penalized grid")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--root", default="results/benchmarks/control_sweep")
    args = parser.parse_args()
    overrides = parse_set(args.set)
    split = lambda text, cast: [cast(x) for x in text.split(",") if x]  # noqa: E731
    archs, scopes, seeds = split(args.archs, str), split(args.scopes, str), split(args.seeds, int)
    base = {"dataset": "digits", "root": args.root, **overrides}
    jobs = []
    for arch in archs:
        for seed in seeds:
            jobs.append(base | {"arch": arch, "method": "dense", "seed": seed})
            for scope in scopes:
                jobs += [
                    base | {"arch": arch, "method": "constrained", "target_scope": scope, "target": (t,), "seed": seed}
                    for t in split(args.targets, float)
                ]
            for scope in split(args.penalized_scopes, str):
                jobs += [
                    base | {"arch": arch, "method": "penalized", "target_scope": scope, "penalty": p, "seed": seed}
                    for p in split(args.penalties, float)
                ]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    wall = time.perf_counter() - start
    report(results, archs, list(dict.fromkeys(scopes + split(args.penalized_scopes, str))))
    seconds = [r["wall_seconds"] for r in results]  # training time recorded in the run, also for reused runs
    print(
        f"\n{len(results)} runs in {wall:.0f}s on {args.workers} workers (finished runs under --root are reused); "
        f"training per run mean {statistics.mean(seconds):.1f}s, max {max(seconds):.1f}s (one torch thread each); "
        f"overrides: {overrides or 'none'}"
    )


def report(results: list[dict[str, Any]], archs: list[str], scopes: list[str]) -> None:
    failures = 0
    for arch in archs:
        mine = [r for r in results if r["arch"] == arch]
        dense = [r["test_accuracy"] for r in mine if r["method"] == "dense"]
        dense_acc = statistics.mean(dense) if dense else float("nan")
        print(f"\n## {arch}  (dense test accuracy {100 * dense_acc:.2f}%)")
        print(f"{'setting':<22}{'target':>8}{'expected':>10}{'max |err|':>11}{'eval':>8}{'acc %':>8}  ok")
        for scope in scopes:
            for method in ("constrained", "penalized"):
                runs = [r for r in mine if r["method"] == method and r["target_scope"] == scope]
                for level in sorted({r["level"] for r in runs}, key=float):
                    group = [r for r in runs if r["level"] == level]
                    expected = [r["expected_density"] for r in group]
                    evals = [r["eval_density"] for r in group]
                    acc = statistics.mean(r["test_accuracy"] for r in group)
                    if method == "constrained":
                        target = float(level)
                        err = max(abs(e - target) for e in expected)
                        ok = err <= 0.01 and max(evals) <= target + 0.02
                        if target == 0.5:
                            ok = ok and acc >= dense_acc - 0.02
                        failures += not ok
                        cells = f"{target:>8.2f}{statistics.mean(expected):>10.4f}{err:>11.4f}"
                        flag = "yes" if ok else "NO"
                    else:
                        cells = f"{'-':>8}{statistics.mean(expected):>10.4f}{'-':>11}"
                        flag = ""
                    name = f"{method}-{scope}" + (f" λ={level}" if method == "penalized" else "")
                    print(f"{name:<22}{cells}{statistics.mean(evals):>8.4f}{100 * acc:>8.2f}  {flag}")
    print(f"\nconstrained settings failing the criteria: {failures}")


if __name__ == "__main__":
    main()
