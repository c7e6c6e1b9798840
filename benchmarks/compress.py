"""Compress a trained model: ctrlsparse's warm start beside its from-scratch run and Torch-Pruning + fine-tuning.

    .venv/bin/pip install torch-pruning==1.6.1        # the peer (a benchmark-only dependency)
    .venv/bin/python benchmarks/compress.py --dataset digits --archs cnn,mlp --jobs 2
    .venv/bin/python benchmarks/compress.py --dataset mnist5k --archs lenet5,mlp --finetune-epochs 60 --jobs 2
    .venv/bin/python benchmarks/compress.py --dataset imagefolder --data-root mnist5k --archs torchvision:resnet18 \\
        --image-size 28 --finetune-epochs 15 --pretrain-epochs 15   # mnist5k written as an image folder of PNGs

For every arch and seed, one dense run (the data set's defaults, or ``--pretrain-epochs``) is the trained model all
three start from; then per MAC share B (``--shares``):

- **warm**: ``ctrlsparse train --budget macs=B --target-scope none --pretrained DENSE --epochs F`` (the defaults of a
  warm start; ``--warm`` adds flags, e.g. ``distill=0.5``), purged;
- **scratch**: the same budget from scratch for the dense run's epochs + F (equal total steps), purged;
- **Torch-Pruning**: ``MetaPruner`` on the dense model (classifier kept) with each importance of L1 magnitude,
  first-order Taylor and BatchNorm scale (where the model has BatchNorms), the pruning ratio bisected to the largest
  MAC share <= B (the purge's counter: FlopCounterMode, batch 1); then F epochs of fine-tuning with the dense run's
  optimizer, learning rate, batch size and data order. The row shows its best importance (by mean accuracy).

One process per job, one thread each (``--jobs`` in parallel). Prints one Markdown row per (arch, share, method):
accuracy mean and spread (min-max) over the seeds, the MAC share of the model each returns, and the feasibility
verdicts of ctrlsparse's runs. Runs go to ``--out`` (default: a fresh temporary directory); finished runs are
reused when the same ``--out`` is given again.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

IMPORTANCES = ("l1", "taylor", "bn_scale")


def resolve(common: dict, **given):
    from ctrlsparse.hparams import HParams

    return HParams.resolve(**{**common, **given})


def trained_with(out: Path, hparams) -> bool:
    """Whether ``out`` holds a run of exactly ``hparams``' computation (older runs: their fields' defaults)."""
    import dataclasses

    from ctrlsparse.hparams import HParams
    from ctrlsparse.plumbing import paths

    if not paths.hparams_path(out).exists():
        return False
    stored = json.loads(paths.hparams_path(out).read_text())
    names = {f.name for f in dataclasses.fields(HParams)}
    return HParams.from_dict({k: v for k, v in stored.items() if k in names}).computation() == hparams.computation()


def dense(common: dict, seed: int, epochs: int | None, root: Path) -> str:
    from ctrlsparse.plumbing import paths
    from ctrlsparse.training.loop import train

    out = root / "dense" / f"seed{seed}"
    if not paths.summary_path(out).exists():
        train(resolve(common, method="dense", seed=seed, epochs=epochs), out, None)
    return str(out)


def ours(
    common: dict, seed: int, share: float, mode: str, dense_dir: str, epochs: int, extra: dict, root: Path
) -> dict:
    from ctrlsparse.identity import hparams_hash
    from ctrlsparse.plumbing import paths
    from ctrlsparse.training.loop import train
    from ctrlsparse.training.purge_cli import purge_run

    given = {"budget": f"macs={share:g}", "target_scope": "none", "seed": seed, "epochs": epochs}
    if mode == "warm":
        given |= {"pretrained": dense_dir, **extra}
    hparams = resolve(common, **given)
    out = root / mode / f"macs{share:g}" / f"seed{seed}"
    if not trained_with(out, hparams):  # a run of other hyperparameters (e.g. older defaults) stays where it is
        out = out.with_name(f"seed{seed}-{hparams_hash(hparams, dense_dir)}")
    if not (paths.purge_sizes_path(out).exists() and paths.summary_path(out).exists()):
        train(hparams, out, None)
        purge_run(out)
    summary = json.loads(paths.summary_path(out).read_text())
    return {
        "accuracy": summary["purged_test_accuracy"],
        "macs": summary["macs_pct"],
        "feasible": summary.get("feasible"),
    }


def peer(common: dict, seed: int, share: float, importance: str, dense_dir: str, epochs: int) -> dict | None:
    """Torch-Pruning with ``importance`` at the largest MAC share <= ``share``, then fine-tuned (None: not
    applicable, e.g. BatchNorm scale on a model without BatchNorms)."""
    import torch
    import torch_pruning as tp
    from torch import nn

    from ctrlsparse.purge import count
    from ctrlsparse.training.distributed import Processes
    from ctrlsparse.training.setup import build_model, build_primal_optimizer, load_data

    torch.set_num_threads(1)
    hparams = resolve(common, method="dense", seed=seed, epochs=epochs)
    data = load_data(hparams, Processes())
    torch.manual_seed(seed)
    model = build_model(hparams, data.input_shape, data.num_classes)
    state = torch.load(Path(dense_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    if importance == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    example = torch.zeros(1, *data.input_shape)
    dense_macs = count(model, example).macs
    inputs, labels = next(data.train_batches(256, torch.Generator().manual_seed(seed)))

    def pruned(ratio: float) -> nn.Module:
        copied = copy.deepcopy(model).train()
        classifier = [m for m in copied.modules() if isinstance(m, nn.Linear)][-1]
        chosen = {
            "l1": tp.importance.MagnitudeImportance(p=1),
            "taylor": tp.importance.TaylorImportance(),
            "bn_scale": tp.importance.BNScaleImportance(),
        }[importance]
        pruner = tp.pruner.MetaPruner(copied, example, chosen, pruning_ratio=ratio, ignored_layers=[classifier])
        if importance == "taylor":
            nn.functional.cross_entropy(copied(inputs), labels).backward()
        pruner.step()
        copied.zero_grad(set_to_none=True)
        return copied

    low, high, best = 0.0, 0.999, None
    for _ in range(14):  # the largest MAC share <= share
        middle = (low + high) / 2
        candidate = pruned(middle)
        macs = count(candidate, example).macs / dense_macs
        if macs <= share:
            best, high = (candidate, macs), middle
        else:
            low = middle
    if best is None:
        return None
    candidate, macs = best
    optimizer = build_primal_optimizer(hparams, candidate)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        candidate.train()
        for batch, target in data.train_batches(hparams.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(candidate(batch), target).backward()
            optimizer.step()
    candidate.eval()
    correct = total = 0
    with torch.no_grad():
        for batch, target in data.test_batches(1024):
            correct += int((candidate(batch).argmax(1) == target).sum())
            total += len(target)
    return {"accuracy": correct / total, "macs": 100 * macs}


def mnist5k_folder(root: Path) -> Path:
    """mnist5k's train / test images as an image folder of PNGs (``train/<digit>/``, ``val/<digit>/``)."""
    from PIL import Image

    from ctrlsparse.data.digits import stratified_split
    from ctrlsparse.data.mnist5k import SPLIT_SEED, TEST_SIZE, mnist5k_csv, read_table

    if (root / "val").exists():
        return root
    images, labels = read_table(mnist5k_csv())
    train, test = stratified_split(labels, TEST_SIZE, SPLIT_SEED)
    for split, chosen in (("train", train), ("val", test)):
        for index in chosen.tolist():
            folder = root / split / str(labels[index])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index, 0]).save(folder / f"{index}.png")
    return root


def cell(results: list[dict]) -> str:
    accuracies = [100 * r["accuracy"] for r in results]
    macs = statistics.mean(r["macs"] for r in results)
    spread = f" ({min(accuracies):.1f}-{max(accuracies):.1f})" if len(accuracies) > 1 else ""
    return f"{statistics.mean(accuracies):.1f}%{spread} at {macs:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root", default="", help="imagefolder: the folder (mnist5k: written from mnist5k)")
    parser.add_argument("--image-size", type=int, default=0, help="imagefolder: the image side")
    parser.add_argument("--archs", default="cnn,mlp")
    parser.add_argument("--shares", default="0.3,0.1,0.05,0.02")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--finetune-epochs", type=int, default=100)
    parser.add_argument("--pretrain-epochs", type=int, default=0, help="the dense run's epochs (0: the defaults)")
    parser.add_argument("--warm", default="", help="extra hyperparameters of the warm runs, e.g. distill=0.5")
    parser.add_argument("--methods", default="warm,scratch,peer")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="compress_"))
    extra = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.warm.split(",") if item)}
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    print(f"runs in {root}\n", flush=True)
    print("| arch | MAC budget | ctrlsparse warm start | ctrlsparse from scratch | Torch-Pruning + fine-tune |")
    print("|---|---|---|---|---|", flush=True)
    with ProcessPoolExecutor(args.jobs, max_tasks_per_child=1) as pool:
        for arch in args.archs.split(","):
            common = {"dataset": args.dataset, "arch": arch, "threads": 1, "device": "cpu"}
            if args.data_root == "mnist5k":
                common["data_root"] = str(mnist5k_folder(root / "mnist5k_folder"))
            elif args.data_root:
                common["data_root"] = args.data_root
            if args.image_size:
                common["image_size"] = args.image_size
            base = root / args.dataset / arch.replace(":", "_")
            pretrain = args.pretrain_epochs or None
            runs = [pool.submit(dense, common, seed, pretrain, base) for seed in seeds]
            denses = {seed: run.result() for seed, run in zip(seeds, runs, strict=True)}
            dense_epochs = json.loads((Path(denses[seeds[0]]) / "summary.json").read_text())["epochs"]
            jobs = {}
            for share in shares:
                for seed in seeds:
                    if "warm" in methods:
                        jobs[("warm", share, seed)] = pool.submit(
                            ours, common, seed, share, "warm", denses[seed], args.finetune_epochs, extra, base
                        )
                    if "scratch" in methods:
                        jobs[("scratch", share, seed)] = pool.submit(
                            ours, common, seed, share, "scratch", "", dense_epochs + args.finetune_epochs, {}, base
                        )
                    for importance in IMPORTANCES if "peer" in methods else ():
                        jobs[(importance, share, seed)] = pool.submit(
                            peer, common, seed, share, importance, denses[seed], args.finetune_epochs
                        )
            for share in shares:
                cells = []
                for method in ("warm", "scratch"):
                    results = [jobs[(method, share, s)].result() for s in seeds if (method, share, s) in jobs]
                    missed = sum(1 for r in results if r["feasible"] is False)
                    cells.append(
                        cell(results) + (f" ({missed}/{len(results)} infeasible)" if missed else "") if results else "-"
                    )
                best = None
                for importance in IMPORTANCES:
                    results = [jobs[(importance, share, s)].result() for s in seeds if (importance, share, s) in jobs]
                    results = [r for r in results if r is not None]
                    if results and (best is None or statistics.mean(r["accuracy"] for r in results) > best[0]):
                        best = (statistics.mean(r["accuracy"] for r in results), importance, results)
                cells.append(f"{cell(best[2])} ({best[1]})" if best else "-")
                print(f"| {arch} | {share:g} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
