"""Property-based tests (hypothesis): measures, attention Jacobians, Theorem 1 along the flow,
and the closed forms, on random small settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jomasim as js

vectors = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12)
seeds = st.integers(0, 2**31 - 1)


def _non_constant(values) -> bool:
    return np.ptp(values) > 1e-6 * max(1.0, np.max(np.abs(values)))


@pytest.mark.slow
@given(vectors, seeds)
def test_normalized_correlation_is_symmetric_bounded_and_affine_invariant(values, seed):
    a = np.asarray(values)
    b = np.asarray(jax.random.normal(jax.random.key(seed % 1000), a.shape)) * 10.0 + a
    nc = float(js.metrics.normalized_correlation(a, b))
    assert -1.0 <= nc <= 1.0
    assert nc == pytest.approx(float(js.metrics.normalized_correlation(b, a)), abs=1e-12)
    if _non_constant(a) and _non_constant(b):
        assert float(js.metrics.normalized_correlation(3.5 * a - 7.0, b)) == pytest.approx(nc, abs=1e-9)
        assert float(js.metrics.normalized_correlation(-0.25 * a, b)) == pytest.approx(-nc, abs=1e-9)
        assert float(js.metrics.normalized_correlation(a, a)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.slow
@given(kind=st.sampled_from(["linear", "exp", "softmax"]), seed=seeds, temperature=st.floats(0.2, 4.0),
       size=st.integers(2, 8))
def test_attention_jacobian_matches_finite_differences(kind, seed, temperature, size):
    z_key, x_key = jax.random.split(jax.random.key(seed))
    z = jax.random.normal(z_key, (size,))
    x = jax.random.uniform(x_key, (size,)) + 0.05
    x = x / x.sum()
    exact = js.get_attention(kind).jacobian(z, x, temperature)
    step = 1e-6
    numeric = jnp.stack([(js.get_attention(kind).weights(z + step * e, x, temperature)
                          - js.get_attention(kind).weights(z - step * e, x, temperature)) / (2 * step)
                         for e in jnp.eye(size)], axis=1)
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
@given(seed=seeds, rate_ratio=st.floats(0.2, 5.0), temperature=st.floats(0.3, 2.0),
       activation=st.sampled_from(["linear", "silu"]))
@settings(max_examples=12)
def test_theorem_1_residual_vanishes_along_the_exp_joint_flow(seed, rate_ratio, temperature, activation):
    data_key, init_key = jax.random.split(jax.random.key(seed))
    data = js.make_token_data(data_key, n_distinct=3, n_common=2, n_classes=3, dim=6, variant="random")
    joint = js.JointFlow(data, attention="exp", activation=activation, eta_w=1.0, eta_z=rate_ratio,
                         temperature=temperature)
    y0 = joint.initial_state(init_key, 0.1)
    trajectory = js.simulate(joint, y0, jnp.linspace(0.0, 3.0, 7), options=js.SolverOptions(rtol=1e-10, atol=1e-12, max_steps=20_000))
    assert trajectory.ok
    W, z = trajectory.ys
    residual = jax.vmap(joint.invariant(y0).residual)(jax.vmap(joint.projected_weights)((W, z)), z)
    assert float(jnp.max(jnp.abs(residual))) < 1e-7 * max(1.0, float(jnp.max(jnp.abs(z))))


# three sizes (a solve compiles once per state shape): one token, a few, the most
@pytest.mark.slow
@given(seed=seeds, size=st.sampled_from([1, 3, 6]), eta_w=st.floats(0.2, 3.0), kappa=st.floats(0.1, 2.0))
@settings(max_examples=12)
def test_erf_closed_form_matches_the_salience_flow(seed, size, eta_w, kappa):
    delta_key, v_key = jax.random.split(jax.random.key(seed))
    delta = jax.random.normal(delta_key, (size,))
    v0 = 0.2 * jax.random.normal(v_key, (size,))
    t_star = float(jnp.min(js.blowup_time(v0, delta, eta_w=eta_w, kappa=kappa)))
    t_end = min(0.9 * t_star, 50.0)
    ts = jnp.linspace(0.0, t_end, 9)
    flow = js.SalienceFlow(delta[:, None], eta_w=eta_w, kappa=kappa)
    trajectory = js.simulate(flow, v0[:, None], ts, options=js.SolverOptions(rtol=1e-11, atol=1e-13, max_steps=200_000))
    assert trajectory.ok
    closed = js.erf_solution(ts, v0, delta, eta_w=eta_w, kappa=kappa)
    np.testing.assert_allclose(trajectory.ys[:, :, 0], closed, rtol=1e-6, atol=1e-8)


@given(seed=seeds, scale=st.floats(1.0, 1e4), temperature=st.floats(0.01, 5.0))
def test_softmax_attention_stays_finite_for_huge_logits(seed, scale, temperature):
    z_key, x_key = jax.random.split(jax.random.key(seed))
    z = scale * jax.random.normal(z_key, (6,))
    x = jax.random.uniform(x_key, (6, 3)) + 0.01
    b = js.get_attention("softmax").weights(z, x / x.sum(0), temperature)
    assert bool(jnp.all(jnp.isfinite(b)))
    np.testing.assert_allclose(b.sum(0), 1.0, rtol=1e-12)
