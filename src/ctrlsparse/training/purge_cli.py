"""``ctrlsparse purge RUN_DIR``: purge a finished run, save the small model, add its size to the summary.

Writes ``purged.pt2`` (torch.export; plain torch loads it) and ``purge.json``, and adds ``params``, ``macs``,
``params_pct``, ``macs_pct`` (% of the dense model), ``dense_params``, ``dense_macs`` and
``purged_test_accuracy`` (the purged model's own test accuracy, which must equal the run's) to
``summary.json``, and judges a budget run again on the purged model (``feasible`` false, with ``purged macs`` in
``target_missed``, when the purged share is more than the tolerance off the budget); with a tracking target (``--tracking-uri`` or ``--tracking-env``) the run is mirrored again so
MLflow has them too.

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


def purge_run(run_dir: Path) -> dict[str, Any]:
    """Purge the finished run in ``run_dir``; return the keys added to its summary."""
    import torch

    from ctrlsparse.feasibility import assess
    from ctrlsparse.hparams import HParams
    from ctrlsparse.plumbing.files import write_json
    from ctrlsparse.purge import count, purge, save_purged, size_report
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
    model = run.model.eval()
    example = torch.zeros(1, *run.data.input_shape)
    purged = purge(model, example)
    sizes = size_report(count(model, example), count(purged, example))
    sizes["purged_test_accuracy"] = accuracy(purged, run.data)
    save_purged(purged, example, paths.purged_model_path(run_dir))
    write_json(paths.purge_sizes_path(run_dir), sizes)
    summary = {**json.loads(paths.summary_path(run_dir).read_text()), **sizes}
    verdict = assess(summary, summary.get("feasibility_tolerance") or hparams.feasibility_tolerance)
    write_json(paths.summary_path(run_dir), summary | verdict)  # a budget is judged on the purged model too
    return sizes | verdict


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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    for required in (paths.summary_path(args.run), paths.checkpoint_path(args.run), paths.hparams_path(args.run)):
        if not required.exists():
            parser.exit(2, f"ctrlsparse purge: error: {required} is missing; train the run to the end first\n")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        sizes = purge_run(args.run)
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
        f"({sizes['macs_pct']:.2f}%), test accuracy {100 * sizes['purged_test_accuracy']:.2f}%",
        file=sys.stderr,
    )
    if sizes.get("feasible") is False:  # the one line of a missed target, as the train command says it
        from ctrlsparse.feasibility import describe_missed

        summary = json.loads(paths.summary_path(args.run).read_text())
        print(f"{args.run}: target missed: {describe_missed(summary)}", file=sys.stderr)
    return 0
