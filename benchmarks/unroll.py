"""Diffrax's stage loop against `jomasim.UnrolledERK`: compile time and trajectories/s of
`simulate(..., unroll=False)` and `simulate(..., unroll=True)` (Tsit5, rtol 1e-6) on the two
`ode_throughput.py` systems, in both batch modes.

The two forms are timed in alternation (one call of each per round, after a compile call of
each), so a slow spell of a shared machine hits both; the best and the median round are printed.

    python benchmarks/unroll.py                 # B = 1, 64, 1024
    python benchmarks/unroll.py --quick         # small sizes, for CI
"""

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np

import jomasim as js
from _timing import wall_seconds
from ode_throughput import SYSTEMS, settings


def measure(name: str, batch: int, mode: str, rounds: int) -> None:
    fields, y0s = settings(name, batch)
    ts = jnp.array([0.0, SYSTEMS[name][1]])
    runs = {flag: (lambda flag=flag: js.simulate(fields, y0s, ts, batch=mode, unroll=flag)) for flag in (False, True)}
    compile_seconds = {flag: wall_seconds(run) for flag, run in runs.items()}
    times = {flag: [] for flag in runs}
    for _ in range(rounds):
        for flag, run in runs.items():
            times[flag].append(wall_seconds(run))
    steps = {flag: int(np.max(run().num_steps)) for flag, run in runs.items()}
    best = {flag: batch / min(seconds) for flag, seconds in times.items()}
    for flag, label in ((False, "Diffrax stage loop"), (True, "UnrolledERK")):
        print(f"{name:8s} B={batch:5d} {mode:4s} {label:18s} compile+first {compile_seconds[flag]:6.2f} s  "
              f"best {best[flag]:10.1f} traj/s  median {batch / statistics.median(times[flag]):10.1f} traj/s  steps {steps[flag]}")
    print(f"{'':8s} {'':7s} {mode:4s} unrolled / loop (best): {best[True] / best[False]:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,64,1024)")
    args = parser.parse_args()
    batches = [int(b) for b in (args.batches or ("4" if args.quick else "1,64,1024")).split(",")]
    rounds = 2 if args.quick else 15
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, float64")
    for name in SYSTEMS:
        for batch in batches:
            for mode in ("vmap", "ode"):
                measure(name, batch, mode, rounds)


if __name__ == "__main__":
    main()
