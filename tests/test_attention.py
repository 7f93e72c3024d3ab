import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jomasim as js

KINDS = ["linear", "exp", "softmax"]


def _random(seed, M=6, K=4):
    keys = jax.random.split(jax.random.key(seed), 3)
    z = jax.random.normal(keys[0], (M,))
    x = jax.random.uniform(keys[1], (M, K)) + 0.05
    V = jax.random.normal(keys[2], (M, K))
    return z, x / x.sum(0), V


@given(seed=st.integers(0, 10_000), shift=st.floats(-30, 30), temperature=st.floats(0.1, 5.0))
def test_softmax_sums_to_one_and_is_shift_invariant(seed, shift, temperature):
    z, x, _ = _random(seed)
    b = js.attention_weights("softmax", z, x, temperature)
    np.testing.assert_allclose(b.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(js.attention_weights("softmax", z + shift, x, temperature), b, rtol=1e-9, atol=1e-14)


def test_forms_match_definitions():
    z, x, _ = _random(0)
    T = 0.7
    np.testing.assert_allclose(js.attention_weights("linear", z, x, T), x * z[:, None] / T)
    np.testing.assert_allclose(js.attention_weights("exp", z, x, T), x * np.exp(z / T)[:, None])
    e = x * np.exp(z / T)[:, None]
    np.testing.assert_allclose(js.attention_weights("softmax", z, x, T), e / e.sum(0), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_jacobian_matches_finite_differences(kind):
    z, x, _ = _random(1)
    x = x[:, 0]
    T = 0.6
    exact = js.attention_jacobian(kind, z, x, T)
    step = 1e-6
    columns = [
        (js.attention_weights(kind, z + step * e, x, T) - js.attention_weights(kind, z - step * e, x, T)) / (2 * step)
        for e in jnp.eye(z.size)
    ]
    np.testing.assert_allclose(exact, jnp.stack(columns, axis=1), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(exact, jax.jacfwd(js.attention_weights, argnums=1)(kind, z, x, T), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_invariant_is_exact_at_initial_state(kind):
    z, x, V = _random(2)
    b_bar = x.mean(1) if kind == "softmax" else None
    invariant = js.LogitInvariant.from_initial(kind, V, z, lr_ratio=1.7, temperature=0.4, b_bar=b_bar)
    np.testing.assert_allclose(invariant.predict(V), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(invariant.residual(V, z), 0.0, atol=1e-12)


def test_invariant_terms_follow_theorem_1():
    z, x, V = _random(3)
    b_bar = x.mean(1)
    invariant = js.LogitInvariant.from_initial("softmax", V, z, lr_ratio=2.0, temperature=0.5, b_bar=b_bar)
    zhat1, zhat2 = invariant.terms(V)
    kappa = 2.0 / (2 * 0.5)
    np.testing.assert_allclose(zhat1, kappa * (V**2).sum(1))
    np.testing.assert_allclose(zhat2, -kappa * b_bar * (V**2).sum())
    np.testing.assert_allclose(zhat1 + zhat2 + invariant.c, z, rtol=1e-12)
    with pytest.raises(js.InvalidChoiceError, match="b_bar"):
        js.LogitInvariant.from_initial("softmax", V, z)


def test_bad_attention_inputs_are_named():
    z, x, _ = _random(4)
    with pytest.raises(js.InvalidChoiceError, match="'sigmoid'"):
        js.attention_weights("sigmoid", z, x)
    with pytest.raises(js.OutOfRangeError, match="temperature=0.0"):
        js.attention_weights("softmax", z, x, 0.0)
    with pytest.raises(js.OutOfRangeError, match="temperature=-1.0"):
        js.attention_weights("exp", z, x, -1.0)
    with pytest.raises(js.ShapeMismatchError, match="z0 has shape"):
        js.LogitInvariant.from_initial("exp", jnp.zeros((6, 4)), jnp.zeros(5))
