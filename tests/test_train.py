"""Flax models and optax training: gradients, separate learning rates, vmapped = one by one, the Transformer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jomasim as js
from jomasim.experiments.block import train_blocks
from jomasim.models import JoMABlock, Transformer, TransformerConfig
from jomasim.train import OptimizerSpec, adam_step_factor, check_save_steps, make_optimizer, parameter_groups, train, with_params

SMALL = dict(n_distinct=4, n_common=3, n_classes=5, dim=9)


def _block(seed=0, attention="softmax", activation="silu", scale=0.3):
    data = js.make_token_data(seed, **SMALL)
    joint = js.JointFlow(data, attention=attention, activation=activation, temperature=0.5)
    W0, z0 = joint.initial_state(jax.random.key(seed + 50), scale)
    return joint, (W0, z0), JoMABlock(data, W0, z0, attention=attention, activation=activation, temperature=0.5)


@pytest.mark.parametrize("attention", ["linear", "exp", "softmax"])
def test_block_gradient_matches_finite_differences(attention):
    joint, (W0, z0), _ = _block(attention=attention)

    def loss(W, z):
        return JoMABlock(joint.data, W, z, attention=attention, activation="silu", temperature=0.5)()

    grads = jax.grad(loss, argnums=(0, 1))(W0, z0)
    rng = np.random.default_rng(0)
    step = 1e-6
    for which, start in enumerate((W0, z0)):
        for _ in range(4):
            index = tuple(int(rng.integers(n)) for n in start.shape)
            moved = [list((W0, z0)), list((W0, z0))]
            moved[0][which] = start.at[index].add(step)
            moved[1][which] = start.at[index].add(-step)
            numeric = (loss(*moved[0]) - loss(*moved[1])) / (2 * step)
            np.testing.assert_allclose(grads[which][index], numeric, rtol=1e-6, atol=1e-9)


def test_block_loss_is_the_theory_loss():
    joint, (W0, z0), model = _block()
    np.testing.assert_allclose(model(), joint.loss(W0, z0), rtol=1e-14)
    np.testing.assert_allclose(model.attention_map(), joint.attention((W0, z0)), rtol=1e-14)


def test_parameter_groups_put_attention_parameters_in_z():
    _, _, block = _block()
    labels = parameter_groups(nnx.state(block, nnx.Param), JoMABlock.attention_parameters)
    assert labels["W"].get_value() == "w" and labels["z"].get_value() == "z"
    transformer = Transformer(TransformerConfig(vocab_size=7, n_outputs=7, d_model=8, n_layers=2, d_hidden=16), nnx.Rngs(0))
    labels = parameter_groups(nnx.state(transformer, nnx.Param), Transformer.attention_parameters)
    flat = {"/".join(map(str, path)): label for path, label in nnx.to_flat_state(labels)}
    z_paths = sorted(path for path, label in flat.items() if label.get_value() == "z")
    assert z_paths == [f"blocks/{i}/attention/{m}/kernel" for i in range(2) for m in ("key", "query")]


def _one_step(spec, eta_w, eta_z, weight_decay=0.0):
    _, (W0, z0), model = _block()
    saved, _ = train(model, lambda m, _: m(), lambda labels: make_optimizer(spec, labels, eta_w, eta_z, weight_decay),
                     steps=1, save_steps=jnp.array([0, 1]))
    grad_W, grad_z = jax.grad(_block()[0].loss, argnums=(0, 1))(W0, z0)
    return (W0, z0), (grad_W, grad_z), (saved["W"][...], saved["z"][...])


def test_sgd_step_uses_separate_rates_and_weight_decay():
    (W0, z0), (grad_W, grad_z), (W, z) = _one_step(OptimizerSpec("sgd"), 0.3, 0.05, weight_decay=0.1)
    np.testing.assert_allclose(W[0], W0, rtol=0)
    np.testing.assert_allclose(W[1], W0 - 0.3 * (grad_W + 0.1 * W0), rtol=1e-12)
    np.testing.assert_allclose(z[1], z0 - 0.05 * (grad_z + 0.1 * z0), rtol=1e-12)


def test_clipping_bounds_the_update_and_adam_moves_by_the_rate():
    (W0, z0), _, (W, z) = _one_step(OptimizerSpec("sgd", clip_norm=1e-3), 1.0, 1.0)
    update_norm = jnp.sqrt(jnp.sum((W[1] - W0) ** 2) + jnp.sum((z[1] - z0) ** 2))
    np.testing.assert_allclose(update_norm, 1e-3, rtol=1e-9)
    (W0, z0), (grad_W, _), (W, _) = _one_step(OptimizerSpec("adam"), 0.01, 0.02)
    # Adam's first step is −lr · g / (|g| + eps), eps = 1e-8
    np.testing.assert_allclose(W[1] - W0, -0.01 * grad_W / (jnp.abs(grad_W) + 1e-8), rtol=1e-10)


def test_vmapped_training_equals_one_by_one():
    seeds = range(8)
    built = [_block(seed) for seed in seeds]
    joints = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[b[0] for b in built])
    y0 = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[b[1] for b in built])
    eta_w = jnp.linspace(0.05, 0.4, 8)
    eta_z = jnp.linspace(0.3, 0.02, 8)
    save_steps = jnp.array([0, 3, 10, 25])
    batched = train_blocks(joints, y0, eta_w, eta_z, 25, save_steps)
    for i, (joint, start, _) in enumerate(built):
        single = train_blocks(jax.tree_util.tree_map(lambda a: a[None], joint), jax.tree_util.tree_map(lambda a: a[None], start),
                              eta_w[i], eta_z[i], 25, save_steps)
        np.testing.assert_allclose(batched.W[i], single.W[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(batched.z[i], single.z[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(batched.losses[i], single.losses[0], rtol=1e-12)


@pytest.mark.parametrize(
    "save_steps, steps, expected",
    [([0, 5, 5], 10, "increasing"), ([3, 11], 10, "steps=10"), ([], 10, "increasing"), ([0, 1], 0, "steps=0")],
)
def test_bad_save_steps_are_refused(save_steps, steps, expected):
    with pytest.raises(js.OutOfRangeError, match=expected):
        check_save_steps(save_steps, steps)


def test_train_refuses_bad_save_steps():
    _, _, model = _block()
    with pytest.raises(js.OutOfRangeError, match="steps=4"):
        train(model, lambda m, _: m(), lambda labels: make_optimizer(OptimizerSpec(), labels, 0.1, 0.1),
              steps=4, save_steps=jnp.array([0, 5]))


def test_bad_optimizer_settings_are_refused():
    with pytest.raises(js.InvalidChoiceError, match="'rmsprop'"):
        OptimizerSpec("rmsprop")
    with pytest.raises(js.OutOfRangeError, match="momentum=1.5"):
        OptimizerSpec("sgd", momentum=1.5)
    with pytest.raises(js.OutOfRangeError, match="clip_norm=0"):
        OptimizerSpec("sgd", clip_norm=0)


@pytest.fixture(scope="module")
def transformer():
    config = TransformerConfig(vocab_size=11, n_outputs=11, d_model=16, n_layers=2, n_heads=2, d_hidden=24, max_len=12)
    return Transformer(config, nnx.Rngs(0))


def test_transformer_exposes_attention_and_hidden(transformer):
    tokens = jnp.array([1, 4, 2, 9, 3, 3, 0])
    logits, inside = transformer(tokens)
    assert logits.shape == (7, 11)
    assert inside["attention"].shape == (2, 2, 7, 7) and inside["hidden"].shape == (2, 7, 24)
    np.testing.assert_allclose(inside["attention"].sum(-1), 1.0, rtol=1e-12)
    assert jnp.all(jnp.triu(inside["attention"], k=1) == 0), "causal: no attention to later positions"
    assert jnp.all(inside["hidden"] >= 0), "ReLU activations"


def test_transformer_is_causal_and_pre_ln_differs(transformer):
    tokens = jnp.array([1, 4, 2, 9, 3, 3, 0])
    changed = tokens.at[5].set(7)
    logits, _ = transformer(tokens)
    logits_changed, _ = transformer(changed)
    np.testing.assert_allclose(logits[:5], logits_changed[:5], rtol=1e-12)
    assert not np.allclose(logits[5:], logits_changed[5:])
    config = TransformerConfig(vocab_size=11, n_outputs=11, d_model=16, n_layers=2, n_heads=2, d_hidden=24, max_len=12, norm="pre")
    pre, _ = Transformer(config, nnx.Rngs(0))(tokens)
    assert not np.allclose(pre, logits)


def test_transformer_rejects_bad_shapes(transformer):
    with pytest.raises(js.ShapeMismatchError, match="max_len=12"):
        transformer(jnp.zeros(13, dtype=int))
    with pytest.raises(js.OutOfRangeError, match="n_heads=3"):
        TransformerConfig(vocab_size=5, n_outputs=5, d_model=16, n_heads=3)


@pytest.mark.slow
def test_transformer_learns_a_copy_task_with_batches():
    config = TransformerConfig(vocab_size=6, n_outputs=6, d_model=16, n_layers=1, d_hidden=32, max_len=8)
    model = Transformer(config, nnx.Rngs(1))
    sequences = jax.random.randint(jax.random.key(0), (64, 8), 0, 6)

    def batches(step):
        return jax.lax.dynamic_slice_in_dim(sequences, (step % 4) * 16, 16)

    def loss(model, batch):
        logits, _ = jax.vmap(model)(batch)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch).mean()

    _, losses = jax.jit(lambda: train(model, loss, lambda labels: make_optimizer(OptimizerSpec("adam"), labels, 1e-2, 1e-2),
                                      steps=150, save_steps=jnp.array([150]), batches=batches))()
    assert losses[-10:].mean() < 0.25 * losses[:5].mean()


def test_the_optimizer_state_kept_at_the_saves_is_optax_s():
    """`train(keep_state=True)` keeps Adam's state at the saves as optax's own loop has it, and
    `adam_step_factor` reads ‖m/(√v̂ + ε)‖/‖m‖ of the attention group from it."""
    _, (W0, z0), model = _block()
    optimizer_of = lambda labels: make_optimizer(OptimizerSpec("adam"), labels, 0.01, 0.03)  # noqa: E731
    saved, _, states = train(model, lambda m, _: m(), optimizer_of, steps=5, save_steps=jnp.array([0, 2, 5]), keep_state=True)
    params = nnx.state(model, nnx.Param)
    optimizer = optimizer_of(parameter_groups(params, JoMABlock.attention_parameters))
    state, expected = optimizer.init(params), {}
    for step in range(6):
        if step in (0, 2, 5):
            expected[step] = state
        if step < 5:
            updates, state = optimizer.update(jax.grad(lambda p: with_params(model, p)())(params), state, params)
            params = optax.apply_updates(params, updates)
    for index, step in enumerate((0, 2, 5)):
        kept = jax.tree_util.tree_map(lambda leaf: leaf[index], states)
        for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(expected[step])):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(saved["z"][...][-1], params["z"][...], rtol=1e-12)
    adam = [node for node in jax.tree_util.tree_leaves(expected[5], is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
            if isinstance(node, optax.ScaleByAdamState)][1]  # the groups in label order: w, then z
    m, v = adam.mu["z"][...], adam.nu["z"][...] / (1 - 0.999**5)
    factor = np.linalg.norm(m / (np.sqrt(v) + 1e-8)) / np.linalg.norm(m)
    np.testing.assert_allclose(adam_step_factor(jax.tree_util.tree_map(lambda leaf: leaf[2], states), "z"), factor,
                               rtol=1e-12)
    assert np.isnan(adam_step_factor(jax.tree_util.tree_map(lambda leaf: leaf[0], states), "z"))
