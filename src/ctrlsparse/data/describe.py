"""What a run trained on, as ``dataset.json`` in its directory: name, where the files are, split sizes, input
shape and dtype, classes, for an image folder the number of files left out as unreadable (``skipped_images``),
and a digest of all that. The MLflow mirror logs it as the run's dataset input.

The digest identifies the data set *as the run saw it* (source, split, shape), not a hash of every image:
hashing ImageNet per run is not worth it, and the splits are fixed by the loaders (digits: 360 test images,
seed 0; the others: the official splits).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ctrlsparse.data.layouts import LAYOUTS, data_root
from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths


def source_of(hparams: HParams) -> str:
    """The file or folder the loader reads (digits/mnist5k: the CSV a package ships; a data set without a
    layout, such as imagefolder: the data root itself)."""
    if hparams.dataset == "digits":
        from ctrlsparse.data.digits import digits_csv

        return str(digits_csv())
    if hparams.dataset == "mnist5k":
        from ctrlsparse.data.mnist5k import mnist5k_csv

        return str(mnist5k_csv())
    root = data_root(hparams.data_root)
    layout = LAYOUTS.get(hparams.dataset)
    return str((root / layout.folder if layout else root).absolute())


def describe(hparams: HParams, data: Any) -> dict[str, Any]:
    """The ``dataset.json`` record of ``data`` (TensorData or streamed images) loaded for ``hparams``."""
    test = getattr(data, "test_y", None)
    test_size = len(test) if test is not None else len(data.test)
    dtype = str(getattr(getattr(data, "train_x", None), "dtype", "torch.float32")).removeprefix("torch.")
    record = {
        "name": hparams.dataset,
        "source": source_of(hparams),
        "train_size": int(data.num_train),
        "test_size": int(test_size),
        "input_shape": [int(n) for n in data.input_shape],
        "input_dtype": dtype,
        "num_classes": int(data.num_classes),
    }
    if hasattr(data, "skipped"):  # an image folder, checked before training: the files left out (--skip-bad-images)
        record["skipped_images"] = len(data.skipped)
    return with_digest(record)


def with_digest(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` plus ``digest``: the first 16 hex digits of the SHA-256 of its other fields."""
    fields = {key: value for key, value in record.items() if key != "digest"}
    return {**fields, "digest": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]}


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``dataset.json``, or None (runs of older code, or not started)."""
    try:
        return json.loads(paths.dataset_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
