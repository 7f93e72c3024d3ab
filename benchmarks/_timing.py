"""Timing shared by the benchmark scripts."""

import statistics
import time

import jax


def wall_seconds(run) -> float:
    """Wall time of one call of `run()`, waiting for its arrays with `block_until_ready`."""
    start = time.perf_counter()
    jax.block_until_ready(run())
    return time.perf_counter() - start


def median_seconds(run, repeats: int) -> float:
    """Median wall time of `run()` over `repeats` calls after one warm-up call (compilation),
    waiting for its arrays with `block_until_ready`."""
    jax.block_until_ready(run())
    return statistics.median(wall_seconds(run) for _ in range(repeats))
