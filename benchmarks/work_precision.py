"""Work-precision diagrams: error against trajectories per second, each method over its accuracy knob.

The systems and baselines are those of `ode_throughput.py` (the reduced JoMA flow to t = 200 and
the nonlinear toy J23 to t = 3). Each method is run over its own knob: jomasim `vmap` and `ode`
(Tsit5) and SciPy RK45 / DOP853 over rtol (atol = rtol/1000), the hand-written RK4 `lax.scan`
over its step count (non-finite at too few steps on the stiff toy: printed as unstable, not
plotted). The error is the largest relative error of the final state over the batch,
against a Dopri8 solve at rtol 1e-12. SciPy loops are timed on a subset and scaled to the batch.

    python benchmarks/work_precision.py --plot work_precision.png    # B = 1 and 1024
    python benchmarks/work_precision.py --quick                      # small sizes, for CI
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds
from ode_throughput import SYSTEMS, reference_finals, relative_error, rk4_batch, scipy_solve, settings

import jomasim as js

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does

STYLES = {"jomasim vmap": "o-", "jomasim ode": "s-", "RK4 lax.scan": "^--", "SciPy RK45": "v:", "SciPy DOP853": "d:"}


def curves(name: str, batch: int, rtols: list[float], rk4_steps: list[int], repeats: int, loop: int) -> dict:
    """Per method, a list of (trajectories per second, error) over its knob."""
    t_end = SYSTEMS[name][1]
    fields, y0s = settings(name, batch)
    reference = reference_finals(fields, y0s, t_end)
    ts = jnp.array([0.0, t_end])
    found = {method: [] for method in STYLES}
    for rtol in rtols:
        for mode in ("vmap", "ode"):
            run = lambda: js.simulate(fields, y0s, ts, options=js.SolverOptions(rtol=rtol, atol=rtol * 1e-3, batch=mode, max_steps=200_000))  # noqa: E731
            trajectory = run()
            if all(message == "ok" for message in trajectory.messages()):
                seconds = median_seconds(lambda: run().ys, repeats)
                found[f"jomasim {mode}"].append((batch / seconds, relative_error(trajectory.ys[:, -1], reference)))
    for steps in rk4_steps:
        seconds = median_seconds(lambda: rk4_batch(fields, y0s, t_end, steps), repeats)
        found["RK4 lax.scan"].append((batch / seconds, relative_error(rk4_batch(fields, y0s, t_end, steps), reference)))
    subset = min(batch, loop)
    singles = [jax.tree_util.tree_map(lambda a, i=i: a[i], (fields, y0s)) for i in range(subset)]
    for method in ("RK45", "DOP853"):
        for rtol in rtols:
            seconds, finals, _ = scipy_solve(name, singles, t_end, method, rtol, rtol * 1e-3)
            found[f"SciPy {method}"].append((subset / seconds, relative_error(finals, reference[:subset])))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--plot", default=None, help="write the diagrams to this PNG")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,1024)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated systems of {sorted(SYSTEMS)}")
    args = parser.parse_args()
    batches = [int(b) for b in (args.batches or ("1,8" if args.quick else "1,1024")).split(",")]
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {sorted(SYSTEMS)}")
    rtols = [1e-4, 1e-6] if args.quick else [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]
    rk4_steps = [64, 256] if args.quick else [2**k for k in range(5, 15)]
    repeats, loop = (1, 2) if args.quick else (3, 8)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, float64")
    results = {}
    for name in systems:
        for batch in batches:
            results[name, batch] = curves(name, batch, rtols, rk4_steps, repeats, loop)
            print(f"\n{name}, B = {batch}: trajectories/s at error (per method, knob from loose to tight)")
            for method, points in results[name, batch].items():
                print(f"  {method:14s} " + "  ".join(f"{rate:10.1f}@{error:7.1e}" if np.isfinite(error)
                                                     else f"{rate:10.1f}@unstable" for rate, error in points))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(len(systems), len(batches), figsize=(6 * len(batches), 4.5 * len(systems)), squeeze=False)
        for row, name in enumerate(systems):
            for column, batch in enumerate(batches):
                axis = axes[row, column]
                for method, points in results[name, batch].items():
                    rate, error = np.asarray(points).reshape(-1, 2).T
                    finite = np.isfinite(error)
                    if finite.any():
                        axis.loglog(error[finite], rate[finite], STYLES[method], label=method)
                axis.set_xlabel("relative error of the final state")
                axis.set_ylabel("trajectories per second")
                axis.set_title(f"{name}, B = {batch}")
                axis.legend(fontsize=8)
        figure.suptitle(f"work-precision ({jax.devices()[0].device_kind})")
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
