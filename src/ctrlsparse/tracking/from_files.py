"""What an MLflow run takes from its run directory besides params and metrics: the training's times (not the
mirror's) and the data set it trained on (``dataset.json``) as its dataset input."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ctrlsparse.data.describe import read as read_dataset
from ctrlsparse.plumbing import paths


def training_times(run_dir: Path, summary: dict[str, Any] | None) -> tuple[int, int | None]:
    """(start, end) in ms of the training, from its files, for the MLflow run's times (not the mirror's).

    End: when ``metrics.csv`` was last written (the checkpoint of the last epoch, or the row that diverged);
    ``ctrlsparse purge`` and reruns that only re-summarise leave it alone. Start: ``wall_seconds`` (the epochs'
    own time, summed over resumed jobs) before the end. Without those files: now, and no end (MLflow's own).
    """
    metrics = paths.metrics_path(run_dir)
    if not metrics.exists():
        return int(time.time() * 1000), None
    end_ms = metrics.stat().st_mtime_ns // 1_000_000
    return end_ms - int(1000 * float((summary or {}).get("wall_seconds") or 0.0)), end_ms


def log_dataset(client: Any, run_id: str, run_dir: Path) -> None:
    """The run's ``dataset.json`` as its MLflow dataset input (context ``train``; the UI's Dataset column):
    name, digest and source, a tensor schema (inputs, labels) and the split sizes (and an image folder's skipped
    files) as its profile."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    data = read_dataset(run_dir)
    if data is None:
        return
    profile = {key: data[key] for key in ("train_size", "test_size", "num_classes", "skipped_images") if key in data}
    dataset = Dataset(
        name=data["name"],
        digest=data["digest"],
        source_type="local",
        source=json.dumps({"uri": data["source"]}),
        schema=json.dumps(_tensor_schema(data)),
        profile=json.dumps(profile),
    )
    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])]
    for attempt in range(3):
        try:
            client.log_inputs(run_id, inputs)
            return
        except Exception as error:  # jobs logging the same data set at once race on its row (UNIQUE constraint)
            if attempt == 2 or "UNIQUE constraint" not in str(error):
                raise
            time.sleep(0.2 * (attempt + 1))  # the row now exists: the retry reuses it


def _tensor_schema(data: dict[str, Any]) -> dict[str, Any]:
    """MLflow's tensor dataset schema: inputs (-1, *input_shape) of ``input_dtype``, int64 labels."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types.schema import Schema, TensorSpec

    features = Schema([TensorSpec(np.dtype(data["input_dtype"]), (-1, *data["input_shape"]), "inputs")])
    targets = Schema([TensorSpec(np.dtype("int64"), (-1,), "labels")])
    return TensorDatasetSchema(features=features, targets=targets).to_dict()
