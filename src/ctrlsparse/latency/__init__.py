"""Measured latency: median wall time per call of models run side by side (:mod:`~ctrlsparse.latency.measure`)."""

from ctrlsparse.latency.measure import median_latencies

__all__ = ["median_latencies"]
