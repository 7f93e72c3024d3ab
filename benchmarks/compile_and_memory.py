"""Time to first result (compile included) and the memory of large batched solves.

1. Time to first result, each in a fresh Python process, wall clock from launch to exit:
   `jomasim compare` (the main job) and a first `simulate` (the nonlinear toy, 64 settings),
   with JAX's persistent compilation cache off, on but empty (cold), and on and filled by the
   previous run (warm). The cache is JAX's own (`JAX_COMPILATION_CACHE_DIR`, with the minimum
   compile time and entry size set to 0 so every compile is cached). JAX does not cache programs
   with host callbacks, and Diffrax's runtime checks are host callbacks unless Equinox is told to
   turn errors into NaN (`EQX_ON_ERROR=nan`; jomasim reports a NaN state per trajectory), so the
   cache is measured both ways. Last, without a cache: with XLA's backend (LLVM) optimisation
   level 0 (`XLA_FLAGS=--xla_backend_optimization_level=0`), a quicker compile of slower code, what
   the test suite uses; and with XLA's own defaults for the two options that jomasim lowers for
   its block programs on a CPU (`jomasim._compile`; flags in `XLA_FLAGS` win), which shows what
   those options gain.
2. Memory of one vmapped solve of B trajectories (the nonlinear toy J23, 10 components) as XLA
   accounts for it in the compiled program (`memory_analysis()`: arguments, outputs and temporary
   buffers), for several numbers of saved time points and for a longer time span (many more
   solver steps, same saves): the memory should grow with the saves, not with the steps. The
   total (arguments + outputs + temporaries) bounds the device memory the solve needs.

    python benchmarks/compile_and_memory.py            # B = 4096, saves 10 … 1000
    python benchmarks/compile_and_memory.py --quick    # small sizes, for CI
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import jomasim as js
from jomasim.theory import SolverOptions, solve

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does

FIRST_SIMULATE = """
import jax, jax.numpy as jnp, jomasim as js
jax.config.update("jax_enable_x64", True)
mu = jnp.sort(jax.random.uniform(jax.random.key(0), (64, 10), minval=1.0, maxval=4.0), axis=1)
fields = jax.vmap(js.NonlinearToyFlow)(mu)
trajectory = js.simulate(fields, jnp.full((64, 10), 0.05), jnp.linspace(0.0, 3.0, 31), js.SolverOptions(batch="vmap"))
print(trajectory.messages()[0], float(trajectory.ys[0, -1, -1]))
"""


def _first_result_seconds(command: list[str], cache: str | None, quiet_errors: bool, xla_flags: str,
                          folder: str) -> float:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("JAX_COMPILATION_CACHE", "EQX_ON_ERROR", "XLA_FLAGS"))}
    # the command line's own cache (on by default: the "warm, nan" condition) is off here, so that
    # each condition is what its environment says
    environment["JOMASIM_COMPILE_CACHE"] = "off"
    if cache is not None:
        environment.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    if quiet_errors:
        environment["EQX_ON_ERROR"] = "nan"
    if xla_flags:
        environment["XLA_FLAGS"] = xla_flags
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment, cwd=folder, timeout=1800)
    return time.perf_counter() - started


QUICK_COMPILE = "--xla_backend_optimization_level=0"
XLA_DEFAULTS = "--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=true"
CONDITIONS = (("cache off", "off", False, ""), ("cold", "default", False, ""),
              ("warm", "default", False, ""), ("cold, nan", "nan", True, ""), ("warm, nan", "nan", True, ""),
              ("off, -O0", "off", False, QUICK_COMPILE), ("off, XLA def.", "off", False, XLA_DEFAULTS))
"""(column, cache folder, EQX_ON_ERROR=nan, XLA_FLAGS): without EQX_ON_ERROR=nan, Diffrax's runtime
checks are host callbacks and JAX does not cache a program that has them. `XLA_DEFAULTS` restores
XLA's own values of the options in `jomasim._compile.LIGHT_CPU_COMPILE`."""


def first_results(quick: bool) -> None:
    sizes = ["--seeds", "2", "--steps", "200", "--save-every", "50"] if quick else []
    jobs = {
        "jomasim compare" + (" (reduced)" if quick else ""):
            lambda run: [sys.executable, "-m", "jomasim.cli", "compare", *sizes, "--out", "runs", "--name", run],
        "first simulate (toy, B = 64)": lambda run: [sys.executable, "-c", FIRST_SIMULATE],
    }
    print("time to first result, fresh process, compile included (s); cache = JAX's persistent compilation "
          f"cache, nan = EQX_ON_ERROR=nan, -O0 = XLA_FLAGS={QUICK_COMPILE}, XLA def. = XLA_FLAGS='{XLA_DEFAULTS}'")
    print(f"{'job':34s}" + "".join(f"{column:>14s}" for column, *_ in CONDITIONS))
    for name, command in jobs.items():
        with tempfile.TemporaryDirectory() as folder:
            times = [_first_result_seconds(command(f"run{number}"), None if cache == "off" else os.path.join(folder, cache),
                                           quiet, xla_flags, folder)
                     for number, (_, cache, quiet, xla_flags) in enumerate(CONDITIONS)]
        print(f"{name:34s}" + "".join(f"{seconds:14.1f}" for seconds in times))


def _batched_solve(batch: int, saves: int, t_end: float):
    mu = jnp.sort(jax.random.uniform(jax.random.key(1), (batch, 10), minval=1.0, maxval=4.0), axis=1)
    fields, y0 = jax.vmap(js.NonlinearToyFlow)(mu), jnp.full((batch, 10), 0.05)
    ts = jnp.linspace(0.0, t_end, saves)
    options = SolverOptions(max_steps=100_000)

    @jax.jit
    def run(fields, y0):
        trajectory = jax.vmap(lambda field, start: solve(field, start, ts, options))(fields, y0)
        return trajectory.ys, trajectory.num_steps

    return run, (fields, y0)


def memory(batch: int, saves_list: list[int], long_t_end: float) -> None:
    mib = 2.0**20
    print(f"\nmemory of one vmapped solve, B = {batch} (nonlinear toy, 10 components), from XLA's memory_analysis (MiB)")
    print(f"{'saves':>6s} {'t_end':>6s} {'solver steps':>13s} {'saved states':>13s} {'outputs':>9s} {'temporaries':>12s} {'total':>8s}")
    for saves, t_end in [(saves, 3.0) for saves in saves_list] + [(saves_list[-2], long_t_end)]:
        run, arguments = _batched_solve(batch, saves, t_end)
        analysis = run.lower(*arguments).compile().memory_analysis()
        steps = int(np.max(run(*arguments)[1]))
        saved = batch * saves * 10 * 8 / mib
        outputs, temporaries = analysis.output_size_in_bytes / mib, analysis.temp_size_in_bytes / mib
        total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes) / mib
        print(f"{saves:6d} {t_end:6.0f} {steps:13d} {saved:13.1f} {outputs:9.1f} {temporaries:12.1f} {total:8.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    first_results(args.quick)
    if args.quick:
        memory(256, [10, 50, 200], long_t_end=30.0)
    else:
        memory(4096, [10, 50, 200, 1000], long_t_end=30.0)


if __name__ == "__main__":
    main()
