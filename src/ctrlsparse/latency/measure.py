"""Median latency of several models on one input, measured side by side.

Rounds of one call of each model in turn (a, b, a, b, ...), after a warm-up of each, so that whatever else the
machine does (a frequency change, another job on the cores) hits every model alike; the median over rounds of
each model's wall time per call, in milliseconds. The number of rounds is capped by time: at least
``min_rounds``, then more until ``seconds`` have passed or ``max_rounds`` are done. Threads: whatever
``torch.get_num_threads()`` is when called (the caller fixes it, e.g. ``ctrlsparse purge --threads``).
A latency *share* is the median over rounds of the two models' ratio within the round (:func:`median_share`):
on a shared machine, load that comes and goes over seconds moves both calls of a round alike.
On a CUDA device every call is synchronised before its clock stops. The process keeps the memory it frees while
it measures (:func:`~ctrlsparse.latency.allocator.freed_memory_kept`): a model's time, not its allocator's.
One model's (or layer's) own time, for the latency table and the memory formats' plans: :func:`least_ms`, the
least of repeated calls. Of several candidates timed over several batch sizes, the one to keep:
:func:`never_much_slower`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ctrlsparse.latency.allocator import freed_memory_kept


def _synchronise(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


@torch.inference_mode()
@freed_memory_kept()
def interleaved_times(
    models: Mapping[str, Callable[[Tensor], Any]],
    example: Tensor,
    seconds: float = 0.2,
    min_rounds: int = 5,
    max_rounds: int = 200,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Each model's seconds per call on ``example``, one entry per round (interleaved, see the module doc)."""
    sync = _synchronise(example.device)
    for model in models.values():
        for _ in range(warmup):
            model(example)
    sync()
    times: dict[str, list[float]] = {name: [] for name in models}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - start < seconds):
        for name, model in models.items():
            began = time.perf_counter()
            model(example)
            sync()
            times[name].append(time.perf_counter() - began)
        rounds += 1
    return times


@torch.no_grad()
@freed_memory_kept()
def least_ms(
    module: Callable[[Tensor], Any], x: Tensor, repeats: int = 9, warmup: int = 2, budget_s: float = 0.5
) -> float:
    """Least wall time of ``module(x)`` in ms (``repeats`` timed calls after ``warmup``, fewer when they pass
    ``budget_s``; at least three): other processes only ever add time, so the least is the layer's own. The
    allocator keeps the memory it frees meanwhile, as :func:`~ctrlsparse.latency.measure.interleaved_times`'s."""
    sync = _synchronise(x.device)
    for _ in range(warmup):
        module(x)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        begin = time.perf_counter()
        module(x)
        sync()
        times.append(1000 * (time.perf_counter() - begin))
    return min(times)


def never_much_slower(ms: dict[str, list[float]]) -> str:
    """Of the candidates' times over the same batches (``ms[name][i]``), the one whose worst ratio to the fastest
    is the lesser (the first named on a tie: channels-last of the two formats)."""
    worst = dict.fromkeys(ms, 1.0)
    for i in range(len(next(iter(ms.values())))):
        least = min(times[i] for times in ms.values())
        for name, times in ms.items():
            worst[name] = max(worst[name], times[i] / least)
    order = {name: position for position, name in enumerate(ms)}
    return min(ms, key=lambda name: (worst[name], order[name]))


def median_latencies(models: Mapping[str, Callable[[Tensor], Any]], example: Tensor, **rounds: Any) -> dict[str, float]:
    """Each model's median milliseconds per call on ``example`` (``rounds``: :func:`interleaved_times`'s)."""
    times = interleaved_times(models, example, **rounds)
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def median_share(times: Mapping[str, list[float]], model: str, reference: str) -> float:
    """The median over rounds of ``model``'s time over ``reference``'s in the same round."""
    return statistics.median(a / b for a, b in zip(times[model], times[reference], strict=True))


def least_share(times: Mapping[str, list[float]], model: str, reference: str) -> float:
    """``model``'s least time over ``reference``'s: other work on the machine only ever adds time (what a latency
    budget is judged on)."""
    return min(times[model]) / min(times[reference])


def latency_report(
    dense: Callable[[Tensor], Any], purged: Callable[[Tensor], Any], inputs: Mapping[str, Tensor], seconds: float = 0.2
) -> dict[str, float | int]:
    """The summary's latency keys: per input ``suffix -> batch``, ``latency_ms_<suffix>``,
    ``dense_latency_ms_<suffix>`` (medians) and ``latency_share_<suffix>`` (:func:`median_share` of purged over
    dense), and ``latency_threads``."""
    report: dict[str, float | int] = {"latency_threads": torch.get_num_threads()}
    for suffix, batch in inputs.items():
        times = interleaved_times({"dense": dense, "purged": purged}, batch, seconds=seconds)
        report[f"latency_ms_{suffix}"] = 1000.0 * statistics.median(times["purged"])
        report[f"dense_latency_ms_{suffix}"] = 1000.0 * statistics.median(times["dense"])
        report[f"latency_share_{suffix}"] = median_share(times, "purged", "dense")
        report[f"least_latency_share_{suffix}"] = least_share(times, "purged", "dense")
    return report
