"""Theorem 1 in size as well as direction: displacement NC and size ratio, the differential form
with a preconditioner P(t), the P-driven reduced flow, and P itself (JOMA_MATH §10.1–10.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jomasim as js
from jomasim.block import hidden_loss
from jomasim.comparison import displacement, integrated_prediction, theorem1_curves
from jomasim.data import expectation_bags, query_embeddings
from jomasim.models import JoMABlock
from jomasim.models.one_layer import LayerNorm, OneLayerTransformer
from jomasim.train import OptimizerSpec, adam_inverse_scale, make_optimizer, train, with_params

SAVES = jnp.linspace(0.0, 40.0, 9)


def _path(seed: int = 0, n: int = 12, tokens: int = 6) -> np.ndarray:
    """A trajectory of logits `(n, tokens)` that moves away from its start."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(n, tokens)), axis=0)


def test_a_prediction_eight_times_too_large_scores_nc_one_and_size_eight():
    z = _path()
    too_large = z[:1] + 8.0 * (z - z[:1]) + 3.0  # a common shift does not count (centred over tokens)
    nc, size = displacement(jnp.asarray(too_large), jnp.asarray(z))
    assert np.isnan(nc[0]) and np.isnan(size[0])  # nothing moved at the first save
    np.testing.assert_allclose(nc[1:], 1.0, atol=1e-12)
    np.testing.assert_allclose(size[1:], 8.0, rtol=1e-12)


def test_a_rotated_prediction_of_the_right_size_scores_size_one_and_low_nc():
    z = _path(tokens=7)
    moved = z - z.mean(axis=1, keepdims=True)
    rotated = z[:1] + np.roll(moved - moved[:1], 3, axis=1)  # the same centred displacement, other tokens
    nc, size = displacement(jnp.asarray(rotated), jnp.asarray(z))
    np.testing.assert_allclose(size[1:], 1.0, rtol=1e-12)
    assert np.max(nc[1:]) < 0.9


@pytest.fixture(scope="module")
def block_path():
    """A joint-flow path of the softmax block, with its invariant."""
    data = js.make_token_data(jax.random.key(0), n_distinct=4, n_common=3, n_classes=5, dim=9)
    joint = js.JointFlow(data, activation="silu", temperature=0.5, eta_z=2.0)
    y0 = joint.initial_state(jax.random.key(1), 0.3)
    trajectory = js.simulate(joint, y0, SAVES, js.SolverOptions(rtol=1e-9, atol=1e-12))
    W, z = trajectory.ys
    V = jax.vmap(joint.projected_weights)((W, z))
    return joint, joint.invariant(y0), V, z


def test_the_differential_form_with_constant_p_is_the_closed_form(block_path):
    """P = I and b̄ held: z(0) + Σ Δẑ is ẑ(V) (to 1e-10); P = r I scales the displacement by r."""
    joint, invariant, V, z = block_path
    closed = jax.vmap(invariant.predict)(V)
    identity = jnp.broadcast_to(jnp.eye(z.shape[1]), (z.shape[0],) + (z.shape[1],) * 2)
    np.testing.assert_allclose(integrated_prediction(invariant, V, z, joint.data.X), closed, atol=1e-10)
    np.testing.assert_allclose(integrated_prediction(invariant, V, z, joint.data.X, preconditioner=identity), closed,
                               atol=1e-10)
    scaled = integrated_prediction(invariant, V, z, joint.data.X, preconditioner=2.5 * identity)
    np.testing.assert_allclose(scaled - z[0], 2.5 * (closed - z[0]), atol=1e-10)
    curves = theorem1_curves(invariant, V, z, joint.data.X, identity)
    np.testing.assert_allclose(curves.preconditioned.z_hat, closed, atol=1e-10)
    np.testing.assert_allclose(curves.preconditioned.size, curves.closed.size, rtol=1e-8)


def test_tracking_the_mean_attention_follows_the_joint_flow_closer(block_path):
    """Along the joint flow the tracked form misses only the factorisation and the sum's steps:
    it is closer to z than the closed form (b̄ held at x̄), in size and in its residual."""
    joint, invariant, V, z = block_path
    curves = theorem1_curves(invariant, V, z, joint.data.X)
    assert curves.tracked is not None and curves.preconditioned is None
    held = np.linalg.norm(curves.closed.z_hat - z, axis=1)
    tracked = np.linalg.norm(curves.tracked.z_hat - z, axis=1)
    assert np.all(tracked[1:] < held[1:])
    assert abs(curves.tracked.size[-1] - 1) < abs(curves.closed.size[-1] - 1)
    exp_curves = theorem1_curves(js.LogitInvariant.from_initial("exp", V[0], z[0], lr_ratio=2.0, temperature=0.5),
                                 V, z, joint.data.X)
    assert exp_curves.tracked is None and exp_curves.nc_zhat2_z is None  # exact invariant, no ẑ₂


@pytest.mark.slow
def test_the_preconditioned_flow_with_p_a_multiple_of_identity_is_the_scheduled_flow():
    data = js.make_token_data(jax.random.key(2), n_distinct=4, n_common=3, n_classes=5, dim=9)
    joint = js.JointFlow(data, activation="silu", temperature=0.5, eta_w=0.7, eta_z=1.4)
    y0 = joint.initial_state(jax.random.key(3), 0.3)
    r = 0.3
    P = jnp.broadcast_to(r * jnp.eye(data.n_tokens), (3, data.n_tokens, data.n_tokens))
    tight = js.SolverOptions(rtol=1e-10, atol=1e-12)
    preconditioned = js.simulate(js.PreconditionedReducedFlow.from_joint(joint, P, jnp.array([0.0, 20.0, 40.0])), y0,
                                 SAVES, tight)
    scheduled = js.simulate(js.ScheduledReducedFlow(data, [2.0 * r], [], activation="silu", eta_w=0.7, temperature=0.5),
                            y0, SAVES, tight)
    for a, b in zip(jax.tree_util.tree_leaves(preconditioned.ys), jax.tree_util.tree_leaves(scheduled.ys)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_the_preconditioner_interpolates_between_its_times():
    data = js.make_token_data(jax.random.key(2), n_distinct=2, n_common=1, n_classes=3, dim=5)
    P = jnp.stack([jnp.eye(3), 3.0 * jnp.eye(3)])
    flow = js.PreconditionedReducedFlow(data, P, jnp.array([10.0, 20.0]))
    np.testing.assert_allclose(flow.preconditioner(15.0), 2.0 * jnp.eye(3))
    np.testing.assert_allclose(flow.preconditioner(0.0), jnp.eye(3))
    np.testing.assert_allclose(flow.preconditioner(99.0), 3.0 * jnp.eye(3))


def _tiny_transformer(seed: int = 0):
    """A Transformer with learned W_Q, W_K on the expectation bags of a small block, one query."""
    data = js.make_token_data(jax.random.key(seed), n_distinct=3, n_common=3, n_classes=4, dim=8)
    embeddings = jnp.concatenate([data.U_c, query_embeddings(data.U, 1)], axis=1).T
    W0 = 0.3 * jax.random.normal(jax.random.key(seed + 1), (8, 4))
    model = OneLayerTransformer(embeddings, W0, jnp.zeros((1, 6)), jax.random.key(seed + 2), attention_params="qk",
                                activation="silu", temperature=0.5)
    return data, model


def test_the_preconditioner_is_the_jacobian_gram_of_the_logits():
    """P = J Jᵀ with J = ∂z/∂(W_Q, W_K), for random (non-orthonormal) inputs; the rate is its diagonal."""
    _, model = _tiny_transformer()
    rng = np.random.default_rng(0)
    queries, tokens = jnp.asarray(rng.normal(size=(2, 8))), jnp.asarray(rng.normal(size=(6, 8)))
    logits = model.logits

    def table(W_Q, W_K):
        return (queries @ W_Q.T) @ (tokens @ W_K.T).T / np.sqrt(8)

    J_Q, J_K = jax.jacrev(table, argnums=(0, 1))(logits.query[...], logits.key[...])
    J = jnp.concatenate([J_Q.reshape(2, 6, -1), J_K.reshape(2, 6, -1)], axis=-1)
    P = logits.preconditioner(queries, tokens)
    np.testing.assert_allclose(P, jnp.einsum("mia,mja->mij", J, J), rtol=1e-12)


@pytest.mark.slow
def test_the_preconditioner_reconstructs_the_logits_motion_step_by_step():
    """Σ_k −η_z P_k ∂L/∂z_k over SGD steps is the logits' change: NC ≥ 0.9999, size within 2 %."""
    data, model = _tiny_transformer()
    bags = expectation_bags(data.X)
    eta = 0.5
    saved, _ = train(model, lambda transformer, _: transformer(bags),
                     lambda labels: make_optimizer(OptimizerSpec("sgd"), labels, eta, eta), steps=30,
                     save_steps=np.arange(31))

    def motion(params):
        checkpoint = with_params(model, params)
        probe = checkpoint.probe()
        gradient = jax.grad(lambda table: checkpoint(bags, table))(probe.z)
        return probe.z[0], -eta * probe.preconditioner[0] @ gradient[0]

    z, steps = jax.vmap(motion)(saved)
    reconstructed = z[0] + jnp.concatenate([jnp.zeros_like(z[:1]), jnp.cumsum(steps[:-1], axis=0)])
    nc, size = displacement(reconstructed, z)
    assert np.linalg.norm(z[-1] - z[0]) > 1e-3  # the logits moved
    assert np.min(nc[1:]) >= 0.9999
    np.testing.assert_allclose(size[1:], 1.0, atol=0.02)


def test_the_scaled_preconditioner_with_unit_scale_is_sgds():
    """J D⁻¹ Jᵀ by autodiff with D⁻¹ = 1 is `Probe.preconditioner` (W_Q, W_K and direct logits)."""
    data, model = _tiny_transformer()
    ones = jax.tree_util.tree_map(jnp.ones_like, nnx.state(model.logits, nnx.Param))
    np.testing.assert_allclose(model.scaled_preconditioner(ones), model.probe().preconditioner, rtol=1e-12, atol=1e-15)
    direct = OneLayerTransformer(model.embeddings[...], model.W[...], jnp.ones((1, 6)), jax.random.key(0))
    ones = jax.tree_util.tree_map(jnp.ones_like, nnx.state(direct.logits, nnx.Param))
    np.testing.assert_allclose(direct.scaled_preconditioner(ones), direct.probe().preconditioner, atol=0)


def _adam_steps(model, loss, steps: int, eta_w: float, eta_z: float):
    """`steps` Adam steps on `loss` with the parameters and optimizer states at every step."""
    return train(model, lambda m, _: loss(m), lambda labels: make_optimizer(OptimizerSpec("adam"), labels, eta_w, eta_z),
                 steps=steps, save_steps=np.arange(steps + 1), keep_state=True)


def test_adams_preconditioner_is_how_its_step_moves_the_logits():
    """With Adam's D⁻¹ (`adam_inverse_scale`) on W_Q, W_K, −η_z J D⁻¹ Jᵀ ∂L/∂z is the first-order
    motion of the logits under optax's Adam update (its first step, where m̂ is the gradient)."""
    data, model = _tiny_transformer()
    bags = expectation_bags(data.X)
    eta = 0.01
    saved, _, states = _adam_steps(model, lambda m: m(bags), 1, 0.1, eta)
    state = jax.tree_util.tree_map(lambda leaf: leaf[1], states)
    start, moved = (with_params(model, jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], saved)) for i in (0, 1))
    P = start.scaled_preconditioner(adam_inverse_scale(state, "z")["logits"])[0]
    gradient = jax.grad(lambda table: start(bags, table))(start.probe().z)[0]
    graphdef, params, rest = nnx.split(start.logits, nnx.Param, ...)
    update = jax.tree_util.tree_map(lambda a, b: a - b, nnx.state(moved.logits, nnx.Param), params)
    inputs = start.embeddings[...]
    first_order = jax.jvp(lambda p: nnx.merge(graphdef, p, rest).table(inputs[6:], inputs[:6]), (params,), (update,))[1][0]
    np.testing.assert_allclose(-eta * P @ gradient, first_order, rtol=1e-9, atol=1e-15)
    assert not np.allclose(P, start.probe().preconditioner[0], rtol=0.1)  # Adam's is not SGD's


@pytest.mark.slow
def test_with_adams_first_step_the_preconditioned_flow_is_a_sign_flow():
    """Adam's first step (v̂ = g², as with β₂ → 0) gives D⁻¹ = 1/(|g| + ε): the flow driven by it
    on both sides moves every weight and logit at its rate times the gradient's sign, which is
    optax's step (exp attention, where Theorem 1's rate is exactly −η_z ∂L/∂z)."""
    data = js.make_token_data(jax.random.key(4), n_distinct=3, n_common=2, n_classes=4, dim=7)
    joint = js.JointFlow(data, attention="exp", activation="silu", temperature=0.5, eta_w=0.02, eta_z=0.05)
    y0 = joint.initial_state(jax.random.key(5), 0.3)
    block = JoMABlock(data, *y0, attention="exp", activation="silu", temperature=0.5)
    saved, _, states = _adam_steps(block, lambda m: m(), 1, 0.02, 0.05)
    state = jax.tree_util.tree_map(lambda leaf: leaf[1], states)
    times = jnp.array([0.0, 1.0])
    twice = lambda tree: jnp.stack([tree[...], tree[...]])  # noqa: E731
    flow = js.PreconditionedReducedFlow.from_joint(joint, twice(jnp.diag(adam_inverse_scale(state, "z")["z"][...])), times,
                                                   twice(adam_inverse_scale(state, "w")["W"]))
    gradient_W, gradient_z = jax.grad(joint.loss, argnums=(0, 1))(*y0)
    W_rate, z_rate = flow(0.0, y0, None)
    np.testing.assert_allclose(z_rate, -0.05 * jnp.sign(gradient_z), rtol=1e-4)  # ε against |g|
    in_span = data.U @ data.U.T  # W's part outside the embeddings' span has no gradient
    np.testing.assert_allclose(W_rate, in_span @ (-0.02 * jnp.sign(gradient_W)), rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(z_rate, saved["z"][...][1] - y0[1], rtol=1e-9)
    np.testing.assert_allclose(W_rate, saved["W"][...][1] - y0[0], rtol=1e-9, atol=1e-15)
    projected = flow.solved()
    for a, b in zip(flow.lift(projected(0.0, flow.project(y0), None), (jnp.zeros_like(y0[0]), y0[1])), (W_rate, z_rate)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


@pytest.mark.slow
def test_the_scale_path_closure_is_the_layernorms_scale_path():
    """The preconditioned flow's scale-path rate (from its own b and h) is −η_z P ∂L/∂z along the
    scale path of a LayerNorm on the block's MLP input (`LayerNorm(x, "scale")`), at a state where
    the two read the same pre-activations: W's columns sum to zero (centring changes nothing) and
    h is the normalised input's; and it vanishes without the option."""
    data = js.make_token_data(jax.random.key(6), n_distinct=3, n_common=2, n_classes=4, dim=7)
    joint = js.JointFlow(data, activation="silu", temperature=0.5, eta_w=0.3, eta_z=0.7)
    W, z = joint.initial_state(jax.random.key(7), 0.5)
    W = W - jnp.mean(W, axis=0)
    P = jnp.asarray(np.random.default_rng(0).normal(size=(5, 5)))
    P = jnp.stack([P @ P.T, P @ P.T])
    norm = LayerNorm(data.dim)

    def loss(logits):
        inputs = data.U_c @ joint.attention_form.weights(logits, data.X, 0.5) + data.u_q[:, None]
        return hidden_loss(norm(inputs.T, "scale") @ W, "silu")

    inputs = data.U_c @ joint.attention_form.weights(z, data.X, 0.5) + data.u_q[:, None]
    hidden = norm(inputs.T) @ W
    flow = js.PreconditionedReducedFlow.from_joint(joint, P, jnp.array([0.0, 1.0]), scale_path=True)
    np.testing.assert_allclose(P[0] @ flow.closure_rate(hidden, z), -0.7 * P[0] @ jax.grad(loss)(z), rtol=1e-10)
    assert np.linalg.norm(flow.closure_rate(hidden, z)) > 1e-4
    plain = js.PreconditionedReducedFlow.from_joint(joint, P, jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(plain.closure_rate(hidden, z), 0.0)


def test_layernorm_paths_are_the_effective_read_and_add_up_to_central_differences():
    """∂h_k/∂b through f = r + Σ_l b_l a_l and the LayerNorm on the MLP's input: each path of
    `LayerNorm` is its term of (1/σ) A (I − 11ᵀ/d − f̂f̂ᵀ/d)(γ∘w_k) (JOMA_MATH §10.3), and the
    three add up to central differences through the forward pass (1e-6)."""
    rng = np.random.default_rng(1)
    d, M, K = 7, 4, 3
    A, r, W = rng.normal(size=(M, d)), rng.normal(size=d), rng.normal(size=(d, K))
    norm = js.models.one_layer.LayerNorm(d)
    norm.scale[...] = jnp.asarray(rng.normal(size=d))
    norm.bias[...] = jnp.asarray(rng.normal(size=d))
    b = jnp.asarray(rng.dirichlet(np.ones(M)))

    def hidden(weights, path=None):
        return norm(jnp.asarray(r) + weights @ jnp.asarray(A), path) @ jnp.asarray(W)

    f = r + np.asarray(b) @ A
    centred = f - f.mean()
    sigma = np.sqrt(np.mean(centred**2) + js.block.LAYER_NORM_EPSILON)
    f_hat = centred / sigma
    gamma_W = np.asarray(norm.scale[...])[:, None] * W
    terms = {"joma": A @ gamma_W / sigma, "centring": -(A @ np.ones((d, d)) / d) @ gamma_W / sigma,
             "scale": -(A @ np.outer(f_hat, f_hat) / d) @ gamma_W / sigma}
    for path, term in terms.items():
        np.testing.assert_allclose(jax.jacobian(lambda weights: hidden(weights, path))(b).T, term, atol=1e-12)
    step = 1e-6
    differences = np.stack([(hidden(b + step * e) - hidden(b - step * e)) / (2 * step) for e in np.eye(M)])
    np.testing.assert_allclose(sum(terms.values()), differences, rtol=1e-6, atol=1e-8)


def test_the_path_gradients_add_up_to_the_logits_gradient():
    data, model = _tiny_transformer()
    bags = expectation_bags(data.X)
    whole = jax.grad(lambda table: model(bags, table))(model.probe().z)
    paths = model.path_gradients(bags)
    np.testing.assert_allclose(paths[0], whole, atol=1e-14)  # no LayerNorm: JoMA's read is all of it
    assert not np.any(paths[1:]) and float(model.read_gain(bags)) == 1.0
    embeddings = jnp.concatenate([data.U_c, query_embeddings(data.U, 1)], axis=1).T
    normed = OneLayerTransformer(embeddings, 0.3 * jax.random.normal(jax.random.key(5), (8, 4)), jnp.zeros((1, 6)),
                                 jax.random.key(6), attention_params="qk", norm="post", activation="silu")
    paths = normed.path_gradients(bags)
    whole = jax.grad(lambda table: normed(bags, table))(normed.probe().z)
    np.testing.assert_allclose(paths.sum(axis=0), whole, atol=1e-14)
    assert np.abs(paths[2]).max() > 1e-3 * np.abs(whole).max()  # the scale path is there
    assert float(normed.read_gain(bags)) > 1.0  # the MLP's input spreads less than 1 at this size


def test_carried_shares_split_a_change_by_its_parts():
    """Constant rates integrate exactly: of Δz = t (u + w), the parts ¾u, ¼u and w (u ⟂ w, equal
    norms) carry 0.375, 0.125 and 0.5, adding up to 1."""
    direction = jnp.array([1.0, -1.0, 0.0, 0.0])
    across = jnp.array([0.0, 0.0, 1.0, -1.0])
    rates = jnp.broadcast_to(jnp.stack([0.75 * direction, 0.25 * direction, across]), (5, 3, 4))
    times = jnp.arange(5.0)
    z = jnp.outer(times, direction + across)
    shares = np.asarray(js.comparison.carried_shares(z, rates, times))
    assert np.isnan(shares[0]).all()
    np.testing.assert_allclose(shares[1:], np.broadcast_to([0.375, 0.125, 0.5], (4, 3)), atol=1e-12)
