"""`UnrolledERK`: Diffrax's explicit Runge–Kutta steps with the stages written out give Diffrax's
results (same step sequence, states and dense output to rounding), also across a jump."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js

T_END = 6.0
TS = jnp.linspace(0.0, T_END, 9)


@pytest.fixture(scope="module")
def reduced():
    keys = jax.random.split(jax.random.key(5), 2)
    joint = js.JointFlow(js.make_token_data(keys[0], n_distinct=3, n_common=3, n_classes=4, dim=8),
                         attention="softmax", activation="silu", temperature=0.7)
    y0 = joint.initial_state(keys[1], scale=0.3)
    return js.ReducedFlow.from_joint(joint, y0), y0[0]


def _solve(solver, field, y0, controller):
    solve = jax.jit(lambda f, y: dfx.diffeqsolve(dfx.ODETerm(f), solver, 0.0, T_END, 0.01, y,
                                                 saveat=dfx.SaveAt(ts=TS), stepsize_controller=controller))
    return solve(field, y0)


# the three code paths: first-same-as-last with the last stage as the solution (Tsit5; Dopri5 and
# Bosh3 are alike), the same with 14 stages (Dopri8), and a tableau with neither (Heun)
@pytest.mark.parametrize("method", [dfx.Tsit5, *(pytest.param(method, marks=pytest.mark.slow)
                                               for method in (dfx.Dopri8, dfx.Heun))])
def test_unrolled_steps_equal_diffrax(reduced, method):
    controller = dfx.PIDController(rtol=1e-7, atol=1e-9)
    looped = _solve(method(), *reduced, controller)
    unrolled = _solve(js.UnrolledERK(method()), *reduced, controller)
    assert int(unrolled.stats["num_steps"]) == int(looped.stats["num_steps"])
    assert int(unrolled.stats["num_rejected_steps"]) == int(looped.stats["num_rejected_steps"])
    # save times fall inside steps: the dense interpolation sees the same stages
    np.testing.assert_allclose(unrolled.ys, looped.ys, rtol=1e-11, atol=1e-13)


class _Kicked(js.AbstractFlow):
    """v̇ = −v before t = 2 and v̇ = 1 − v after: a jump in the field, where FSAL must re-evaluate."""

    def __call__(self, t, v, args):
        return jnp.where(t < 2.0, -v, 1.0 - v)

    def logits(self, v):
        return v

    def attention(self, v):
        return jax.nn.softmax(v)


def test_first_stage_is_recomputed_after_a_jump():
    controller = dfx.PIDController(rtol=1e-8, atol=1e-10, jump_ts=jnp.array([2.0]))
    y0 = jnp.array([1.0, 2.0])
    looped = _solve(dfx.Tsit5(), _Kicked(), y0, controller)
    unrolled = _solve(js.UnrolledERK(dfx.Tsit5()), _Kicked(), y0, controller)
    np.testing.assert_allclose(unrolled.ys, looped.ys, rtol=1e-12, atol=1e-14)
    exact = jnp.where(TS[:, None] < 2.0, y0 * jnp.exp(-TS[:, None]),
                      1.0 + (y0 * jnp.exp(-2.0) - 1.0) * jnp.exp(-(TS[:, None] - 2.0)))
    np.testing.assert_allclose(unrolled.ys, exact, rtol=1e-6)


def test_only_explicit_runge_kutta_solvers_are_wrapped():
    with pytest.raises(js.OutOfRangeError, match="explicit Runge-Kutta"):
        js.UnrolledERK(dfx.Kvaerno5())


def test_simulate_unrolls_small_fields_by_default(reduced):
    from jomasim.theory._simulate import SolverOptions, _diffrax_solver

    toy, v0 = js.NonlinearToyFlow(jnp.linspace(1.0, 3.0, 4)), jnp.full(4, 0.1)
    assert isinstance(_diffrax_solver(toy, v0, 0.0, SolverOptions()), js.UnrolledERK)
    assert isinstance(_diffrax_solver(toy, v0, 0.0, SolverOptions(batch="vmap")), js.UnrolledERK)
    shared_step = js.UnrolledERK if jax.default_backend() != "cpu" else dfx.Tsit5  # on a CPU: measured slower
    assert isinstance(_diffrax_solver(toy, v0, 0.0, SolverOptions(batch="ode")), shared_step)
    assert isinstance(_diffrax_solver(*reduced, 0.0, SolverOptions()), dfx.Tsit5)
    assert isinstance(_diffrax_solver(*reduced, 0.0, SolverOptions(unroll=True)), js.UnrolledERK)
    assert isinstance(_diffrax_solver(toy, v0, 0.0, SolverOptions(solver="kvaerno5", unroll=True)), dfx.Kvaerno5)


def test_simulate_unrolled_or_looped_agree():
    toy, v0 = js.NonlinearToyFlow(jnp.linspace(0.5, 1.5, 4)), jnp.full(4, 0.1)  # not stiff: |∂f/∂v| ≤ e^1.125
    looped, unrolled = (js.simulate(toy, v0, TS, options=js.SolverOptions(rtol=1e-8, atol=1e-10, unroll=flag)) for flag in (False, True))
    assert int(looped.num_steps) == int(unrolled.num_steps)
    np.testing.assert_allclose(unrolled.ys, looped.ys, rtol=1e-11, atol=1e-13)
    with pytest.raises(js.InvalidChoiceError, match="unroll=1"):
        js.simulate(toy, v0, TS, options=js.SolverOptions(unroll=1))
