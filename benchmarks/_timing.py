"""Timing shared by the benchmark scripts, and the command line of the alternating comparisons."""

import argparse
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


def alternating_seconds(runs: dict, rounds: int) -> tuple[dict, dict]:
    """Times several forms of one job in alternation, so that a slow spell of a shared machine
    hits them all: one compile call of each, then `rounds` rounds of one call of each.

    **Arguments:**

    - `runs`: `{label: run}`, each `run()` returning arrays.
    - `rounds`: how many timed calls of each.

    **Returns:**

    `(compile_seconds, seconds)`: per label the first call's wall time (compile included) and
    the list of timed calls' wall times.
    """
    compile_seconds = {label: wall_seconds(run) for label, run in runs.items()}
    seconds = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            seconds[label].append(wall_seconds(run))
    return compile_seconds, seconds


def alternating_main(doc: str, measure, systems, default_batches: str, rounds: int) -> None:
    """The command line of a script that compares two forms of `simulate` in alternation:
    `--quick` (B = 4, 2 rounds, for CI) or `--batches` and `--rounds`, then
    `measure(name, batch, mode, rounds)` for every system, batch size and batch mode ("vmap", "ode").

    **Arguments:**

    - `doc`: the script's docstring (its first line is the description).
    - `measure`: the comparison of one system, batch size and mode.
    - `systems`: the system names; `default_batches`: comma-separated batch sizes without
      `--batches`; `rounds`: alternating rounds without `--quick` or `--rounds`.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--batches", default=None, help=f"comma-separated batch sizes (default {default_batches})")
    parser.add_argument("--rounds", type=int, default=None, help=f"alternating rounds (default {rounds})")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds {args.rounds} is not allowed; give at least 1")
    batches = [int(b) for b in (args.batches or ("4" if args.quick else default_batches)).split(",")]
    rounds = args.rounds or (2 if args.quick else rounds)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, float64")
    for name in systems:
        for batch in batches:
            for mode in ("vmap", "ode"):
                measure(name, batch, mode, rounds)
