"""Sweep throughput: points per second of `run_sweep` on the Fig. 2 block, and how it grows with chunk size.

Two sweeps, each timed after a warm-up sweep of the same chunk size (so compiles are excluded; the
warm-up time, compile included, is printed too):

- theory: the joint and the reduced JoMA flow (`mode="theory"`, softmax, linear activation, 2000
  steps of η_w) over η_w × η_z/η_w × seeds;
- training: SGD only (`mode="train"`) over η_w × η_z/η_w × seeds.

Every chunk is one compiled `shard_map(vmap(...))` call over all local devices.

    python benchmarks/sweep_throughput.py            # 1024-point theory sweep, 64-point training sweep
    python benchmarks/sweep_throughput.py --chunks 256,1024   # wide chunks (a GPU)
    python benchmarks/sweep_throughput.py --quick    # small sizes, for CI
"""

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jomasim.experiments.block_sweep import BlockSweep
from jomasim.experiments.compare import CompareConfig
from jomasim.sweep import Grid, run_sweep

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does


def _grid(points: int) -> Grid:
    """`points` points: η_w × η_z/η_w on a log grid, 4 seeds (points must be a multiple of 4)."""
    side = int(np.sqrt(points // 4))
    rates = np.geomspace(0.02, 0.2, side).tolist()
    ratios = np.geomspace(0.5, 4.0, points // 4 // side).tolist()
    return Grid({"eta_w": tuple(rates), "eta_ratio": tuple(ratios), "seed": (0, 1, 2, 3)})


def _timed_sweep(task: BlockSweep, grid: Grid, chunk_size: int, folder: Path) -> tuple[float, float, int]:
    """(warm-up seconds with compile, timed seconds, points) for one chunk size."""
    started = time.perf_counter()
    run_sweep(task, Grid({"seed": tuple(range(chunk_size))}), folder / f"warm-{chunk_size}", chunk_size=chunk_size)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    result = run_sweep(task, grid, folder / f"timed-{chunk_size}", chunk_size=chunk_size)
    return warm, time.perf_counter() - started, result.summary["points"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--chunks", default=None,
                        help="comma-separated chunk sizes of the theory sweep (default 16,64,256; the training sweep "
                             "takes those up to its 64 points)")
    args = parser.parse_args()
    if args.quick:
        base = CompareConfig(seeds=1, n_distinct=3, n_common=3, n_classes=4, dim=8, steps=100, save_every=20)
        theory_points, train_points, default_chunks = 16, 16, "4,16"
    else:
        base = CompareConfig(seeds=1, save_every=100)
        theory_points, train_points, default_chunks = 1024, 64, "16,64,256"
    chunks = [int(chunk) for chunk in (args.chunks or default_chunks).split(",")]
    train_chunks = [chunk for chunk in chunks if chunk <= train_points] or [train_points]
    sweeps = {"theory": (_grid(theory_points), chunks), "train": (_grid(train_points), train_chunks)}
    print(f"devices: {jax.local_devices()}")
    print(f"setting: M_c = {base.n_distinct + base.n_common}, K = {base.n_classes}, d = {base.dim}, {base.steps} steps")
    print(f"{'mode':>7} {'points':>7} {'chunk':>6} {'warm-up s':>10} {'timed s':>9} {'points/s':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for mode, (grid, chunk_sizes) in sweeps.items():
            task = BlockSweep(base, mode)
            for chunk_size in chunk_sizes:
                warm, seconds, points = _timed_sweep(task, grid, chunk_size, Path(folder) / mode)
                print(f"{mode:>7} {points:7d} {chunk_size:6d} {warm:10.1f} {seconds:9.1f} {points / seconds:10.2f}", flush=True)


if __name__ == "__main__":
    main()
