from typing import ClassVar

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
    b = js.get_attention("softmax").weights(z, x, temperature)
    np.testing.assert_allclose(b.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(js.get_attention("softmax").weights(z + shift, x, temperature), b, rtol=1e-9, atol=1e-14)


def test_forms_match_definitions():
    z, x, _ = _random(0)
    T = 0.7
    np.testing.assert_allclose(js.get_attention("linear").weights(z, x, T), x * z[:, None] / T)
    np.testing.assert_allclose(js.get_attention("exp").weights(z, x, T), x * np.exp(z / T)[:, None])
    e = x * np.exp(z / T)[:, None]
    np.testing.assert_allclose(js.get_attention("softmax").weights(z, x, T), e / e.sum(0), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_jacobian_matches_finite_differences(kind):
    z, x, _ = _random(1)
    x = x[:, 0]
    T = 0.6
    exact = js.get_attention(kind).jacobian(z, x, T)
    step = 1e-6
    columns = [
        (js.get_attention(kind).weights(z + step * e, x, T) - js.get_attention(kind).weights(z - step * e, x, T)) / (2 * step)
        for e in jnp.eye(z.size)
    ]
    np.testing.assert_allclose(exact, jnp.stack(columns, axis=1), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(exact, jax.jacfwd(js.get_attention(kind).weights)(z, x, T), rtol=1e-12, atol=1e-14)


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
        js.get_attention("sigmoid").weights(z, x)
    with pytest.raises(js.OutOfRangeError, match="temperature=0.0"):
        js.LogitInvariant.from_initial("exp", jnp.zeros((6, 4)), z, temperature=0.0)
    with pytest.raises(js.OutOfRangeError, match="temperature=-1.0"):
        js.JointFlow(js.make_token_data(seed=0), attention="exp", temperature=-1.0)
    with pytest.raises(js.ShapeMismatchError, match="z0 has shape"):
        js.LogitInvariant.from_initial("exp", jnp.zeros((6, 4)), jnp.zeros(5))


class Base2Attention(js.AbstractAdditiveAttention):
    """A fourth form, defined here only: b = x ∘ 2^{z/T}. It is exp attention at temperature
    T / ln 2, so Theorem 1 holds exactly with κ ln 2 in place of κ: z = κ ln 2 Σ_k v_k² + c."""

    name: ClassVar[str] = "base2"

    def weights(self, z, x, temperature):
        return x * jnp.exp2(jnp.reshape(z / temperature, z.shape + (1,) * (x.ndim - 1)))

    def jacobian(self, z, x, temperature):
        return jnp.diag(self.weights(z, x, temperature)) * jnp.log(2.0) / temperature

    def mean_attention(self, x):
        return None

    def terms(self, invariant, V):
        zhat1 = invariant.kappa * jnp.log(2.0) * jnp.sum(V**2, axis=1)
        return zhat1, jnp.zeros_like(zhat1)


@pytest.mark.slow
def test_a_new_attention_form_is_one_class():
    """A form defined in this file runs through JointFlow, ReducedFlow, simulate and the invariant
    checks unchanged: its Jacobian is the derivative of its weights, the joint flow keeps its
    Theorem 1 invariant and leaks nothing from it, and the reduced flow follows the joint flow."""
    form = Base2Attention()
    z, x, _ = _random(5)
    np.testing.assert_allclose(form.jacobian(z, x[:, 0], 0.6), jax.jacfwd(form.weights)(z, x[:, 0], 0.6), rtol=1e-12)
    from jomasim.assumptions import leak_curves

    data = js.make_token_data(seed=1, n_distinct=4, n_common=2, n_classes=5, dim=10)
    joint = js.JointFlow(data, attention=form, activation="silu", eta_z=2.0, temperature=0.7)
    y0 = joint.initial_state(jax.random.key(2), scale=0.5)
    ts = jnp.linspace(0.0, 30.0, 7)
    options = js.SolverOptions(rtol=1e-10, atol=1e-12)
    trajectory = js.simulate(joint, y0, ts, options)
    reduced = js.simulate(js.ReducedFlow.from_joint(joint, y0), y0[0], ts, options)
    assert bool(trajectory.ok) and bool(reduced.ok)
    invariant = joint.invariant(y0)
    W, z_path = trajectory.ys
    V = jax.vmap(joint.projected_weights)(trajectory.ys)
    assert float(jnp.max(jnp.abs(z_path[-1] - z_path[0]))) > 0.1  # the logits do move
    np.testing.assert_allclose(jax.vmap(invariant.residual)(V, z_path), 0.0, atol=1e-7)
    assert float(jnp.max(leak_curves(joint, invariant, W, z_path).invariant_leak)) < 1e-6
    np.testing.assert_allclose(reduced.logits(), z_path, rtol=1e-6, atol=1e-7)


def test_the_linear_form_has_no_additive_split():
    invariant = js.LogitInvariant.from_initial("linear", jnp.ones((6, 4)), jnp.ones(6))
    with pytest.raises(js.InvalidChoiceError, match="attention='linear' has no additive split"):
        invariant.terms(jnp.ones((6, 4)))
    assert js.LinearAttention().mean_attention(jnp.ones((6, 4))) is None
