"""Trajectories per second of the JoMA ODEs: jomasim against the integrators a user would otherwise run.

Systems (float64):

- `reduced`: the reduced JoMA flow of the Fig. 2 block (M_c = 20, K = 20, d = 30, softmax
  attention, SiLU, T = 0.5), t ∈ [0, 200] (2000 SGD steps at lr 0.1). SiLU stands in for the
  ReLU of the issue: with ReLU the field is non-smooth and hidden units slide along their kink,
  so no adaptive integrator reaches a tight reference (Dopri8 at rtol 1e-12 exhausts 16k steps
  by t ≈ 2), and "the same accuracy" is undefined;
- `toy`: the nonlinear toy v̇ = (μ − v) ∘ exp(v²/2) (J23, 10 components, μ ~ U[1, 4)), t ∈ [0, 3].

Methods, each on B different settings (seeds), with the error of the final state against a tight
reference (Dopri8, rtol 1e-12) reported beside each time:

- jomasim `simulate(batch="vmap")` and `simulate(batch="ode")`, Tsit5 + PID, rtol 1e-6;
- plain Diffrax: `diffeqsolve` with `diffrax.Tsit5()` (its stages in an inner loop) and the same
  controller, vmapped, as a Diffrax user writes it; the gap to jomasim vmap is what
  `jomasim.UnrolledERK` saves;
- a hand-written fixed-step RK4 in `lax.scan`, vmapped (the in-JAX floor), with the smallest step
  count (doubling from 16) whose error is no larger than jomasim's;
- SciPy `solve_ivp` RK45 and DOP853 (rtol 1e-6) on a NumPy right-hand side, one setting after
  another (needs `scipy`, the `[bench]` extra);
- a PyTorch loop of explicit Euler steps per setting, as the authors' scripts do it (step 0.1 for
  `reduced` = SGD at lr 0.1, 0.02 for `toy` as the Fig. 4 code; needs `torch`, skipped when absent).

Loops over settings are timed on a subset and scaled to B. Times are medians of repeated runs
after a warm-up call, with `block_until_ready`.

    python benchmarks/ode_throughput.py                 # B = 1, 64, 1024, 4096
    python benchmarks/ode_throughput.py --quick         # small sizes, for CI
"""

import argparse
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from _timing import median_seconds

import jomasim as js
from jomasim.theory._simulate import _error_norm  # jomasim's NaN-safe norm: the plain-Diffrax row differs only in its stages

jax.config.update("jax_enable_x64", True)  # jomasim computes in float64, as its CLI does

RTOL, ATOL = 1e-6, 1e-9


def _reduced(key):
    data_key, init_key = jax.random.split(key)
    joint = js.JointFlow(js.make_token_data(data_key), attention="softmax", activation="silu", temperature=0.5)
    y0 = joint.initial_state(init_key)
    return js.ReducedFlow.from_joint(joint, y0), y0[0]


def _toy(key):
    mu = jnp.sort(jax.random.uniform(key, (10,), minval=1.0, maxval=4.0))
    return js.NonlinearToyFlow(mu), jnp.full(10, 0.05)


SYSTEMS = {"reduced": (_reduced, 200.0, 0.1), "toy": (_toy, 3.0, 0.02)}


def hand_written_field(name: str, field, xp=np):
    """The right-hand side written by hand on NumPy or torch arrays (what a SciPy or PyTorch user
    writes), for the `field` of one setting. `xp` is the array module (`numpy` or `torch`)."""
    constant = lambda a: xp.asarray(np.asarray(a))  # noqa: E731
    if name == "toy":
        mu = constant(field.mu)
        return lambda v: (mu - v) * xp.exp(v**2 / 2.0)
    X, U = constant(field.data.X), constant(field.data.U)
    U_c, u_q = U[:, :-1], U[:, -1:]
    invariant = field.invariant
    kappa = float(invariant.lr_ratio) / (2.0 * float(invariant.temperature))
    b_bar, c = constant(invariant.b_bar), constant(invariant.c)
    T, eta, K = float(field.temperature), float(field.eta_w), X.shape[1]
    identity = xp.eye(K)

    def rhs(W):
        V = U_c.T @ W
        z = kappa * ((V**2).sum(1) - b_bar * (V**2).sum()) + c
        B = X * xp.exp((z - z.max()) / T)[:, None]
        F = U_c @ (B / B.sum(0)[None, :]) + u_q
        P = F.T @ W
        sigmoid = 1.0 / (1.0 + xp.exp(-P))
        H = P * sigmoid
        S = xp.exp(H - H.max())
        S = S / S.sum(1)[:, None]
        return -eta * F @ ((S - identity) / K * sigmoid * (1.0 + P * (1.0 - sigmoid)))

    return rhs


def _rk4(field, y0, t_end, n):
    dt = t_end / n

    def step(y, i):
        t = i * dt
        k1 = field(t, y, None)
        k2 = field(t + dt / 2, y + dt / 2 * k1, None)
        k3 = field(t + dt / 2, y + dt / 2 * k2, None)
        k4 = field(t + dt, y + dt * k3, None)
        return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return jax.lax.scan(step, y0, jnp.arange(n))[0]


rk4_batch = jax.jit(jax.vmap(_rk4, in_axes=(0, 0, None, None)), static_argnums=(2, 3))


def _plain_diffrax(field, y0, t_end):
    controller = dfx.PIDController(rtol=RTOL, atol=ATOL, norm=_error_norm)
    solution = dfx.diffeqsolve(dfx.ODETerm(field), dfx.Tsit5(), 0.0, t_end, None, y0, saveat=dfx.SaveAt(t1=True),
                               stepsize_controller=controller, max_steps=65536, throw=False)
    return solution.ys[-1], solution.stats["num_accepted_steps"]


plain_diffrax_batch = jax.jit(jax.vmap(_plain_diffrax, in_axes=(0, 0, None)))


def relative_error(final, reference) -> float:
    """Largest error of a final state relative to the reference's size, over the batch."""
    final, reference = np.asarray(final).reshape(len(reference), -1), np.asarray(reference).reshape(len(reference), -1)
    return float(np.max(np.abs(final - reference).max(1) / np.abs(reference).max(1)))


def settings(name: str, batch: int):
    """`batch` settings (fields and initial states, with a leading batch axis) of system `name`."""
    return jax.vmap(SYSTEMS[name][0])(jax.random.split(jax.random.key(0), batch))


def reference_finals(fields, y0s, t_end: float):
    """The final states of a tight Dopri8 solve (rtol 1e-12), the yardstick of every error."""
    tight = js.SolverOptions(solver="dopri8", rtol=1e-12, atol=1e-14, batch="vmap")
    exact = js.simulate(fields, y0s, jnp.array([0.0, t_end]), tight)
    if not all(message == "ok" for message in exact.messages()):
        raise RuntimeError(f"the reference solve failed: {sorted(set(exact.messages()))}")
    return exact.ys[:, -1]


def measure(name: str, batch: int, repeats: int, loop: int) -> None:
    _, t_end, euler_dt = SYSTEMS[name]
    fields, y0s = settings(name, batch)
    ts = jnp.array([0.0, t_end])
    reference = reference_finals(fields, y0s, t_end)
    rows = {}
    for mode in ("vmap", "ode"):
        run = lambda: js.simulate(fields, y0s, ts, options=js.SolverOptions(rtol=RTOL, atol=ATOL, batch=mode))  # noqa: E731
        trajectory = run()
        failed = sum(message != "ok" for message in trajectory.messages())
        if failed:
            print(f"  jomasim {mode}: {failed} of {batch} solves did not finish: {sorted(set(trajectory.messages()))}")
        steps = int(np.max(trajectory.num_accepted_steps))
        rows[f"jomasim {mode}"] = (median_seconds(lambda: run().ys, repeats), relative_error(trajectory.ys[:, -1], reference), steps)
    finals, steps = plain_diffrax_batch(fields, y0s, t_end)
    rows["Diffrax Tsit5 vmap"] = (median_seconds(lambda: plain_diffrax_batch(fields, y0s, t_end), repeats),
                                  relative_error(finals, reference), int(np.max(steps)))
    target = rows["jomasim vmap"][1]
    # the smallest RK4 step count as accurate as jomasim, searched on (at most) 64 members
    sample = jax.tree_util.tree_map(lambda a: a[:64], (fields, y0s))
    n = 16
    while not relative_error(rk4_batch(*sample, t_end, n), reference[:64]) <= target and n < 2**16:
        n *= 2
    rows["RK4 lax.scan"] = (median_seconds(lambda: rk4_batch(fields, y0s, t_end, n), repeats),
                            relative_error(rk4_batch(fields, y0s, t_end, n), reference), n)
    subset = min(batch, loop)
    singles = [jax.tree_util.tree_map(lambda a, i=i: a[i], (fields, y0s)) for i in range(subset)]
    _scipy_rows(name, singles, t_end, reference[:subset], batch, rows)
    _torch_row(name, singles, t_end, euler_dt, reference[:subset], batch, rows)
    base = rows["jomasim vmap"][0]
    for method, (seconds, error, steps) in rows.items():
        print(f"{name:8s} B={batch:5d}  {method:18s} {batch / seconds:12.1f} traj/s  error {error:8.1e}  steps {steps:6d}"
              f"  jomasim vmap is {seconds / base:8.1f}x faster")


def scipy_solve(name, singles, t_end, method, rtol, atol):
    """SciPy `solve_ivp` on each of `singles` (pairs of field and initial state) in turn.

    **Returns:**

    `(seconds, finals, steps)`: the wall time of the loop, the final states stacked, and the
    largest number of steps taken.
    """
    from scipy.integrate import solve_ivp

    finals, steps = [], 0
    start = time.perf_counter()
    for field, y0 in singles:
        f, shape = hand_written_field(name, field), np.shape(y0)
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing trial steps are rejected by SciPy
            solution = solve_ivp(lambda t, y, f=f: f(y.reshape(shape)).ravel(), (0.0, t_end), np.asarray(y0).ravel(),
                                 method=method, rtol=rtol, atol=atol)
        finals.append(solution.y[:, -1])
        steps = max(steps, solution.t.size - 1)
    return time.perf_counter() - start, np.stack(finals), steps


def _scipy_rows(name, singles, t_end, reference, batch, rows) -> None:
    try:
        import scipy  # noqa: F401
    except ImportError:
        print("  (scipy not installed: pip install -e '.[bench]')")
        return
    for method in ("RK45", "DOP853"):
        seconds, finals, steps = scipy_solve(name, singles, t_end, method, RTOL, ATOL)
        rows[f"SciPy {method}"] = (seconds * batch / len(singles), relative_error(finals, reference), steps)


def _torch_row(name, singles, t_end, dt, reference, batch, rows) -> None:
    try:
        import torch
    except ImportError:
        print("  (torch not installed: the PyTorch Euler baseline is skipped)")
        return
    n = int(round(t_end / dt))
    finals = []
    start = time.perf_counter()
    for field, y0 in singles:
        rhs = hand_written_field(name, field, torch)
        y = torch.asarray(np.asarray(y0))
        for _ in range(n):
            y = y + dt * rhs(y)
        finals.append(y.numpy())
    seconds = (time.perf_counter() - start) * batch / len(singles)
    rows["PyTorch Euler"] = (seconds, relative_error(np.stack(finals), reference), n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,64,1024,4096)")
    args = parser.parse_args()
    batches = [int(b) for b in (args.batches or ("4" if args.quick else "1,64,1024,4096")).split(",")]
    repeats, loop = (1, 2) if args.quick else (3, 16)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, float64")
    for name in SYSTEMS:
        field, y0 = SYSTEMS[name][0](jax.random.key(1))
        np.testing.assert_allclose(hand_written_field(name, field)(np.asarray(y0)), field(0.0, y0, None), rtol=1e-9, atol=1e-12)
        for batch in batches:
            measure(name, batch, repeats, loop)


if __name__ == "__main__":
    main()
