"""The joint (W, z) flow and the reduced JoMA flow on the §3.5 block, against Theorem 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.metrics import normalized_correlation

SMALL = dict(n_distinct=4, n_common=3, n_classes=5, dim=9)


def _explicit_field(joint, W, z):
    """(J5)-(J7) written out by hand: ẇ_k = η_w E[g_k h'_k f], ż = η_z E[Σ_k g_k h'_k J_bᵀ v_k]."""
    data, K = joint.data, joint.data.n_classes
    activation = js.get_activation(joint.activation)
    dW, dz = jnp.zeros_like(W), jnp.zeros_like(z)
    for y in range(K):
        x = data.X[:, y]
        b = joint.attention_form.weights(z, x, joint.temperature)
        f = data.U_c @ b + data.u_q
        pre = W.T @ f
        h = activation.fn(pre)
        g = (jnp.eye(K)[y] - jax.nn.softmax(h)) / K  # −∂L/∂h for cross-entropy, averaged over classes
        drive = g * activation.derivative(pre)
        dW = dW + jnp.outer(f, drive)
        J = joint.attention_form.jacobian(z, x, joint.temperature)
        dz = dz + J.T @ (data.U_c.T @ W @ drive)
    return joint.eta_w * dW, joint.eta_z * dz


@pytest.mark.parametrize("attention", ["linear", "exp", "softmax"])
@pytest.mark.parametrize("activation", ["linear", "silu", "gelu"])
def test_joint_field_is_the_written_out_gradient_flow(attention, activation):
    data = js.make_token_data(0, **SMALL)
    joint = js.JointFlow(data, attention=attention, activation=activation, eta_w=0.7, eta_z=1.3, temperature=0.5)
    W, z = joint.initial_state(jax.random.key(1), scale=0.5)
    dW, dz = joint(0.0, (W, z), None)
    dW_ref, dz_ref = _explicit_field(joint, W, z)
    np.testing.assert_allclose(dW, dW_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dz, dz_ref, rtol=1e-10, atol=1e-13)


def _joint_and_reduced(attention, activation, t_end, seed=0, lr_ratio=2.0):
    data = js.make_token_data(seed, **SMALL)
    joint = js.JointFlow(data, attention=attention, activation=activation, eta_w=1.0, eta_z=lr_ratio, temperature=0.5)
    y0 = joint.initial_state(jax.random.key(seed + 100), scale=0.3)
    if attention == "linear":
        # keep z away from 0 (c > 0): the reduced linear-attention flow follows one sign branch (J13a)
        y0 = (y0[0], 1.5 + jnp.abs(y0[1]))
    ts = jnp.linspace(0.0, t_end, 41)
    tight = dict(rtol=1e-11, atol=1e-13)
    traj = js.simulate(joint, y0, ts, js.SolverOptions(**tight))
    reduced = js.simulate(js.ReducedFlow.from_joint(joint, y0), y0[0], ts, js.SolverOptions(**tight))
    return joint, y0, traj, reduced


@pytest.mark.parametrize("activation, attention", [("linear", "linear"), ("silu", "exp"),
                                                   pytest.param("linear", "exp", marks=pytest.mark.slow),
                                                   pytest.param("silu", "linear", marks=pytest.mark.slow)])
def test_theorem_1_invariant_is_conserved_and_reduced_flow_matches(attention, activation):
    joint, y0, traj, reduced = _joint_and_reduced(attention, activation, t_end=15.0)
    assert traj.ok and reduced.ok, (traj.messages(), reduced.messages())
    invariant = joint.invariant(y0)
    V = jax.vmap(joint.projected_weights)(traj.ys)
    z = traj.ys[1]
    residual = jax.vmap(invariant.residual)(V, z)
    scale = jnp.max(jnp.abs(z**2 if attention == "linear" else z))
    drift = jnp.max(jnp.abs(residual - residual[0])) / scale
    assert drift < 1e-6, f"relative drift of the invariant {drift:.2e}"
    assert jnp.max(jnp.abs(z - z[0])) > 1e-2 * scale, "the logits must actually move for the test to mean anything"
    # Theorem 1 is exact here, so integrating attention out changes nothing.
    np.testing.assert_allclose(reduced.ys, traj.ys[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(reduced.logits(), z, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def fig2_batch():
    """Fig. 2 setting, 8 seeds: Gaussian X, M_c = 20, K = 20, d = 30, T = 0.5, softmax, linear φ,
    η_w = η_z; unit rates up to t = 200 are SGD with lr 0.1 for 2000 steps."""

    def build(key):
        data_key, init_key = jax.random.split(key)
        joint = js.JointFlow(js.make_token_data(data_key), attention="softmax", temperature=0.5)
        y0 = joint.initial_state(init_key)
        return joint, y0, js.ReducedFlow.from_joint(joint, y0)

    joint, y0, reduced = jax.vmap(build)(jax.random.split(jax.random.key(2024), 8))
    ts = jnp.linspace(0.0, 200.0, 81)
    traj = js.simulate(joint, y0, ts, options=js.SolverOptions(batch="vmap"))
    reduced_traj = js.simulate(reduced, y0[0], ts, options=js.SolverOptions(batch="vmap"))
    return joint, y0, traj, reduced_traj


def test_fig2_softmax_invariant_holds_for_every_seed(fig2_batch):
    joint, y0, traj, _ = fig2_batch
    assert bool(jnp.all(traj.ok)), traj.messages()

    def nc_over_time(joint, y0, ys):
        invariant = joint.invariant(y0)
        V = jax.vmap(joint.projected_weights)(ys)
        return normalized_correlation(jax.vmap(invariant.predict)(V), ys[1])

    nc = jax.vmap(nc_over_time)(joint, y0, traj.ys)
    assert nc.shape == (8, 81)
    assert float(nc.min()) >= 0.97, f"min NC(ẑ, z) over seeds and times: {float(nc.min()):.4f}"
    # the attention gets sparse: entropy falls from near ln 20
    entropy = traj.entropy()
    assert bool(jnp.all(entropy[:, 0] > 2.7)) and bool(jnp.all(entropy[:, -1] < 1.2))


def test_fig2_split_terms_first_term_takes_over(fig2_batch):
    joint, y0, traj, _ = fig2_batch
    invariant = jax.vmap(lambda j, y: j.invariant(y))(joint, y0)
    V_end = jax.vmap(lambda j, ys: j.projected_weights(jax.tree_util.tree_map(lambda a: a[-1], ys)))(joint, traj.ys)
    zhat1, _ = jax.vmap(lambda inv, V: inv.terms(V))(invariant, V_end)
    nc1 = normalized_correlation(zhat1, traj.ys[1][:, -1])
    assert float(nc1.min()) > 0.9


def test_fig2_reduced_flow_tracks_the_joint_flow(fig2_batch):
    _, _, traj, reduced = fig2_batch
    assert bool(jnp.all(reduced.ok)), reduced.messages()
    nc = normalized_correlation(reduced.logits()[:, -1], traj.ys[1][:, -1])
    assert float(nc.min()) >= 0.95, nc


def test_bad_flow_options_are_named():
    data = js.make_token_data(0, **SMALL)
    with pytest.raises(js.InvalidChoiceError, match="'cosine'"):
        js.JointFlow(data, attention="cosine")
    with pytest.raises(js.InvalidChoiceError, match="'tanh'"):
        js.JointFlow(data, activation="tanh")
    with pytest.raises(js.OutOfRangeError, match="eta_w=-0.1"):
        js.JointFlow(data, eta_w=-0.1)
    with pytest.raises(js.OutOfRangeError, match="eta_z=0.0"):
        js.JointFlow(data, eta_z=0.0)
    with pytest.raises(js.OutOfRangeError, match="temperature=0.0"):
        js.JointFlow(data, temperature=0.0)
