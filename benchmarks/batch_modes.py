"""Trajectories per second of `jomasim.simulate` in its three batch modes.

Integrates the nonlinear toy (J23, 10 components, μ ~ U[1, 4), T = 2, t ∈ [0, 5]; stiff late on,
≈3300 Tsit5 steps per trajectory) and the
reduced JoMA flow of the Fig. 2 block (softmax attention, SiLU, t ∈ [0, 50]) for B settings:
one by one (`batch=None`, one compile reused), vmapped (`batch="vmap"`, own step size per
trajectory) and as one batched ODE (`batch="ode"`, shared step size). Times are medians of
repeated runs after a warm-up call, with `block_until_ready`.

    python benchmarks/batch_modes.py            # full sizes
    python benchmarks/batch_modes.py --quick    # small sizes, for CI
"""

import argparse

import jax
import jax.numpy as jnp
from _timing import median_seconds

import jomasim as js

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does


def _toy(key):
    mu = jnp.sort(jax.random.uniform(key, (10,), minval=1.0, maxval=4.0))
    return js.NonlinearToyFlow(mu), jnp.full(10, 0.05)


def _reduced(key):
    data_key, init_key = jax.random.split(key)
    joint = js.JointFlow(js.make_token_data(data_key), attention="softmax", activation="silu", temperature=0.5)
    y0 = joint.initial_state(init_key)
    return js.ReducedFlow.from_joint(joint, y0), y0[0]


def measure(name, build, t_end, batch_size, repeats, loop_size):
    keys = jax.random.split(jax.random.key(0), batch_size)
    fields, y0s = jax.vmap(build)(keys)
    ts = jnp.linspace(0.0, t_end, 11)
    singles = [build(key) for key in keys[:loop_size]]

    def loop():
        return [js.simulate(field, y0, ts).ys for field, y0 in singles]

    per_loop = median_seconds(loop, repeats) / loop_size
    rates = {"one by one": 1.0 / per_loop}
    for mode in ("vmap", "ode"):
        seconds = median_seconds(lambda: js.simulate(fields, y0s, ts, options=js.SolverOptions(batch=mode)).ys, repeats)
        rates[mode] = batch_size / seconds
    print(f"{name:8s} B={batch_size:5d}  " + "  ".join(f"{mode}: {rate:10.1f} traj/s" for mode, rate in rates.items())
          + f"  vmap/one-by-one: {rates['vmap'] / rates['one by one']:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    for batch_size in ((4,) if args.quick else (1, 64, 256)):
        measure("toy", _toy, 5.0, batch_size, repeats, loop_size=min(batch_size, 4 if args.quick else 16))
    for batch_size in ((2,) if args.quick else (1, 16, 64)):
        measure("reduced", _reduced, 50.0, batch_size, repeats, loop_size=min(batch_size, 2 if args.quick else 8))


if __name__ == "__main__":
    main()
