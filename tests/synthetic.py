"""Synthetic run directories that follow the train command's file schema exactly (no training): a test fixture.

The summary is written with the train command's own :func:`ctrlsparse.training.summary.final_numbers`. For tests
and benchmarks of the aggregation, plots, report and MLflow mirror:
``write_synthetic_run(root, dataset="digits", arch="mlp", method="constrained", target=(0.5,), seed=0)``.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

from ctrlsparse.data.describe import with_digest
from ctrlsparse.feasibility import assess, worst_violation
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash, run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import METHODS
from ctrlsparse.training.summary import final_numbers

# Gated layers as named by the library's models (digits sizes: 64-300-100-10 MLP; 10/20-channel CNN, FC 100;
# LeNet5 at its MNIST sizes).
LAYERS = {
    "mlp": ["fc1", "fc2", "fc3"],
    "cnn": ["conv1", "conv2", "fc1", "fc2"],
    "lenet5": ["conv1", "conv2", "fc1", "fc2"],
}
SIZES = {
    "mlp": [64 * 300, 300 * 100, 100 * 10],
    "cnn": [90, 1800, 80 * 100, 1000],
    "lenet5": [20 * 25, 50 * 20 * 25, 800 * 500, 500 * 10],  # LeNet5-Caffe on 28x28 MNIST
}


def write_synthetic_run(
    root: str | Path, epochs: int = 5, miss: float = 0.0, eval_gap: float = -0.01, **given: Any
) -> Path:
    """Write hparams.json, metrics.csv and summary.json of a plausible run; return its directory.

    Densities reach their targets (± 0.01) at the last epoch; ``miss`` ends every gated layer that much above
    (a missed target), ``eval_gap`` sets eval − expected density (above 0.02: fractional gates)."""
    hp = HParams.resolve(epochs=epochs, **given)
    # a magnitude run prunes the dense run of its dataset, arch and seed (trained as long)
    dense = HParams.resolve(epochs=epochs, dataset=hp.dataset, arch=hp.arch, seed=hp.seed, method="dense")
    start = run_key(dense) if METHODS.spec(hp.method).starts_from else ""
    key = run_key(hp, start)
    rng = random.Random(f"{key}")
    run = paths.run_dir(root, key)
    run.mkdir(parents=True, exist_ok=True)
    identity = {"run_key": key, "hparams_hash": hparams_hash(hp, start)}
    paths.hparams_path(run).write_text(json.dumps({**hp.to_dict(), **identity}, indent=2) + "\n")
    shape = [1, 8, 8] if hp.dataset == "digits" else [3, 32, 32]
    dataset = {"name": hp.dataset, "source": "synthetic", "train_size": 1437, "test_size": 360}
    dataset |= {"input_shape": shape, "input_dtype": "float32", "num_classes": 10}
    paths.dataset_path(run).write_text(json.dumps(with_digest(dataset), indent=2) + "\n")

    layers = LAYERS.get(hp.arch, ["1", "2"])
    gated = hp.method != "dense"
    if hp.method in ("constrained", "magnitude"):
        targets = list(hp.target) if len(hp.target) == len(layers) else [hp.target[0]] * len(layers)
    elif hp.method == "penalized":
        level = 1.0 / (1.0 + 20 * hp.penalty)
        targets = [min(1.0, level * (0.8 + 0.1 * i)) for i in range(len(layers))]
    else:
        targets = [1.0] * len(layers)
    names = ["model"] if hp.target_scope == "model" else layers
    rows = []
    for epoch in range(1, epochs + 1):
        progress = (1 - math.exp(-3 * epoch / epochs)) / (1 - math.exp(-3))  # 1 at the last epoch
        noise = [rng.uniform(-0.01, 0.01) for _ in targets]
        layer_density = [1 - (1 - t - miss) * progress + e for t, e in zip(targets, noise, strict=True)]
        layer_density = layer_density if gated else targets
        layer_density = [min(1.0, max(0.01, d)) for d in layer_density]
        weights = SIZES.get(hp.arch, [1] * len(layers))
        model_density = sum(d * w for d, w in zip(layer_density, weights, strict=True)) / sum(weights)
        accuracy = min(0.99, 0.7 + 0.25 * progress - 0.05 * (1 - model_density) ** 2 + rng.uniform(-0.01, 0.01))
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": 1.5 * (1 - progress) + 0.05,
            "test_loss": 1.4 * (1 - progress) + 0.1,
            "test_accuracy": accuracy,
            "expected_density": model_density,
            "eval_density": min(1.0, max(0.0, model_density + eval_gap)) if gated else 1.0,
            "lr": hp.lr,
            "gates_lr": hp.gates_lr,
            "epoch_seconds": 0.05 + rng.uniform(0, 0.01),
        }
        if gated:
            for layer, density in zip(layers, layer_density, strict=True):
                row[f"expected_density/{layer}"] = density
                row[f"eval_density/{layer}"] = min(1.0, max(0.0, density + eval_gap))
            row["eval_density_gap"] = row["eval_density"] - model_density
        if hp.method == "constrained":
            for i, name in enumerate(names):
                achieved = model_density if name == "model" else layer_density[i]
                target = hp.target[0] if name == "model" else targets[i]
                row[f"multiplier/{name}"] = max(0.0, 0.5 * (1 - progress) * (1 + rng.uniform(-0.1, 0.1)))
                row[f"violation/{name}"] = achieved - target
            row["max_violation"] = worst_violation({name: row[f"violation/{name}"] for name in names}, hp.constraint)
        rows.append(row)
    with open(paths.metrics_path(run), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    last = rows[-1]
    summary = {
        **final_numbers(hp, identity, last, epochs),
        "sparsifiable_params": sum(SIZES.get(hp.arch, [2])),
        "total_params": sum(SIZES.get(hp.arch, [2])) + 500,
        "wall_seconds": 0.05 * epochs,
        # what `ctrlsparse purge` adds (a chain of gated layers shrinks about quadratically in the density)
        "params_pct": 100 * last["eval_density"] ** 2 if gated else 100.0,
        "macs_pct": 100 * last["eval_density"] ** 1.5 if gated else 100.0,
        # and its latency against the dense model's (MAC share plus an overhead)
        "latency_share_b1": min(1.0, last["eval_density"] ** 1.5 + 0.05) if gated else 1.0,
        "latency_share_batch": min(1.0, last["eval_density"] ** 1.5 + 0.02) if gated else 1.0,
        "latency_batch": 128,
        "versions": {"torch": "2.14.1", "cooper": "1.0.1", "ctrlsparse": "0.1.0"},
    }
    summary |= assess(summary, hp.feasibility_tolerance)
    paths.summary_path(run).write_text(json.dumps(summary, indent=2) + "\n")
    return run


def write_synthetic_grid(
    root: str | Path,
    archs: tuple[str, ...] = ("mlp", "cnn"),
    seeds: tuple[int, ...] = (0, 1),
    epochs: int = 5,
) -> list[Path]:
    """A small demo-like grid: constrained model/layer at 3 targets, penalized at 3 lambdas, dense."""
    settings: list[dict[str, Any]] = [
        {"method": "constrained", "target_scope": scope, "target": (target,)}
        for scope in ("model", "layer")
        for target in (0.2, 0.5, 0.8)
    ]
    settings += [{"method": "penalized", "target_scope": "model", "penalty": p} for p in (0.001, 0.01, 0.1)]
    settings.append({"method": "dense"})
    return [
        write_synthetic_run(root, epochs=epochs, dataset="digits", arch=arch, seed=seed, **setting)
        for arch in archs
        for setting in settings
        for seed in seeds
    ]
