"""How the cost of one vmapped solve grows with the number of tokens M_c, of hidden nodes K and of
trajectories B.

System: the reduced JoMA flow of the §3.5 block (softmax attention, SiLU, T = 0.5, Gaussian token
frequencies with M_c/2 distinct and M_c/2 common tokens, d = M_c + 1), t ∈ [0, 200] (2000 SGD
steps at rate 0.1, the span of `jomasim compare`), Tsit5, rtol 1e-6, `simulate(batch="vmap")`. One size varies at a time around
(M_c, K, B) = (20, 20, 64). Reported: median wall time of the solve, the largest number of
accepted solver steps in the batch, the time per trajectory-step, and the log-log slope of each
against the varied size (a slope of 1 is linear cost). The step count changes with the problem,
so the time per trajectory-step is the cleaner measure of the cost of the field itself.

    python benchmarks/scaling.py --plot scaling.png   # M_c, K in 10 … 80, B in 1 … 1024
    python benchmarks/scaling.py --quick              # small sizes, for CI
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds

import jomasim as js

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does

BASE = {"tokens": 20, "nodes": 20, "batch": 64}
LABELS = {"tokens": "M_c (contextual tokens)", "nodes": "K (hidden nodes)", "batch": "B (trajectories)"}


def _solve_time(tokens: int, nodes: int, batch: int, repeats: int) -> tuple[float, int]:
    def build(key):
        data_key, init_key = jax.random.split(key)
        data = js.make_token_data(data_key, n_distinct=tokens // 2, n_common=tokens - tokens // 2, n_classes=nodes,
                                  dim=tokens + 1)
        joint = js.JointFlow(data, attention="softmax", activation="silu", temperature=0.5)
        y0 = joint.initial_state(init_key)
        return js.ReducedFlow.from_joint(joint, y0), y0[0]

    fields, y0 = jax.vmap(build)(jax.random.split(jax.random.key(0), batch))
    ts = jnp.array([0.0, 200.0])
    run = lambda: js.simulate(fields, y0, ts, options=js.SolverOptions(batch="vmap"))  # noqa: E731
    trajectory = run()
    if not all(message == "ok" for message in trajectory.messages()):
        raise RuntimeError(f"a solve failed at {tokens=}, {nodes=}, {batch=}: {sorted(set(trajectory.messages()))}")
    return median_seconds(lambda: run().ys, repeats), int(np.max(trajectory.num_accepted_steps))


def _slope(sizes, values) -> float:
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--plot", default=None, help="write a log-log plot to this PNG")
    args = parser.parse_args()
    sweeps = ({"tokens": [10, 20], "nodes": [10, 20], "batch": [1, 8]} if args.quick else
              {"tokens": [10, 20, 40, 80], "nodes": [10, 20, 40, 80], "batch": [1, 16, 256, 1024]})
    repeats = 1 if args.quick else 3
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}")
    measured = {}
    for axis, sizes in sweeps.items():
        print(f"\nvarying {LABELS[axis]} (others: {', '.join(f'{k}={v}' for k, v in BASE.items() if k != axis)})")
        print(f"{axis:>7s} {'seconds':>9s} {'steps':>7s} {'µs per trajectory-step':>23s}")
        rows = []
        for size in sizes:
            sizes_now = {**BASE, axis: size}
            seconds, steps = _solve_time(**sizes_now, repeats=repeats)
            per_step = seconds / (sizes_now["batch"] * steps) * 1e6
            rows.append((size, seconds, steps, per_step))
            print(f"{size:7d} {seconds:9.3f} {steps:7d} {per_step:23.2f}")
        sizes_, seconds_, _, per_step_ = map(np.asarray, zip(*rows))
        print(f"log-log slope: time {_slope(sizes_, seconds_):.2f}, time per trajectory-step {_slope(sizes_, per_step_):.2f}")
        measured[axis] = (sizes_, seconds_, per_step_)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, 3, figsize=(14, 4))
        for axis_plot, (axis, (sizes_, seconds_, per_step_)) in zip(axes, measured.items()):
            axis_plot.loglog(sizes_, seconds_, "o-", label=f"solve time (slope {_slope(sizes_, seconds_):.2f})")
            axis_plot.loglog(sizes_, per_step_ * 1e-6, "s--",
                             label=f"per trajectory-step (slope {_slope(sizes_, per_step_):.2f})")
            axis_plot.set_xlabel(LABELS[axis])
            axis_plot.set_ylabel("seconds")
            axis_plot.legend(fontsize=8)
        figure.suptitle(f"reduced JoMA flow, vmapped Tsit5 solve to t = 200 ({jax.devices()[0].device_kind})")
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
