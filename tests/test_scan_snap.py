"""Scan&Snap: sequence classes, the reparameterised model, and the learning-rate effect."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jomasim._errors import InvalidChoiceError, OutOfRangeError
from jomasim.data import make_sequence_classes
from jomasim.experiments.scan_snap import (
    ENTROPIES,
    INITS,
    ScanSnapConfig,
    ScanSnapSweep,
    attention_entropies,
    run_scan_snap,
    train_scan_snap,
)
from jomasim.metrics import entropy
from jomasim.models.scan_snap import ScanSnapModel, token_attention
from jomasim.runs import reproduce

SMALL = dict(panels=(1, 2), eta_z=(0.5, 1.5, 3.0), eta_ratio=(1.0, 4.0), seeds=2, steps=40, batch=32, length=48,
             eval_batch=64, save_every=20)


def test_sequence_classes_layout():
    classes = make_sequence_classes(n_queries=2, next_per_query=3, n_common=4, common_per_query=2, distinct_per_class=5)
    n_context = 4 + 2 * 2 + 6 * 5
    assert classes.vocab_size == n_context + 2 + 6 and classes.n_classes == 6
    np.testing.assert_allclose(classes.context.sum(axis=1), 1.0)
    context = np.asarray(classes.context)
    assert np.all(context[:, n_context:] == 0), "query and next tokens never appear in the context"
    assert np.all(context[:, :4] > 0), "global common tokens appear in every class"
    distinct = context[:, 8:n_context] > 0
    assert np.all(distinct.sum(axis=0) == 1) and np.all(distinct.sum(axis=1) == 5), "distinct tokens: one class each"
    own = context[0, 8:13]
    np.testing.assert_allclose(own / own[-1], np.linspace(0.1, 1.0, 5), err_msg="graded distinct probabilities")
    np.testing.assert_array_equal(classes.query, n_context + np.array([0, 0, 0, 1, 1, 1]))
    per_query_common = context[:, 4:8] > 0
    assert per_query_common[:3, :2].all() and not per_query_common[:3, 2:].any() and per_query_common[3:, 2:].all()


def test_sampled_counts_follow_the_class_distribution():
    classes = make_sequence_classes()
    counts, query, label = classes.sample(jax.random.key(0), 4000, 101)
    np.testing.assert_allclose(counts.sum(axis=1), 100)
    class_index = np.asarray(label) - int(classes.target[0])
    np.testing.assert_array_equal(query, np.asarray(classes.query)[class_index])
    for n in range(classes.n_classes):
        mine = np.asarray(counts)[class_index == n]
        frequency = mine.sum(axis=0) / mine.sum()
        np.testing.assert_allclose(frequency, classes.context[n], atol=0.01)
        assert np.all(mine[:, np.asarray(classes.context[n]) == 0] == 0), "zero-probability tokens never drawn"


@pytest.mark.parametrize("sizes", [dict(n_queries=0), dict(n_common=0, distinct_per_class=0), dict(next_per_query="2")])
def test_bad_sequence_class_sizes_are_rejected(sizes):
    with pytest.raises(OutOfRangeError):
        make_sequence_classes(**sizes)


def test_token_attention_is_the_positional_softmax_summed_per_token():
    vocab = 7
    Z = jax.random.normal(jax.random.key(1), (vocab, vocab))
    tokens = jnp.array([0, 2, 2, 5, 0, 0, 3])
    counts = jnp.zeros(vocab).at[tokens].add(1.0)

    def by_position(Z):
        weights = jax.nn.softmax(Z[4, tokens])
        return jax.ops.segment_sum(weights, tokens, num_segments=vocab)

    np.testing.assert_allclose(token_attention(Z, counts, 4), by_position(Z), rtol=1e-12)
    probe = jnp.arange(vocab, dtype=float)
    np.testing.assert_allclose(jax.grad(lambda Z: token_attention(Z, counts, 4) @ probe)(Z),
                               jax.grad(lambda Z: by_position(Z) @ probe)(Z), atol=1e-12)


def test_model_gradient_matches_finite_differences():
    vocab = 6
    Y0, Z0 = jax.random.normal(jax.random.key(2), (2, vocab, vocab))
    counts = jnp.array([3.0, 0.0, 1.0, 2.0, 0.0, 0.0])

    def loss(Z):
        logits = ScanSnapModel(Y0, Z)(counts, 4)
        return -jax.nn.log_softmax(logits)[5]

    gradient = jax.grad(loss)(Z0)
    step = 1e-6
    for row, column in [(4, 0), (4, 3), (4, 1), (2, 2)]:
        bump = jnp.zeros_like(Z0).at[row, column].set(step)
        numeric = (loss(Z0 + bump) - loss(Z0 - bump)) / (2 * step)
        assert gradient[row, column] == pytest.approx(float(numeric), abs=1e-8)


def test_bad_config_is_rejected():
    for bad in (dict(eta_z=()), dict(eta_ratio=(1.0, -2.0)), dict(momentum=1.0), dict(length=1), dict(seeds=0),
                dict(panels=()), dict(panels=(1, 1)), dict(panels=(0,))):
        with pytest.raises(OutOfRangeError):
            ScanSnapConfig(**bad)


@pytest.fixture(scope="module")
def small_run():
    result = run_scan_snap(ScanSnapConfig(**SMALL))
    return result.arrays(), result.summary()


def test_larger_attention_rate_gives_sparser_attention(small_run):
    data, summary = small_run
    assert summary["failed"] == 0
    assert summary["all_decreasing_in_eta_z"], data["entropy_mean"]
    assert summary["entropy_slope_eta_z"] < 0
    assert data["entropy_mean"].shape == (2, 3, 2)
    assert np.all(data["entropy_mean"] < summary["entropy_initial_mean"]), "attention sparsifies everywhere"
    assert np.all(np.diff(data["common_mass_mean"], axis=1) < 0), "common tokens lose attention faster with η_Z"


def test_each_reading_of_the_entropy_is_recorded(small_run):
    data, summary = small_run
    np.testing.assert_array_equal(data["entropy_final"], data["entropy_final_distinct_limit"])
    for panel in summary["panels"]:
        readings = panel["entropy_final_by_definition"]
        assert set(readings) == set(ENTROPIES)
        # the distinct tokens are half the contextual ones: restricting to them is the large difference
        assert readings["distinct-limit"] < readings["context-limit"] - 0.3
        # sampled sequences give a lower entropy than the limit, by less
        assert 0 < readings["context-limit"] - readings["context-sampled"] < 0.3
    assert [panel["vocab_size"] for panel in summary["panels"]] == [33, 56]


@pytest.mark.slow
def test_attention_entropies_against_hand_computation():
    classes = make_sequence_classes(n_queries=2, next_per_query=2, n_common=3, common_per_query=0, distinct_per_class=4)
    vocab = classes.vocab_size
    Z = jax.random.normal(jax.random.key(3), (vocab, vocab))
    counts, query, _ = classes.sample(jax.random.key(4), 5, 30)
    sampled = [token_attention(Z, c, q) for c, q in zip(counts, query)]
    readings = dict(zip(ENTROPIES, np.asarray(attention_entropies(Z, classes, jnp.stack(sampled)))))
    context = np.asarray(classes.context)
    distinct = np.zeros(vocab, bool)
    distinct[3:3 + 4 * 4] = True
    limit, limit_distinct = [], []
    for n in range(classes.n_classes):
        weights = context[n] * np.exp(np.asarray(Z)[int(classes.query[n])])
        limit.append(entropy(weights))
        limit_distinct.append(entropy(weights * distinct))
    assert readings["context-limit"] == pytest.approx(np.mean(limit), rel=1e-10)
    assert readings["distinct-limit"] == pytest.approx(np.mean(limit_distinct), rel=1e-10)
    assert readings["distinct-sampled"] == pytest.approx(np.mean([entropy(a * distinct) for a in sampled]), rel=1e-10)
    # at Z = 0 the limit attention is the class distribution: its entropy on the distinct tokens is
    # that of linspace(0.1, 1, 4)
    flat_sampled = jax.vmap(token_attention, in_axes=(None, 0, 0))(jnp.zeros_like(Z), counts, query)
    flat = dict(zip(ENTROPIES, np.asarray(attention_entropies(jnp.zeros_like(Z), classes, flat_sampled))))
    own = np.linspace(0.1, 1.0, 4) / np.linspace(0.1, 1.0, 4).sum()
    assert flat["distinct-limit"] == pytest.approx(-np.sum(own * np.log(own)), rel=1e-12)


def test_torch_initialisation_is_scaled_by_the_vocabulary():
    for vocab in (33, 240):
        Y0, Z0 = INITS["torch"](jax.random.key(5), vocab, 0.1)
        assert float(jnp.max(jnp.abs(Z0))) <= 1 / np.sqrt(vocab)
        assert float(jnp.std(Y0)) == pytest.approx(1 / np.sqrt(3 * vocab), rel=0.02)
    assert float(jnp.std(INITS["normal"](jax.random.key(5), 240, 0.1))) == pytest.approx(0.1, rel=0.02)


def test_grid_point_equals_a_single_run(small_run):
    data, _ = small_run
    config = ScanSnapConfig(**SMALL)
    row = int(np.flatnonzero((data["n_queries"] == 2) & (data["eta_z"] == 3.0) & (data["eta_ratio"] == 4.0)
                             & (data["seed"] == 1))[0])
    single = jax.jit(lambda: train_scan_snap(config, 2, 1, 12.0, 3.0))()
    assert data["eta_y"][row] == 12.0
    np.testing.assert_allclose(data["entropy_final"][row], single["entropy"][-1, ENTROPIES.index("distinct-limit")],
                               rtol=1e-9)
    np.testing.assert_allclose(data["loss_final"][row], single["losses"][-1], rtol=1e-9, atol=1e-14)


def test_sweep_task_checks_points():
    task = ScanSnapSweep(ScanSnapConfig(**SMALL))
    assert task.complete({"eta_z": 2.0, "eta_ratio": 5.0}) == {"n_queries": 1, "eta_z": 2.0, "eta_ratio": 5.0,
                                                               "eta_y": 10.0, "seed": 0}
    with pytest.raises(OutOfRangeError, match="eta_z"):
        task.complete({"eta_z": -1.0})
    with pytest.raises(InvalidChoiceError, match="n_queries=3"):
        task.complete({"n_queries": 3})


def test_reproduce_writes_the_table(tmp_path):
    config = ScanSnapConfig(**{**SMALL, "panels": (1,), "eta_z": (1.0, 3.0), "eta_ratio": (2.0,), "seeds": 1})
    folder, summary = reproduce("scan-snap", config, tmp_path)
    names = {path.name for path in folder.iterdir()}
    assert names == {"scan-snap.png", "scan-snap.npz", "scan-snap_table.csv", "summary.json", "config.json"}
    lines = (folder / "scan-snap_table.csv").read_text().splitlines()
    assert lines[0].startswith("n_queries,eta_z,eta_ratio,entropy_final_mean") and len(lines) == 3
    assert json.loads((folder / "summary.json").read_text())["table"][1]["eta_z"] == 3.0
    assert summary["table"][0]["entropy_final_mean"] > summary["table"][1]["entropy_final_mean"]
