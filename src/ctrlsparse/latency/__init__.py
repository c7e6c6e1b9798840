"""Measured latency: median wall time per call of models run side by side (:mod:`~ctrlsparse.latency.measure`)."""

from ctrlsparse.latency.measure import interleaved_times, median_latencies, median_share

__all__ = ["interleaved_times", "median_latencies", "median_share"]
