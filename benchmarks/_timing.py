"""Timing shared by the benchmark scripts."""

import statistics
import time

import jax


def median_seconds(run, repeats: int) -> float:
    """Median wall time of `run()` over `repeats` calls after one warm-up call (compilation),
    waiting for its arrays with `block_until_ready`."""
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
