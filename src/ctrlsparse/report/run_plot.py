"""One run's training curves as a PNG: the per-run MLflow artifact (``dynamics.png`` in the run directory)."""

from __future__ import annotations

import math
from pathlib import Path

from ctrlsparse.plumbing import paths


def plot_run_dynamics(run_dir: str | Path, out: str | Path) -> Path:
    """One run's curves: densities (model and per layer), multipliers/violations, accuracy and loss.

    Called inside every train job (the MLflow artifact), so it avoids pyplot and pandas (~1.5 s of imports).
    """
    import csv

    from matplotlib.figure import Figure

    with open(paths.metrics_path(run_dir), newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []

    def series(column: str) -> list[float]:
        return [float(row[column]) if row[column] not in ("", None) else math.nan for row in rows]

    epoch = series("epoch")
    fig = Figure(figsize=(12, 3.3), dpi=100)
    axes = fig.subplots(1, 3)
    axes[0].plot(epoch, series("expected_density"), color="black", label="model (expected)")
    axes[0].plot(epoch, series("eval_density"), color="black", ls="--", label="model (eval)")
    for column in (c for c in columns if c.startswith("expected_density/")):
        axes[0].plot(epoch, series(column), lw=0.8, label=column.split("/", 1)[1])
    axes[0].set(xlabel="epoch", ylabel="density", ylim=(0, 1.05), title="density")
    axes[0].legend(fontsize=6)
    names = [c.split("/", 1)[1] for c in columns if c.startswith("multiplier/")]
    for i, name in enumerate(names):
        axes[1].plot(epoch, series(f"multiplier/{name}"), lw=1, color=f"C{i}", label=f"multiplier/{name}")
        if f"violation/{name}" in columns:
            axes[1].plot(epoch, series(f"violation/{name}"), lw=1, ls=":", color=f"C{i}")
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].set(xlabel="epoch", title="multipliers (—) and violations (···)")
    if names:
        axes[1].legend(fontsize=6)
    axes[2].plot(epoch, [100 * a for a in series("test_accuracy")], color="tab:blue")
    twin = axes[2].twinx()
    twin.plot(epoch, series("train_loss"), color="tab:red", lw=0.8)
    axes[2].set(xlabel="epoch", ylabel="test accuracy % (blue)", title="accuracy / train loss")
    twin.set_ylabel("train loss (red)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(str(Path(run_dir)), fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.15, top=0.84, wspace=0.3)  # tight_layout: +0.3 s a run
    out = Path(out)
    fig.savefig(out)
    return out
