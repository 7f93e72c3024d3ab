"""Diffrax's stage loop against `jomasim.UnrolledERK`: compile time and trajectories/s of
`simulate(..., unroll=False)` and `simulate(..., unroll=True)` (Tsit5, rtol 1e-6) on the two
`ode_throughput.py` systems, in both batch modes.

The two forms are timed in alternation (one call of each per round, after a compile call of
each), so a slow spell of a shared machine hits both; the best and the median round are printed.

    python benchmarks/unroll.py                 # B = 1, 64, 1024
    python benchmarks/unroll.py --quick         # small sizes, for CI
"""

import statistics

import jax
import jax.numpy as jnp
import numpy as np
from _timing import alternating_main, alternating_seconds
from ode_throughput import SYSTEMS, settings

import jomasim as js

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does


def measure(name: str, batch: int, mode: str, rounds: int) -> None:
    fields, y0s = settings(name, batch)
    ts = jnp.array([0.0, SYSTEMS[name][1]])
    runs = {flag: (lambda flag=flag: js.simulate(fields, y0s, ts, js.SolverOptions(batch=mode, unroll=flag)))
            for flag in (False, True)}
    compile_seconds, times = alternating_seconds(runs, rounds)
    steps = {flag: int(np.max(run().num_steps)) for flag, run in runs.items()}
    best = {flag: batch / min(seconds) for flag, seconds in times.items()}
    for flag, label in ((False, "Diffrax stage loop"), (True, "UnrolledERK")):
        print(f"{name:8s} B={batch:5d} {mode:4s} {label:18s} compile+first {compile_seconds[flag]:6.2f} s  "
              f"best {best[flag]:10.1f} traj/s  median {batch / statistics.median(times[flag]):10.1f} traj/s  steps {steps[flag]}")
    print(f"{'':8s} {'':7s} {mode:4s} unrolled / loop (best): {best[True] / best[False]:.2f}x")


if __name__ == "__main__":
    alternating_main(__doc__, measure, SYSTEMS, "1,64,1024", rounds=15)
