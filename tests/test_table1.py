"""Table 1: the correlation protocol and, on a small setting, the claim that level-0 latents are
matched by hidden nodes of the first block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jomasim._errors import OutOfRangeError
from jomasim.cli import main
from jomasim.experiments.table1 import VOCAB, Table1Config, best_match_scores, run_table1
from jomasim.hierarchy import make_hierarchy, sample_sequences
from jomasim.models import Transformer

SMALL = dict(n_classes=(20,), n_children=(2,), latents=((10, 20),), seeds=2, steps=100)


def test_best_match_finds_the_matching_node_and_skips_constant_latents():
    latents = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    hidden = jnp.array([[0.2, 5.0], [0.9, 1.0], [0.1, 5.0], [0.5, 1.0]])
    zero_mean, raw, varies = best_match_scores(latents, hidden)
    assert zero_mean[0] == pytest.approx(1.0) and np.asarray(varies).tolist() == [True, False, False]
    cosine = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))  # noqa: E731
    column, nodes = np.asarray(latents[:, 0]), np.asarray(hidden).T
    assert raw[0] == pytest.approx(max(cosine(column, node) for node in nodes))
    assert raw[1] == 0.0, "an all-zero latent has no cosine to measure"


def test_bad_settings_are_named():
    with pytest.raises(OutOfRangeError, match="n1=50 distinct sets"):
        Table1Config(latents=((10, 50),))
    with pytest.raises(OutOfRangeError, match="length=20 is too short"):
        Table1Config(length=20)
    with pytest.raises(OutOfRangeError, match="rho=0"):
        Table1Config(rho=0.0)


@pytest.fixture(scope="module")
def small_table():
    result = run_table1(Table1Config(**SMALL))
    return result.arrays(), result.summary()


@pytest.mark.slow
def test_first_block_hidden_nodes_match_level_0_latents(small_table):
    data, summary = small_table
    row = summary["table"][0]
    assert row["s0_zero_mean_mean"] >= 0.9, row
    assert row["s1_zero_mean_mean"] < row["s0_zero_mean_mean"], "the higher level is matched less well"
    assert row["accuracy_mean"] > 0.8 and row["loss_final_mean"] < 0.5 * data["loss_0"][:, 0].mean()
    assert data["scores_0"].shape == (2, 8)
    lines = summary["layout"].splitlines()
    assert len(lines) == 3 and lines[2].split()[0] == "20"


@pytest.mark.slow
def test_control_is_the_untrained_network_measured_the_same_way(small_table):
    data, summary = small_table
    config = Table1Config(**SMALL)
    setting = config.settings[0]
    hierarchy = make_hierarchy(1, setting.n0, setting.n1, setting.n_classes, setting.n_children, VOCAB)
    init_key, _, test_key = jax.random.split(jax.random.key(1), 3)
    untrained = Transformer(config.transformer(setting.n_classes), nnx.Rngs(init_key))
    tokens, _, levels = sample_sequences(hierarchy, test_key, config.test_batch, config.length)
    pooled = jnp.max(jax.vmap(untrained)(tokens)[1]["hidden"], axis=2)
    # scores_0's columns: s = 0, 1 for zero-mean, raw, then the untrained zero-mean and raw (KINDS)
    for level, latents in enumerate(levels):
        zero_mean, raw, varies = best_match_scores(latents, pooled[:, level])
        expected = [np.mean(np.asarray(values)[np.asarray(varies)]) for values in (zero_mean, raw)]
        np.testing.assert_allclose(data["scores_0"][1, [4 + level, 6 + level]], expected, rtol=1e-5)
    assert not np.allclose(data["scores_0"][:, 0], data["scores_0"][:, 4]), "training moves it"
    row = summary["table"][0]
    assert summary["s0_initial_zero_mean_rows"] == [row["s0_initial_zero_mean_mean"]]


@pytest.mark.slow
def test_cooccurrence_check_matches_theorem_5(small_table):
    data, summary = small_table
    assert summary["cooccurrence_max_error"] < 0.01
    assert np.all(np.diff(data["cooccurrence_exact"]) < 0)


def test_paper_sizes_option_applies_to_table1_only(tmp_path, capsys):
    assert main(["reproduce", "fig3", "--paper-sizes", "--out", str(tmp_path)]) == 2
    assert "--paper-sizes does not apply to fig3" in capsys.readouterr().err
