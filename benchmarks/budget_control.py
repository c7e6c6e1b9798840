"""Do MAC / parameter budgets land where asked? Train budget runs, purge them, and compare with density runs.

    .venv/bin/python benchmarks/budget_control.py                                  # digits mlp, cnn
    .venv/bin/python benchmarks/budget_control.py --dataset mnist5k --archs mlp,lenet5 --epochs lenet5=20

Each budget run (``--budget macs=B --target-scope none``, the field defaults otherwise) is purged with
``ctrlsparse purge``'s own function; the table gives the purged share of the dense MACs / params against the
budget (goal: within 1 point) and, beside it, a density-constrained run of the same size: the density target
that buys the same purged share, found the way a user without budgets would, by trial: first the density the
budget run ended at, then, while the share is more than a point off (at most --tries runs), a step that
scales the target by budget / share or, once tries lie on both sides, interpolates between the closest two.
The row shows the try whose share came closest, and how many tries it took. Runs go to
--out (default: a fresh temporary directory) and print one Markdown row each as they finish.
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BUDGETS = "macs=0.2,macs=0.35,macs=0.5,params=0.2,params=0.5"
HEADER = (
    "| data | arch | budget | purged share | gap (pts) | accuracy | same-size density run: target | its share | "
    "accuracy |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def train_and_purge(given: dict, out: Path) -> dict:
    import torch

    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.loop import train
    from ctrlsparse.training.purge_cli import purge_run

    torch.set_num_threads(1)
    summary = train(HParams.resolve(**given), out, on_epoch=None)
    return summary | purge_run(out)


def one_budget(
    dataset: str, arch: str, budget: str, epochs: int | None, seed: int, root: Path, tries_at_most: int
) -> str:
    kind, _, share = budget.partition("=")
    goal = 100 * float(share)
    common = {"dataset": dataset, "arch": arch, "seed": seed, "epochs": epochs, "threads": 1}
    ours = train_and_purge({**common, "budget": budget, "target_scope": "none"}, root / dataset / arch / budget)
    achieved = ours[f"{kind}_pct"]
    row = (
        f"| {dataset} | {arch} | {budget} | {achieved:.2f}% | {achieved - goal:+.2f} | "
        f"{100 * ours['test_accuracy']:.2f}% |"
    )
    if not tries_at_most:
        return row + " - | - | - |"
    tries: list[tuple[float, float, dict]] = []  # (density target, purged share, summary)
    target = round(ours["expected_density"], 3)
    for _ in range(tries_at_most):
        out = root / dataset / arch / f"{budget}-density={target}"  # per row: rows run in parallel
        density = train_and_purge({**common, "target": (target,)}, out)
        tries.append((target, density[f"{kind}_pct"], density))
        if abs(tries[-1][1] - goal) <= 1.0:
            break
        target = next_target(tries, goal)
    target, share, density = min(tries, key=lambda item: abs(item[1] - goal))
    return row + (
        f" {target:g} ({len(tries)} {'try' if len(tries) == 1 else 'tries'}) | {share:.2f}% | "
        f"{100 * density['test_accuracy']:.2f}% |"
    )


def next_target(tries: list[tuple[float, float, dict]], goal: float) -> float:
    """The next density target to try for a purged share of ``goal``: interpolated between the closest tries
    below and above the goal once there are both (regula falsi), else scaled from the closest try
    (share grows with the density, roughly in proportion)."""
    below = [(t, s) for t, s, _ in tries if s < goal]
    above = [(t, s) for t, s, _ in tries if s > goal]
    if below and above:
        (t0, s0), (t1, s1) = max(below, key=lambda ts: ts[1]), min(above, key=lambda ts: ts[1])
        target = t0 + (goal - s0) * (t1 - t0) / (s1 - s0)
    else:
        t, s = min(((t, s) for t, s, _ in tries), key=lambda ts: abs(ts[1] - goal))
        target = t * goal / s
    target = round(min(0.999, max(0.005, target)), 3)
    return target if target not in {t for t, _, _ in tries} else round(min(0.999, target + 0.002), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--archs", default="mlp,cnn")
    parser.add_argument("--budgets", default=BUDGETS, help="comma-separated kind=share")
    parser.add_argument("--epochs", default="", help="per-arch epochs, e.g. lenet5=20 (others: the dataset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tries", type=int, default=4, help="density runs at most per budget to match its size (0: none)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    parser.add_argument("--out", type=Path, help="run directory root (default: a temporary directory)")
    args = parser.parse_args()
    epochs = {arch: int(n) for arch, _, n in (item.partition("=") for item in args.epochs.split(",") if item)}
    root = args.out or Path(tempfile.mkdtemp(prefix="budget_control_"))
    jobs = [(arch, budget) for arch in args.archs.split(",") for budget in args.budgets.split(",")]
    print(f"runs in {root}\n\n{HEADER}", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(one_budget, args.dataset, arch, budget, epochs.get(arch), args.seed, root, args.tries)
            for arch, budget in jobs
        ]
        for future in futures:
            print(future.result(), flush=True)


if __name__ == "__main__":
    main()
