"""How fast a state leaves Theorem 1's invariant: zero where the theorem is exact, and for softmax
attention an exact split into the two assumptions it rests on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.assumptions import softmax_leak_parts, state_leak


def _state(attention: str, activation: str, scale: float = 0.5):
    """A joint flow of a small block with unequal rates and T = 0.7, its invariant fixed at a
    random initial state, and a random later state (W, z) of size `scale`."""
    keys = jax.random.split(jax.random.key(3), 4)
    data = js.make_token_data(keys[0], n_distinct=4, n_common=3, n_classes=5, dim=9)
    joint = js.JointFlow(data, attention=attention, activation=activation, eta_w=0.7, eta_z=1.3, temperature=0.7)
    y0 = joint.initial_state(keys[1], 0.3)
    if attention == "linear":
        y0 = (y0[0], y0[1] + 1.0)  # logits away from zero, where the linear invariant's branch is fixed
    W = y0[0] + scale * jax.random.normal(keys[2], y0[0].shape)
    z = y0[1] + scale * jax.random.normal(keys[3], y0[1].shape)
    return joint, joint.invariant(y0), W, z


@pytest.mark.parametrize("activation, attention", [("linear", "linear"), ("silu", "exp"),
                                                   pytest.param("linear", "exp", marks=pytest.mark.slow),
                                                   pytest.param("silu", "linear", marks=pytest.mark.slow)])
def test_exact_invariants_do_not_leak_at_any_state(attention, activation):
    joint, invariant, W, z = _state(attention, activation)
    leak = state_leak(joint, invariant, W, z)
    assert (leak.bbar_drift, leak.leak_factorization, leak.leak_bbar) == (None, None, None)
    assert float(leak.invariant_leak) <= 1e-12


def test_leak_is_the_rate_of_the_residual_along_the_flow():
    """Central differences of the residual along the joint field give the same rate."""
    joint, invariant, W, z = _state("softmax", "silu")
    W_rate, z_rate = joint(0.0, (W, z), None)
    residual = lambda h: invariant.residual(joint.data.U_c.T @ (W + h * W_rate), z + h * z_rate)  # noqa: E731
    step = 1e-5
    rate = (residual(step) - residual(-step)) / (2 * step)
    np.testing.assert_allclose(state_leak(joint, invariant, W, z).invariant_leak,
                               jnp.linalg.norm(rate) / jnp.linalg.norm(z_rate), rtol=1e-7)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_softmax_leak_splits_into_factorisation_and_drift(activation):
    joint, invariant, W, z = _state("softmax", activation)
    factorization, drift, _ = softmax_leak_parts(joint, invariant, W, z)
    W_rate, z_rate = joint(0.0, (W, z), None)
    _, residual_rate = jax.jvp(invariant.residual, (joint.data.U_c.T @ W, z), (joint.data.U_c.T @ W_rate, z_rate))
    np.testing.assert_allclose(residual_rate, -(joint.eta_z / joint.temperature) * (factorization + drift),
                               rtol=1e-10, atol=1e-14)
    leak = state_leak(joint, invariant, W, z)
    assert float(leak.leak_bbar) > 0 and float(leak.leak_factorization) > 0


def test_uniform_logits_leave_the_mean_attention_at_its_constant():
    joint, invariant, W, _ = _state("softmax", "linear")
    leak = state_leak(joint, invariant, W, jnp.zeros(joint.data.n_tokens))
    assert float(leak.bbar_drift) <= 1e-15 and float(leak.leak_bbar) <= 1e-15


@pytest.mark.parametrize("attention", ["exp", "linear"])
def test_tracked_closure_is_the_joint_flow_where_theorem_1_is_exact(attention):
    """Exp and linear invariants hold no mean attention: the tracked closure is the joint field."""
    joint, _, W, z = _state(attention, "silu")
    for exact, tracked in zip(joint(0.0, (W, z), None), js.TrackedMeanFlow.from_joint(joint)(0.0, (W, z), None)):
        np.testing.assert_allclose(tracked, exact, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ["linear", "silu", "relu"])
def test_tracked_closure_misses_only_the_factorisation_gap(activation):
    """Softmax: the tracked ż differs from the joint flow's by exactly the factorisation part of the
    invariant's rate (`softmax_leak_parts`), W's field is the joint one, and with the mean attention
    held at x̄ instead (the reduced flow's J11) the drift part comes back."""
    joint, invariant, W, z = _state("softmax", activation)
    factorization, drift, _ = softmax_leak_parts(joint, invariant, W, z)
    (W_joint, z_joint), (W_tracked, z_tracked) = joint(0.0, (W, z), None), js.TrackedMeanFlow.from_joint(joint)(0.0, (W, z), None)
    np.testing.assert_array_equal(W_tracked, W_joint)
    np.testing.assert_allclose(z_joint - z_tracked, -(joint.eta_z / joint.temperature) * factorization, rtol=1e-9, atol=1e-14)
    _, z_fixed_mean = jax.jvp(invariant.predict, (joint.data.U_c.T @ W,), (joint.data.U_c.T @ W_joint,))
    np.testing.assert_allclose(z_tracked - z_fixed_mean, -(joint.eta_z / joint.temperature) * drift, rtol=1e-9, atol=1e-14)


@pytest.mark.slow
def test_tracked_closure_coincides_with_the_reduced_flow_for_exp_attention():
    joint, _, _, _ = _state("exp", "silu")
    y0 = joint.initial_state(jax.random.key(5), 0.3)
    ts = jnp.linspace(0.0, 3.0, 7)
    options = js.SolverOptions(rtol=1e-10, atol=1e-12)
    tracked = js.simulate(js.TrackedMeanFlow.from_joint(joint), y0, ts, options)
    reduced = js.simulate(js.ReducedFlow.from_joint(joint, y0), y0[0], ts, options)
    assert bool(tracked.ok) and bool(reduced.ok)
    np.testing.assert_allclose(tracked.logits(), reduced.logits(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(tracked.ys[0], reduced.ys, rtol=1e-7, atol=1e-9)
