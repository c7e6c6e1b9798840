"""WRN-28-10 on CIFAR-10 on one GPU: epoch time of the real training loop beside the card's FLOP lower bound.

    python benchmarks/gpu_epoch.py --out /tmp/gpu_epoch                       # on a GPU node, ~5 min on an H200
    python benchmarks/gpu_epoch.py --arch wrn16_4 --train-images 512 --test-images 256 --device cpu   # smoke

The data are synthetic CIFAR-10 images written in the real on-disk format (the python pickles
``cifar-10-batches-py/data_batch_1..5, test_batch``) and read by the real loader, so every epoch runs the
path a user's run takes: uint8 images resident on the GPU, crops and flips drawn there, ``ctrlsparse``'s
training loop (constrained, model-wise 0.5, SGD as the paper's CIFAR runs) and its per-epoch evaluation.

Each variant trains ``--epochs`` epochs (the first pays cuDNN's autotuning and, with ``compile``, the
compilation); the steady epoch is the last. The lower bound is the epoch's matrix FLOPs (torch's
FlopCounterMode over one training step: forward + backward, times the number of steps, plus the evaluation's
forwards) divided by the bf16 matrix rate measured here on an 8192^3 product. ``dense`` rows give the gates'
overhead on the GPU (issue 8, goal 1: gated <= 1.10 x dense).
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths
from ctrlsparse.tracking.mirror import read_metrics
from ctrlsparse.training.loop import train
from ctrlsparse.training.setup import build_model

VARIANTS = {  # name: (method, amp, channels_last, compile), most telling first
    "bf16+cl": ("constrained", True, True, False),
    "dense bf16+cl": ("dense", True, True, False),
    "fp32": ("constrained", False, False, False),
    "bf16": ("constrained", True, False, False),
    "bf16+cl+compile": ("constrained", True, True, True),
    "dense bf16+cl+compile": ("dense", True, True, True),
}


def write_cifar10(root: Path, train_images: int, test_images: int) -> None:
    """Random uint8 images and labels as CIFAR-10's python pickles (5 training batches and the test batch)."""
    folder = root / "cifar-10-batches-py"
    if (folder / "test_batch").exists():
        return
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = np.array_split(np.arange(train_images), 5)
    names = [f"data_batch_{i + 1}" for i in range(5)] + ["test_batch"]
    for name, size in zip(names, [len(p) for p in parts] + [test_images], strict=True):
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, size).tolist(),
            b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * size,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def matmul_tflops(device: torch.device) -> float:
    """bf16 matrix rate of this device on an 8192^3 product (mean of 10 after 3 warm-ups), TFLOP/s."""
    if device.type != "cuda":
        return float("nan")
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def step_flops(hparams: HParams, batch: int, device: torch.device) -> tuple[float, float]:
    """(training step FLOPs: forward + backward, forward FLOPs per image) of the dense model."""
    model = build_model(hparams, (3, 32, 32), 10).to(device)
    inputs = torch.randn(batch, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        model(inputs).sum().backward()
    train = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(inputs)
    return float(train), counter.get_total_flops() / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="wrn28_10")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--train-images", type=int, default=49_920, help="default: 390 full batches of 128")
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu_epoch"))
    args = parser.parse_args()
    unknown = [name for name in args.variants.split(",") if name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from: {', '.join(VARIANTS)}")
    device = torch.device(args.device)
    write_cifar10(args.out / "data", args.train_images, args.test_images)
    base = {"dataset": "cifar10", "arch": args.arch, "target": (0.5,), "epochs": args.epochs}
    base |= {"data_root": str(args.out / "data"), "device": args.device, "checkpoint_seconds": 1e9}
    hparams = HParams.resolve(**base, method="dense")
    peak = matmul_tflops(device)
    train_flops, image_flops = step_flops(hparams, hparams.batch_size, device)
    steps = -(-args.train_images // hparams.batch_size)
    epoch_flops = train_flops * steps + image_flops * args.test_images
    bound = epoch_flops / (peak * 1e12)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    results = {"device": gpu, "torch": torch.__version__, "bf16_matmul_tflops": peak, "epoch_pflop": epoch_flops / 1e15}
    results |= {"lower_bound_s": bound, "train_images": args.train_images, "batch": hparams.batch_size, "runs": {}}
    print(
        f"{gpu}, torch {torch.__version__}: bf16 matmul {peak:.0f} TFLOP/s; {args.arch} epoch "
        f"{epoch_flops / 1e15:.3f} PFLOP ({args.train_images} + {args.test_images} images) -> lower bound {bound:.2f} s"
    )
    print(f"{'variant':<24}{'epoch 1 s':>10}{'epoch s':>9}{'train s':>9}{'x bound':>9}{'img/s':>9}")
    for name in args.variants.split(","):
        method, amp, channels_last, compile_ = VARIANTS[name]
        run = HParams.resolve(**base, method=method, amp=amp, channels_last=channels_last, compile=compile_)
        run_dir = args.out / "runs" / name.replace("+", "_").replace(" ", "_")
        shutil.rmtree(run_dir, ignore_errors=True)  # a finished run left by an earlier call would not train again
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        summary = train(run, run_dir, on_epoch=None)
        rows = read_metrics(paths.metrics_path(run_dir))
        first, last = rows[0], rows[-1]
        entry = {
            "first_epoch_s": first["epoch_seconds"],
            "epoch_s": last["epoch_seconds"],
            "train_s": last["train_seconds"],
            "x_bound": last["epoch_seconds"] / bound,
            "images_per_s": args.train_images / last["train_seconds"],
            "expected_density": summary["expected_density"],
            "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        }
        results["runs"][name] = entry
        print(
            f"{name:<24}{entry['first_epoch_s']:>10.2f}{entry['epoch_s']:>9.2f}{entry['train_s']:>9.2f}"
            f"{entry['x_bound']:>9.2f}{entry['images_per_s']:>9.0f}",
            flush=True,
        )
        (args.out / "gpu_epoch.json").write_text(json.dumps(results, indent=1))
    for suffix in ("bf16+cl", "bf16+cl+compile"):
        gated, dense = results["runs"].get(suffix), results["runs"].get(f"dense {suffix}")
        if gated and dense:
            print(
                f"gate overhead ({suffix}): train step gated / dense = {gated['train_s'] / dense['train_s']:.3f}"
                "  goal <= 1.10"
            )


if __name__ == "__main__":
    main()
