"""``ctrlsparse purge RUN_DIR``: purge a finished run, save the small model, add its size and speed to the summary.

Writes ``purged.pt2`` (torch.export; plain torch loads it), ``purged.onnx`` (the same model as ONNX, checked with
onnxruntime) and ``purge.json``, and adds to ``summary.json``. The saved, exported and timed model is the purged
one in its inference form (:func:`ctrlsparse.purge.deploy_form`: BatchNorms folded into their convs, fractional
eval gates into the layers that read them, re-indexing folded away, the memory formats, channels-last, NCHW or
each conv in its own, that run it faster at the latency batch and at batch 1; ``deploy_folded_batchnorms``,
``deploy_folded_gate_scales``, ``deploy_folded_index_ops``, ``deploy_memory_format``,
``deploy_channels_last_convs``, ``deploy_convs``), and the
dense model it is timed against is in its own inference form:

- sizes: ``params``, ``macs``, ``params_pct``, ``macs_pct`` (% of the dense model), ``dense_params``,
  ``dense_macs`` and ``purged_test_accuracy`` (the purged model's own test accuracy, which must equal the run's);
- latency, measured in this job on the CPU at its ``--threads``: the purged model against the dense one (the
  same architecture with every gate open, in the same plain modules, in its inference form), interleaved calls, medians
  (:mod:`ctrlsparse.latency`), at batch 1 (``latency_ms_b1``, ``dense_latency_ms_b1``, ``latency_share_b1``) and
  at ``--latency-batch`` (default: the batch a latency budget is stated at, the run's ``latency_batch``, else its
  training batch size; ``latency_batch`` and the same keys ending ``_batch``), with ``latency_threads``;
  ``latency_pct`` (the value a latency budget is judged by: the least-time share, in percent) at the budget's
  batch, ``latency_pct_batch``, whatever ``--latency-batch`` says (a third batch, keys ending ``_budget``, when
  it is neither);
- ``onnx_max_abs_diff``: onnxruntime's output against PyTorch's (at most 1e-4, or the ONNX check failed).

It judges a budget run again on the purged model (``feasible`` false, with ``purged macs`` in ``target_missed``,
when the purged share is more than the tolerance off the budget); with a tracking target (``--tracking-uri`` or
``--tracking-env``) the run is mirrored again so MLflow has them too.

A model that does not export to ONNX, or whose ONNX output differs, is said in one line naming the run and what
failed, and the command exits 2; everything else is written first (``purged.pt2``, ``purge.json`` with
``onnx_error``, the summary's keys), and no ``purged.onnx`` is left.

It lives with training, not in :mod:`ctrlsparse.purge`: it rebuilds a finished training run (its setup and
checkpoint) and hands the model to the purge, which knows nothing of runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ctrlsparse.plumbing import paths
from ctrlsparse.tracking.target import add_tracking_flags, off, tracking_target

# Seconds of interleaved calls per batch size (after the warm-up; at least 5 calls of each model): the demo's
# tiny models take a few hundred ms in all.
LATENCY_SECONDS = 0.15


def finished_run(run_dir: Path):
    """(the run in ``run_dir`` rebuilt on the CPU with its finished checkpoint loaded, its hyperparameters)."""
    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.checkpoint import load
    from ctrlsparse.training.setup import build_run

    identity = json.loads(paths.hparams_path(run_dir).read_text())
    names = {f.name for f in dataclasses.fields(HParams)}
    hparams = HParams.from_dict({k: v for k, v in identity.items() if k in names})
    run = build_run(dataclasses.replace(hparams, device="cpu"))
    if load(run, run_dir).epoch != hparams.epochs:
        raise RuntimeError(
            f"{paths.checkpoint_path(run_dir)} does not hold the finished run; delete {paths.SUMMARY} and rerun "
            "its train job"
        )
    return run, hparams


def purge_run(run_dir: Path, latency_batch: int = 0) -> dict[str, Any]:
    """Purge the finished run in ``run_dir``; return the keys added to its summary (and ``onnx_error`` when the
    ONNX export or its check failed; the rest is written either way)."""
    import torch

    from ctrlsparse.feasibility import assess
    from ctrlsparse.latency.measure import latency_report
    from ctrlsparse.plumbing.files import write_json
    from ctrlsparse.purge import (
        OnnxError,
        count,
        deployed,
        export_program,
        save_onnx,
        save_purged,
        size_report,
    )

    run, hparams = finished_run(run_dir)
    model = run.model.eval()
    example = torch.zeros(1, *run.data.input_shape)
    stated = hparams.latency_budget_batch  # the batch a latency budget is stated (and judged) at
    batch = latency_batch or stated
    suffix = {stated: "budget", batch: "batch", 1: "b1"}  # each batch size timed once, under its last name here
    inputs = {name: torch.randn(size, *run.data.input_shape) for size, name in suffix.items()}
    # what is saved, exported and timed: BatchNorms folded, the memory format never much slower at the latency
    # batch and at batch 1 (as the latency table and the run's calibration chose it) and at a budget's
    timing = tuple(inputs[key] for key in ("batch", "b1", "budget") if key in inputs)
    form = deployed(model, example, timing=timing)
    purged = form.model
    sizes = size_report(count(model, example), count(form.plain, example)) | form.summary()  # the cost model's count
    sizes["purged_test_accuracy"] = accuracy(purged, run.data)
    program = export_program(purged, example)
    save_purged(purged, example, paths.purged_model_path(run_dir), program)
    dense = deployed(model, example, timing=timing, dense=True).model  # in its own inference form
    report = latency_report(dense, purged, inputs, LATENCY_SECONDS)
    if batch == 1:  # the latency batch is batch 1: its keys are b1's
        report |= {key.replace("_b1", "_batch"): value for key, value in report.items() if key.endswith("_b1")}
    sizes |= {"latency_batch": batch, **report}
    # the purged value of a latency budget (at the batch it is stated at, not a --latency-batch asked for beside
    # it), in percent of the dense model's as macs_pct and params_pct are: the ratio of the least times of the
    # interleaved rounds, which a loaded machine does not move (its medians it does: a digits CNN's dense model at
    # 1.2 or 11.6 ms)
    sizes |= {"latency_pct": 100 * sizes[f"least_latency_share_{suffix[stated]}"], "latency_pct_batch": stated}
    status: dict[str, Any] = {}
    onnx_path = paths.purged_onnx_path(run_dir)
    try:
        sizes["onnx_max_abs_diff"] = save_onnx(purged, example, onnx_path, program)
    except OnnxError as error:
        onnx_path.unlink(missing_ok=True)  # no stale model of an earlier purge beside the new .pt2
        status["onnx_error"] = str(error)
    write_json(paths.purge_sizes_path(run_dir), sizes | status)
    earlier = json.loads(paths.summary_path(run_dir).read_text())
    # an earlier purge's third batch (keys ending _budget) is not this purge's: no stale latency left beside it
    summary = {key: value for key, value in earlier.items() if not key.endswith("_budget")} | sizes
    verdict = assess(summary, summary.get("feasibility_tolerance") or hparams.feasibility_tolerance)
    write_json(paths.summary_path(run_dir), summary | verdict)  # a budget is judged on the purged model too
    return sizes | verdict | status


def accuracy(model: Any, data: Any, batch_size: int = 1024) -> float:
    import torch

    correct = count = 0
    with torch.no_grad():
        for inputs, labels in data.test_batches(batch_size):
            correct += int((model(inputs).argmax(1) == labels).sum())
            count += len(labels)
    return correct / count


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ctrlsparse purge", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory (holds summary.json and checkpoint.pt)")
    add_tracking_flags(parser, default="none: the run is not mirrored")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads, also of the latency measurement (0: torch's default)"
    )
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=0,
        help="the batch size of the latency measured beside batch 1 (0: the batch the run's latency budget is "
        "stated at, its --latency-batch, else its training batch size); a latency budget is judged at its own",
    )
    args = parser.parse_args(argv)
    for required in (paths.summary_path(args.run), paths.checkpoint_path(args.run), paths.hparams_path(args.run)):
        if not required.exists():
            parser.exit(2, f"ctrlsparse purge: error: {required} is missing; train the run to the end first\n")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        sizes = purge_run(args.run, args.latency_batch)
    except (ValueError, RuntimeError) as error:  # RuntimeError: no finished, readable checkpoint
        parser.exit(2, f"ctrlsparse purge: error: {args.run}: {error}\n")
    target = tracking_target(args, off)  # the flags > the tracking env file > not mirrored
    if target.enabled:
        from ctrlsparse.tracking import mirror_run

        mirror_run(
            args.run, tracking_uri=target.uri, experiment=target.experiment
        )  # a failure only warns: the files stand
    print(
        f"{args.run}: {sizes['params']} params ({sizes['params_pct']:.2f}% of dense), {sizes['macs']} MACs "
        f"({sizes['macs_pct']:.2f}%), test accuracy {100 * sizes['purged_test_accuracy']:.2f}%, latency "
        f"{100 * sizes['least_latency_share_b1']:.0f}% of dense at batch 1, "
        f"{100 * sizes['least_latency_share_batch']:.0f}% at batch {sizes['latency_batch']}",
        file=sys.stderr,
    )
    if sizes.get("feasible") is False:  # the one line of a missed target, as the train command says it
        from ctrlsparse.feasibility import describe_missed

        summary = json.loads(paths.summary_path(args.run).read_text())
        print(f"{args.run}: target missed: {describe_missed(summary)}", file=sys.stderr)
    if "onnx_error" in sizes:  # after everything else is written and mirrored
        parser.exit(
            2,
            f"ctrlsparse purge: error: {args.run}: no {paths.PURGED_ONNX}: {sizes['onnx_error']} "
            f"({paths.PURGED_MODEL} and {paths.PURGE_SIZES} are written)\n",
        )
    return 0
