"""Several GPUs of one node (DDP under torchrun), as small hooks around one run.

``torchrun --standalone --nproc-per-node N -m ctrlsparse train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set. Each process:

- trains on ``cuda:LOCAL_RANK`` (NCCL) or, on the CPU, with the gloo backend (how the tests run it);
- builds the same model from the same seed, draws the same gate samples (one per layer per *global*
  minibatch, as on one GPU) and takes every N-th example of each global minibatch (``hparams.batch_size`` is
  the global size, as in the paper);
- runs the forward pass through ``DistributedDataParallel``, which averages the gradients: the density terms
  and the expected L2, identical on every process, pass through the average unchanged, so the weights, gates
  and multipliers stay equal everywhere;
- evaluates on the full test set; only rank 0 writes files, prints and talks to MLflow (:func:`is_main`).

The CUDA speed-ups of the forward pass (bf16 autocast, channels-last, torch.compile) are in
:mod:`ctrlsparse.training.forward`.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ctrlsparse.hparams import HParams


@dataclass(frozen=True)
class Processes:
    """This process's place among the job's training processes."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world


def from_env() -> Processes:
    """The processes torchrun describes in the environment (one process without torchrun)."""
    env = os.environ
    return Processes(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def is_main() -> bool:
    """True in the one process that writes files (rank 0, or the only process)."""
    return from_env().main


def start(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group when started by torchrun; returns the processes and this process's device."""
    processes = from_env()
    if device.type == "cuda":
        if processes.world > 1:
            device = torch.device("cuda", processes.local_rank)
            torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # as the paper's runs (not bit-reproducible on GPU anyway)
    if processes.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(stop)
    return processes, device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def threads_per_process(threads: int, processes: Processes) -> int:
    """Torch threads of each process: the job's ``threads`` shared among its processes (0: torch's default)."""
    return max(1, threads // processes.world) if threads else 0


def data_workers(hparams: HParams, processes: Processes) -> int:
    """DataLoader workers per process; ``-1``: the process's share of the job's CPUs, minus its own."""
    if hparams.data_workers >= 0:
        return hparams.data_workers
    cpus = hparams.threads or len(os.sched_getaffinity(0))
    return max(0, cpus // processes.world - 1)


def wrap_ddp(model: nn.Module, device: torch.device, processes: Processes) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when the job has several processes (itself otherwise)."""
    if processes.world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_processes(value: Tensor) -> Tensor:
    """The mean of a tensor over all processes (itself with one process)."""
    if not dist.is_initialized():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def any_process(flag: bool) -> bool:
    """True if ``flag`` is true in any process (e.g. one of them got SIGTERM), so that all stop together."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor(float(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value)
