"""What Diffrax's search of the save times costs: trajectories/s of `simulate` saving only the
two ends (`ts = [0, t_end]`, saved as Diffrax's t0/t1 saves) against the same solve saving one
point in between as well (`ts = [0, t_end / 2, t_end]`: Diffrax then checks after every step
whether a save time has been passed), on the two `ode_throughput.py` systems (Tsit5, rtol 1e-6,
`unroll` as `simulate` picks it), in both batch modes. The step counts of the two forms are equal
(saves never move Diffrax's steps), so the ratio is the cost of the search per step.

Timed in alternation (one call of each per round, after a compile call of each); the best and
the median round are printed.

    python benchmarks/saves.py                 # B = 1, 64
    python benchmarks/saves.py --quick         # small sizes, for CI
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
    t_end = SYSTEMS[name][1]
    forms = {"ends only": jnp.array([0.0, t_end]), "one more save": jnp.array([0.0, t_end / 2, t_end])}
    runs = {label: (lambda ts=ts: js.simulate(fields, y0s, ts, options=js.SolverOptions(batch=mode))) for label, ts in forms.items()}
    _, times = alternating_seconds(runs, rounds)
    steps = {label: int(np.max(run().num_steps)) for label, run in runs.items()}
    if len(set(steps.values())) != 1:
        raise RuntimeError(f"the save times moved the steps: {steps}")
    best = {label: batch / min(seconds) for label, seconds in times.items()}
    median = {label: batch / statistics.median(seconds) for label, seconds in times.items()}
    print(f"{name:8s} B={batch:5d} {mode:4s} steps {steps['ends only']:5d}  "
          + "  ".join(f"{label}: best {best[label]:9.1f} median {median[label]:9.1f} traj/s" for label in runs)
          + f"  ends / more (best): {best['ends only'] / best['one more save']:.2f}x"
          + f" (median {median['ends only'] / median['one more save']:.2f}x)")


if __name__ == "__main__":
    alternating_main(__doc__, measure, SYSTEMS, "1,64", rounds=21)
