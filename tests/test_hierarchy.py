"""Hierarchical latent data: the Table 1 generator, its sequences, and the tree co-occurrence (J26)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jomasim._errors import OutOfRangeError
from jomasim.hierarchy import active_latents, cooccurrence_exact, make_hierarchy, sample_sequences, tree_cooccurrence


@pytest.fixture(scope="module")
def hierarchy():
    return make_hierarchy(3, n0=10, n1=20, n_classes=20, n_children=2, vocab=100)


def test_structure_has_distinct_sets_of_n_children(hierarchy):
    for members, pool in ((hierarchy.tokens, 100), (hierarchy.level1, 10), (hierarchy.classes, 20)):
        members = np.asarray(members)
        assert members.shape[1] == pool and np.all(members.sum(axis=1) == 2)
        assert len({tuple(row) for row in members}) == len(members), "sets within a level are distinct"
    assert np.all(np.asarray(hierarchy.tokens)[:, 99] == 0), "the padding id is never a child"
    again = make_hierarchy(3, n0=10, n1=20, n_classes=20, n_children=2, vocab=100)
    for first, second in zip(hierarchy, again):
        np.testing.assert_array_equal(first, second)


def test_activation_is_the_union_of_children_top_down(hierarchy):
    labels = jnp.arange(20)
    tokens, level0, level1, classes = map(np.asarray, active_latents(hierarchy, labels))
    H = [np.asarray(m) for m in hierarchy]
    for c in range(20):
        expected1 = H[2][c] > 0
        expected0 = H[1][expected1].sum(axis=0) > 0
        expected_tokens = H[0][expected0].sum(axis=0) > 0
        np.testing.assert_array_equal(level1[c] > 0, expected1)
        np.testing.assert_array_equal(level0[c] > 0, expected0)
        np.testing.assert_array_equal(tokens[c] > 0, expected_tokens)
        assert classes[c, c] == 1 and classes[c].sum() == 1
    assert np.all(tokens.sum(axis=1) <= 8)


def test_sequences_are_padded_then_ascending_active_tokens(hierarchy):
    tokens, labels, (level0, level1) = sample_sequences(hierarchy, jax.random.key(0), 64, length=30)
    active, expected0, expected1, _ = active_latents(hierarchy, labels)
    np.testing.assert_array_equal(level0, expected0)
    np.testing.assert_array_equal(level1, expected1)
    for row in range(64):
        sequence = np.asarray(tokens[row])
        real = sequence[sequence != 99]
        padding = len(sequence) - len(real)
        assert np.all(sequence[:padding] == 99) and np.all(np.diff(real) > 0)
        np.testing.assert_array_equal(real, np.flatnonzero(np.asarray(active[row])))


def test_noisy_channel_flips_at_the_rate_rho_sets(hierarchy):
    labels = jnp.zeros(20000, dtype=int)
    _, _, level1, _ = active_latents(hierarchy, labels, jax.random.key(1), rho=0.6)
    children = np.asarray(hierarchy.classes[0]) > 0
    in_hierarchy = np.asarray(hierarchy.classes).sum(axis=0) > 0
    on_rate = np.asarray(level1).mean(axis=0)
    np.testing.assert_allclose(on_rate[children], 0.8, atol=0.02)
    np.testing.assert_allclose(on_rate[~children & in_hierarchy], 0.2, atol=0.02)
    assert np.all(on_rate[~in_hierarchy] == 0), "latents no class uses stay off"


def test_tree_cooccurrence_matches_theorem_5():
    result = tree_cooccurrence(depth=4, rho=0.8, root_on=0.7, samples=200_000, seed=0)
    for height, (estimate, exact) in result.items():
        assert estimate == pytest.approx(exact, abs=0.01), height
    exact = [result[height][1] for height in sorted(result)]
    assert np.all(np.diff(exact) < 0), "co-occurrence falls with the height of the common ancestor"
    assert cooccurrence_exact(2, 0.9, 0.0) == pytest.approx(0.5 * (1 + 0.9**4))


@pytest.mark.parametrize("sizes, message", [
    (dict(n0=10, n1=50, n_children=2), "n1=50 distinct sets"),
    (dict(n_children=0), "n_children=0"),
    (dict(vocab=1), "vocab=1"),
])
def test_impossible_sizes_are_named(sizes, message):
    with pytest.raises(OutOfRangeError, match=message):
        make_hierarchy(0, **sizes)
