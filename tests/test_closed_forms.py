"""Linear-activation closed forms (J16, J18–J19), blow-up, and the nonlinear toy (J23, J24)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js

TIGHT = dict(rtol=1e-12, atol=1e-14, max_steps=200_000)


def test_erf_solution_matches_the_ode_before_blowup():
    keys = jax.random.split(jax.random.key(7), 2)
    delta = jax.random.normal(keys[0], (12,))
    v0 = 0.1 * jax.random.normal(keys[1], (12,))
    flow = js.SalienceFlow(delta[:, None], eta_w=0.8)
    t_star = float(jnp.min(js.blowup_time(v0, delta, eta_w=0.8)))
    ts = jnp.linspace(0.0, 0.95 * t_star, 30)
    traj = js.simulate(flow, v0[:, None], ts, js.SolverOptions(**TIGHT))
    assert traj.ok
    closed = js.erf_solution(ts, v0, delta, eta_w=0.8)
    error = jnp.max(jnp.abs(traj.ys[:, :, 0] - closed) / jnp.maximum(jnp.abs(closed), 1e-3))
    assert error < 1e-6, f"max relative error {error:.2e}"
    assert float(jnp.max(jnp.abs(closed[-1]))) > 1.5  # far into the nonlinear regime


@pytest.mark.slow
def test_general_kappa_and_constant():
    delta = jnp.array([0.3, -0.5, 0.9])
    c = jnp.array([0.2, -0.1, 0.0])
    flow = js.SalienceFlow(delta[:, None], eta_w=1.0, kappa=0.8, c=c)
    t_star = float(jnp.min(js.blowup_time(0.0, delta, kappa=0.8, c=c)))
    ts = jnp.linspace(0.0, 0.9 * t_star, 10)
    traj = js.simulate(flow, jnp.zeros((3, 1)), ts, js.SolverOptions(**TIGHT))
    np.testing.assert_allclose(traj.ys[:, :, 0], js.erf_solution(ts, 0.0, delta, kappa=0.8, c=c), rtol=1e-7, atol=1e-10)


@pytest.fixture(scope="module")
def rank_two_salience():
    keys = jax.random.split(jax.random.key(3), 2)
    delta = jax.random.normal(keys[0], (8, 2)) @ jax.random.normal(keys[1], (2, 5))
    return delta / 4.0


def test_matrix_solution_matches_the_ode_and_stays_low_rank(rank_two_salience):
    delta = rank_two_salience
    flow = js.SalienceFlow(delta)
    t_star = float(jnp.min(js.blowup_time(0.0, jnp.linalg.norm(delta, axis=1))))
    ts = jnp.linspace(0.0, 0.95 * t_star, 25)
    traj = js.simulate(flow, jnp.zeros_like(delta), ts, js.SolverOptions(**TIGHT))
    assert traj.ok
    closed = js.matrix_solution(ts, delta)
    error = jnp.max(jnp.abs(traj.ys - closed)) / jnp.max(jnp.abs(closed))
    assert error < 1e-6, f"max relative error {error:.2e}"
    for V in traj.ys[1:]:
        singular = np.linalg.svd(np.asarray(V), compute_uv=False)
        assert np.sum(singular > 1e-8 * singular[0]) <= 2


def test_most_salient_row_blows_up_first_at_t_star(rank_two_salience):
    delta = rank_two_salience
    norms = jnp.linalg.norm(delta, axis=1)
    t_star = float(jnp.min(js.blowup_time(0.0, norms)))
    np.testing.assert_allclose(t_star, np.sqrt(np.pi / 2) / float(norms.max()), rtol=1e-12)
    ts = jnp.linspace(0.0, 2.0 * t_star, 50)
    traj = js.simulate(js.SalienceFlow(delta), jnp.zeros_like(delta), ts, js.SolverOptions(blowup=20.0, **TIGHT))
    assert int(traj.status) == js.Status.BLOWUP
    assert traj.messages()[0].startswith("blow-up at t = ")
    assert abs(float(traj.t_final) - t_star) < 0.01 * t_star
    last = traj.ys[int(jnp.sum(traj.reached)) - 1]
    assert int(jnp.argmax(jnp.abs(last).max(axis=1))) == int(jnp.argmax(norms))
    assert bool(jnp.all(jnp.isinf(traj.ys[~traj.reached])))


def test_convergence_time_matches_quoted_values_and_the_ode():
    mu = jnp.array([1.0, 2.0, 3.0, 4.0])
    times = js.convergence_time(mu, eps=0.01)
    np.testing.assert_allclose(times, [3.32, 1.48, 0.67, 0.41], atol=0.006)
    flow = js.NonlinearToyFlow(mu, temperature=2.0)
    for j in range(4):
        traj = js.simulate(flow, jnp.zeros(4), times[j : j + 1], js.SolverOptions(**TIGHT))
        np.testing.assert_allclose(traj.ys[0, j], 0.99 * mu[j], rtol=1e-8)


@pytest.fixture(scope="module")
def fig4_mu():
    """Ten targets drawn uniformly from [1, 4) and sorted, as the Fig. 4 setting."""
    return jnp.sort(jax.random.uniform(jax.random.key(0), (10,), minval=1.0, maxval=4.0))


@pytest.mark.parametrize("normalized, temperature, t_end", [pytest.param(False, 2.0, 40.0, marks=pytest.mark.slow), (True, 3.0, 3000.0)])
def test_nonlinear_toy_salient_first_then_attention_densifies(fig4_mu, normalized, temperature, t_end):
    mu = fig4_mu
    flow = js.NonlinearToyFlow(mu, temperature=temperature, normalized=normalized)
    ts = jnp.linspace(0.0, t_end, 2001)
    traj = js.simulate(flow, jnp.full(10, 0.05), ts, options=js.SolverOptions(rtol=1e-9, atol=1e-12))
    assert traj.ok
    v = np.asarray(traj.ys)
    # every component rises monotonically to its target (no overshoot beyond solver tolerance)
    assert np.all(np.diff(v, axis=0) >= -1e-7)
    assert np.all(v <= np.asarray(mu) * (1 + 1e-7))
    np.testing.assert_allclose(v[-1], mu, rtol=1e-3)
    # larger targets get within 1% of their target first, in the order J24 predicts
    first_close = np.argmax(v >= 0.99 * np.asarray(mu), axis=0)
    assert np.all(np.diff(first_close) <= 0)
    if not normalized:
        predicted = js.convergence_time(mu, v0=0.05, temperature=temperature)
        np.testing.assert_allclose(ts[first_close], predicted, atol=2 * float(ts[1]))
    # sparse first, dense later: an interior minimum of the attention entropy
    entropy = np.asarray(traj.entropy())
    low = int(entropy.argmin())
    assert 0 < low < len(ts) - 1
    assert entropy[low] < entropy[0] - 0.1 and entropy[low] < entropy[-1] - 0.05
    limit = float(js.metrics.entropy(jax.nn.softmax(mu**2 / temperature)))
    np.testing.assert_allclose(entropy[-1], limit, atol=1e-2)


def test_closed_form_inputs_are_checked():
    with pytest.raises(js.OutOfRangeError, match="eps=1.5"):
        js.convergence_time(jnp.array([1.0]), eps=1.5)
    with pytest.raises(js.OutOfRangeError, match="v0="):
        js.convergence_time(jnp.array([1.0]), v0=2.0)
    with pytest.raises(js.OutOfRangeError, match="kappa=0.0"):
        js.erf_solution(1.0, 0.0, 1.0, kappa=0.0)
    with pytest.raises(js.ShapeMismatchError, match="delta has shape"):
        js.SalienceFlow(jnp.ones(3))
