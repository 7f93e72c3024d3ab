"""JoMA against a one-layer Transformer (`jomasim compare --model transformer`), at reduced sizes."""

import csv
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jomasim.cli import main
from jomasim.data import Bags, expectation_bags, make_token_data, query_embeddings, sample_bags
from jomasim.experiments.block import MemberNumbers, build_member, run_members, train_member
from jomasim.experiments.compare import CompareConfig, run_compare
from jomasim.experiments.fit import read_run
from jomasim.experiments.transformer import TransformerCompareConfig, _mlp_weights
from jomasim.metrics import normalized_correlation
from jomasim.models.one_layer import OneLayerTransformer
from jomasim.train import OptimizerSpec, make_optimizer, train

SMALL = dict(n_distinct=4, n_common=4, n_classes=5, dim=12, seeds=2, steps=60, save_every=10)
"""A small block setting: 8 contextual tokens, 5 classes, d = 12."""

BLOCK_SWITCHES = dict(sequence_length=0, attention_params="logits")
"""With the other switches at their defaults, the Transformer in the block's setting."""


def _numbers(config, seed=0):
    members = config.members(config.eta_w, config.eta_z)
    return MemberNumbers(*(np.asarray(value)[seed] for value in members))


def test_transformer_in_the_block_setting_trains_to_the_blocks_parameters():
    config = TransformerCompareConfig(**SMALL, **BLOCK_SWITCHES, init_scale=0.3)
    numbers = _numbers(config)
    joint, model = config.model.initial_model(config, numbers)
    _, y0, _ = build_member(config, numbers)
    saves = np.arange(0, 61, 10)
    block = train_member(joint, y0, numbers.eta_w, numbers.eta_z, 60, saves)
    bags = expectation_bags(joint.data.X)
    saved, losses = train(model, lambda transformer, _: transformer(bags),
                          lambda labels: make_optimizer(OptimizerSpec("sgd"), labels, numbers.eta_w, numbers.eta_z),
                          steps=60, save_steps=saves)
    np.testing.assert_allclose(saved["W"][...], block.W, rtol=0, atol=1e-10)
    np.testing.assert_allclose(saved["logits"]["z"][...][:, 0], block.z, rtol=0, atol=1e-10)
    np.testing.assert_allclose(losses, block.losses, rtol=0, atol=1e-10)
    assert np.abs(block.z[-1] - block.z[0]).max() > 1e-3  # the parameters did move


@pytest.fixture(scope="module")
def block_and_transformer():
    """The block and the Transformer in its setting, compared with the flows, from the same seeds."""
    return run_compare(CompareConfig(**SMALL)), run_compare(TransformerCompareConfig(**SMALL, **BLOCK_SWITCHES))


@pytest.mark.slow
def test_transformer_compare_in_the_block_setting_is_the_blocks(block_and_transformer):
    block, transformer = block_and_transformer
    for run in ("train", "joint", "reduced", "tracked"):
        for field in ("z", "V", "entropy"):
            np.testing.assert_allclose(getattr(getattr(transformer.members, run), field),
                                       getattr(getattr(block.members, run), field), rtol=0, atol=1e-10)
    for key in ("nc_zhat_z", "nc_reduced_z", "nc_ode_z", "entropy_train"):
        np.testing.assert_allclose(transformer.scalars[key], block.scalars[key], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(transformer.scalars["attention_rate"], 1.0)
    # the expectation limit's "sequences" are the frequency bags
    np.testing.assert_allclose(transformer.members.probes.entropy_sequences, block.members.train.entropy, atol=1e-12)


@pytest.mark.slow
def test_minibatch_gradients_are_unbiased_for_long_sequences():
    """At L = 1000 the gradient on sampled sequences, averaged over batches, is the expectation's."""
    config = TransformerCompareConfig(**SMALL, attention_params="qk", embeddings="learned", value="learned",
                                      norm="post", head=True, init_scale=0.5)
    joint, model = config.model.initial_model(config, _numbers(config))
    X = joint.data.X

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def gradient(bags):
        grads = jax.grad(lambda p: nnx.merge(graphdef, p, rest)(bags))(params)
        return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(grads)])

    expected = gradient(expectation_bags(X))
    sampled = jnp.mean(jnp.stack([gradient(sample_bags(jax.random.key(k), X, 1, 1000, 4)) for k in range(8)]), axis=0)
    assert float(normalized_correlation(sampled, expected)) >= 0.999


def test_probes_equal_hand_computed_z_and_V():
    """A hand-built Transformer: W_Q, W_K, W_V, LayerNorm scale and embeddings chosen, z and V by hand."""
    rng = np.random.default_rng(0)
    d, M, Q, K = 5, 3, 2, 4
    E = rng.normal(size=(M + Q, d))
    W = rng.normal(size=(d, K))
    model = OneLayerTransformer(jnp.asarray(E), jnp.asarray(W), jnp.zeros((Q, M)), jax.random.key(0),
                                attention_params="qk", learned_embeddings=True, learned_value=True, norm="post")
    W_Q, W_K, W_V = (rng.normal(size=(d, d)) for _ in range(3))
    gamma = rng.normal(size=d)
    model.logits.query[...] = jnp.asarray(W_Q)
    model.logits.key[...] = jnp.asarray(W_K)
    model.value[...] = jnp.asarray(W_V)
    model.mlp_norm.scale[...] = jnp.asarray(gamma)
    probe = model.probe()
    z = np.array([[(W_Q @ E[M + m]) @ (W_K @ E[token]) / math.sqrt(d) for token in range(M)] for m in range(Q)])
    V = np.array([[(W_V @ E[token]) @ (gamma * W[:, k]) for k in range(K)] for token in range(M)])
    w_q = np.array([[E[M + m] @ (gamma * W[:, k]) for k in range(K)] for m in range(Q)])
    rate = np.array([[(np.sum(E[M + m] ** 2) * np.sum((W_K @ E[token]) ** 2) + np.sum((W_Q @ E[M + m]) ** 2) * np.sum(E[token] ** 2)) / d
                      for token in range(M)] for m in range(Q)])
    np.testing.assert_allclose(probe.z, z, rtol=1e-12)
    np.testing.assert_allclose(probe.V, V, rtol=1e-12)
    np.testing.assert_allclose(probe.w_q, w_q, rtol=1e-12)
    np.testing.assert_allclose(probe.rate, rate, rtol=1e-12)


@pytest.mark.slow
def test_attention_over_positions_is_attention_over_token_counts():
    """Without positions a sequence is its counts: the model's attention over its positions summed
    per token equals the attention form on the empirical frequencies."""
    config = TransformerCompareConfig(**SMALL, attention_params="qk")
    joint, model = config.model.initial_model(config, _numbers(config))
    bags = sample_bags(jax.random.key(3), joint.data.X, 1, 50, 2)
    per_position = model.attention_distribution(bags)
    counts = jax.vmap(lambda tokens: jnp.bincount(tokens, length=8) / 50)(bags.tokens)
    logits = model.probe().z[0]
    per_token = jax.vmap(lambda t, p: jnp.zeros(8).at[t].add(p))(bags.tokens, per_position)
    expected = jax.vmap(lambda x: model.attention.distribution(logits, x, model.temperature[...]))(counts)
    np.testing.assert_allclose(per_token, expected, atol=1e-12)


@pytest.fixture(scope="module")
def sampled_members():
    """Sampled sequences with two queries, every switch on, Adam: both seeds in one call and one by one."""
    config = TransformerCompareConfig(**SMALL, sequence_length=8, queries=2, embeddings="learned",
                                      value="learned", norm="pre", head=True, optimizer="adam", eta_w=0.01, eta_z=0.01)
    numbers = config.members(0.01, 0.01)
    together = run_members(config, numbers, config.steps, config.save_steps, "both")
    # one member at a time, each its own call (one compile: the member's numbers are arrays)
    alone = [run_members(config, MemberNumbers(*(np.asarray(value)[seed:seed + 1] for value in numbers)), config.steps,
                         config.save_steps, "both") for seed in range(2)]
    return config, together, alone


@pytest.mark.slow
def test_vmapped_training_equals_one_by_one(sampled_members):
    _, together, alone = sampled_members
    for seed, single in enumerate(alone):
        for run in ("train", "reduced"):
            for field in ("z", "V"):
                np.testing.assert_allclose(getattr(getattr(together.members, run), field)[seed],
                                           getattr(getattr(single.members, run), field)[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(together.members.probes.nc_zhat_z_queries[seed],
                                   single.members.probes.nc_zhat_z_queries[0], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_every_query_is_probed(sampled_members):
    config, together, _ = sampled_members
    n = len(config.save_steps)
    assert together.members.probes.nc_zhat_z_queries.shape == (2, n, 2)
    # each query's invariant is fixed at its own start: exact there
    np.testing.assert_allclose(together.members.probes.nc_zhat_z_queries[:, 0], 1.0, atol=1e-12)
    assert np.all(np.isfinite(together.scalars["nc_zhat_z_worst_query"]))
    assert np.all(together.scalars["attention_rate"] > 0)


def test_query_embeddings_are_orthonormal_and_keep_u_q():
    data = make_token_data(0, n_distinct=4, n_common=4, n_classes=5, dim=12, embedding="random")
    queries = query_embeddings(data.U, 3)
    full = np.concatenate([data.U_c, queries], axis=1)
    np.testing.assert_allclose(full.T @ full, np.eye(11), atol=1e-12)
    np.testing.assert_array_equal(queries[:, 0], data.u_q)


def test_bags_cover_every_class_and_query():
    X = make_token_data(0, n_distinct=4, n_common=4, n_classes=5, dim=12).X
    bags = sample_bags(jax.random.key(0), X, 2, 7, 3)
    assert isinstance(bags, Bags) and bags.tokens.shape == (30, 7)
    np.testing.assert_array_equal(np.bincount(bags.label), 6)
    np.testing.assert_array_equal(np.bincount(bags.query), 15)
    np.testing.assert_allclose(np.sum(bags.weights, axis=1), 1.0)


@pytest.mark.parametrize("arguments, named", [
    (["--model", "transformer", "--sequence-length", "-1"], "sequence_length=-1"),
    (["--model", "transformer", "--queries", "0"], "queries=0"),
    (["--model", "transformer", "--queries", "50"], "queries=50"),
    (["--model", "transformer", "--norm", "batch"], "batch"),
    (["--model", "transformer", "--attention-params", "wq"], "wq"),
    (["--model", "mamba"], "mamba"),
    (["--norm", "post"], "--norm"),
    (["--model", "block", "--sequence-length", "16"], "--sequence-length"),
])
def test_bad_transformer_options_are_one_line_errors(tmp_path, capsys, arguments, named):
    try:
        code = main(["compare", *arguments, "--out", str(tmp_path)])
    except SystemExit as stop:  # a usage error of the parser
        code = stop.code
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and named in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sweep_over_transformer_switches_matches_compare(tmp_path):
    """`jomasim sweep --model transformer` with a switch set as an axis: each point is the
    comparison of its setting and seed (the same numbers as `run_compare`)."""
    sizes = ["--n-distinct", "4", "--n-common", "4", "--n-classes", "5", "--dim", "12", "--steps", "30", "--save-every", "10"]
    assert main(["sweep", "--model", "transformer", "--norm", "post", "--seed", "0,1", "--sequence-length", "6", *sizes,
                 "--out", str(tmp_path), "--name", "s"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "s" / "points.csv")))
    assert [(row["norm"], row["seed"]) for row in rows] == [("post", "0"), ("post", "1")]
    settings = dict(n_distinct=4, n_common=4, n_classes=5, dim=12, steps=30, save_every=10, seeds=2, sequence_length=6)
    results = run_compare(TransformerCompareConfig(**settings, norm="post"))
    for key in ("nc_zhat_z", "nc_reduced_z", "attention_rate", "entropy_sequences_train"):
        np.testing.assert_allclose([float(row[key]) for row in rows], results.scalars[key], rtol=1e-10)


@pytest.mark.slow
def test_cli_run_records_the_model_and_fit_reads_it(tmp_path, capsys):

    sizes = ["--n-distinct", "4", "--n-common", "4", "--n-classes", "5", "--dim", "12", "--steps", "40", "--save-every", "10",
             "--seeds", "2"]
    assert main(["compare", "--model", "transformer", "--norm", "pre", "--sequence-length", "6", *sizes,
                 "--out", str(tmp_path), "--name", "t"]) == 0
    record = json.loads((tmp_path / "t" / "config.json").read_text())
    assert record["model"] == "transformer" and record["config"]["norm"] == "pre" and record["config"]["sequence_length"] == 6
    printed = capsys.readouterr().out
    assert "NC(ẑP,z)" in printed and "worst query" in printed and "driven by the measured P(t)" in printed
    run = read_run(tmp_path / "t")
    assert isinstance(run.config, TransformerCompareConfig) and run.config.norm == "pre"
    with np.load(tmp_path / "t" / "data.npz") as data:
        assert data["nc_zhat_z_queries"].shape == (2, 5, 1)


def test_with_layernorm_the_block_reads_the_transformer_with_the_gain_at_the_start():
    """g₀ = mean 1/σ of the MLP's input over the frequency bags: the flows start from g₀ times the
    probed state and run at η_w g₀², and Theorem 1's closed form is the same in either reading."""
    config = TransformerCompareConfig(**SMALL, norm="post", sequence_length=6)
    numbers = _numbers(config)
    joint, (W0, z0) = config.model.start(config, numbers)
    plain, model = config.model.initial_model(config, numbers)
    bags = expectation_bags(plain.data.X)
    f = np.asarray(model._mlp_input(bags))
    gain = np.mean(1 / np.sqrt(np.var(f, axis=1) + 1e-5))
    assert gain > 1.5
    np.testing.assert_allclose(joint.eta_w, plain.eta_w * gain**2, rtol=1e-12)
    probe = model.probe()
    data = plain.data
    np.testing.assert_allclose(W0, gain * (data.U_c @ probe.V + np.outer(data.u_q, probe.w_q[0])), rtol=1e-12)
    read = joint.invariant((W0, z0)).predict(gain * probe.V)
    np.testing.assert_allclose(read, plain.invariant((W0 / gain, z0)).predict(probe.V), rtol=1e-12)
    unnormed = TransformerCompareConfig(**SMALL, sequence_length=6)
    assert unnormed.model.start(unnormed, numbers)[0].eta_w == plain.eta_w  # no LayerNorm: gain 1


@pytest.mark.slow
def test_weight_decay_acts_on_the_mlp_weights_alone():
    config = TransformerCompareConfig(**SMALL, **BLOCK_SWITCHES, head=True, weight_decay=0.5)
    numbers = _numbers(config)
    joint, y0 = config.model.start(config, numbers)
    decayed, plain = (config.model.train_and_read(dataclasses.replace(config, weight_decay=decay), joint, y0, numbers, 1, np.arange(2))
                      for decay in (0.5, 0.0))
    # one SGD step: the same gradient, plus the coupled decay −η_w λ W(0) on W and on nothing else
    np.testing.assert_allclose(decayed.W[1] - plain.W[1], -numbers.eta_w * 0.5 * decayed.W[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(decayed.z, plain.z, rtol=0, atol=1e-14)
    _, model = config.model.initial_model(config, numbers)
    assert sum(jax.tree_util.tree_leaves(_mlp_weights(nnx.state(model, nnx.Param)))) == 1, "W alone: not the head"
