"""Aggregation stays O(runs): tables, figures and the PDF for N synthetic runs, at two sizes side by side.

    .venv/bin/python benchmarks/aggregate_scaling.py                 # 100 and 1,000 runs
    .venv/bin/python benchmarks/aggregate_scaling.py --sizes 200,2000

Each size gets its own synthetic grid (the train command's exact file schema, tests/synthetic.py) and is
run through the same three commands the workflow's aggregate, plots and report rules run, each in a fresh process
(start-up included, as in the workflow). Goal (issue 8): 1,000 runs in < 60 s; the time ratio between the sizes
shows whether the cost grows linearly (ratio ~ size ratio, or less while start-up dominates).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' synthetic runs
from synthetic import write_synthetic_grid  # noqa: E402

CLI = [sys.executable, "-m", "ctrlsparse"]
PER_GRID = 2 * 10  # write_synthetic_grid: 2 archs x 10 settings per seed


def steps(root: Path) -> list[tuple[str, list[str]]]:
    tables, plots = root / "tables", root / "plots"
    return [
        ("aggregate", [*CLI, "aggregate", str(root / "runs"), "--out", str(tables)]),
        ("plots", [*CLI, "plots", "--tables", str(tables), "--out", str(plots)]),
        ("report", [*CLI, "report", "--tables", str(tables), "--plots", str(plots), "--out", str(root / "r.pdf")]),
    ]


def time_size(runs: int, scratch: Path) -> dict[str, float]:
    root = scratch / f"n{runs}"
    write_synthetic_grid(root / "runs", seeds=tuple(range(max(1, runs // PER_GRID))), epochs=20)
    seconds = {}
    for name, command in steps(root):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        seconds[name] = time.perf_counter() - start
        if name == "aggregate":
            assert f"aggregated {runs} runs" in done.stdout, done.stdout  # the grid is as big as asked
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        results = {n: time_size(n, Path(scratch)) for n in sizes}
    print(f"{'runs':>6}{'aggregate s':>13}{'plots s':>9}{'report s':>10}{'total s':>9}")
    for n, seconds in results.items():
        print(
            f"{n:>6}{seconds['aggregate']:>13.1f}{seconds['plots']:>9.1f}{seconds['report']:>10.1f}"
            f"{sum(seconds.values()):>9.1f}"
        )
    small, big = sizes[0], sizes[-1]
    ratio = sum(results[big].values()) / sum(results[small].values())
    verdict = "met" if sum(results[big].values()) < 60 else "NOT met"
    print(
        f"\ntime ratio {big}/{small} runs: {ratio:.2f} (size ratio {big / small:.0f}); "
        f"{big} runs in {sum(results[big].values()):.1f}s: goal < 60 s {verdict}"
    )


if __name__ == "__main__":
    main()
