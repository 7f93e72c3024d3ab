import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js


@pytest.mark.parametrize("variant", ["gaussian", "random"])
@pytest.mark.parametrize("embedding", ["identity", "random"])
def test_frequencies_and_embeddings(variant, embedding):
    data = js.make_token_data(3, variant=variant, embedding=embedding)
    X, U = np.asarray(data.X), np.asarray(data.U)
    assert X.shape == (20, 20) and U.shape == (30, 21)
    assert np.all(X >= 0)
    np.testing.assert_allclose(X.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(21), atol=1e-12)
    np.testing.assert_allclose(data.U_c.T @ data.u_q, 0.0, atol=1e-12)


def test_gaussian_bump_peaks_at_class_centre():
    data = js.make_token_data(0, n_distinct=10, n_classes=20)
    distinct = np.asarray(data.X[:10])
    # the bump of class y is centred at token y * 10 / 20
    for y in (0, 6, 12, 18):
        assert distinct[:, y].argmax() == y // 2


def test_seeded_and_saliency_moves_mass_to_distinct_tokens():
    a = js.make_token_data(5)
    b = js.make_token_data(5)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.allclose(a.X, js.make_token_data(6).X)
    mass = [float(js.make_token_data(5, saliency=s).X[:10].sum()) for s in (0.5, 1.0, 4.0)]
    assert mass[0] < mass[1] < mass[2]


def test_vmap_over_seeds_matches_one_by_one():
    keys = jax.random.split(jax.random.key(0), 4)
    batched = jax.vmap(lambda key: js.make_token_data(key).X)(keys)
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(batched[i], js.make_token_data(key).X)


def test_salience_is_input_gradient_cross_moment_at_uniform_output():
    data = js.make_token_data(1, n_distinct=4, n_common=3, n_classes=5, dim=9)
    K = data.n_classes
    g = (np.eye(K) - 1.0 / K) / K  # g[y, k] for sample y at uniform output
    expected = sum(np.outer(data.X[:, y], g[y]) for y in range(K))
    np.testing.assert_allclose(data.salience(), expected, atol=1e-15)


def test_bad_data_is_named():
    with pytest.raises(js.OutOfRangeError, match="dim=20 is too small"):
        js.make_token_data(0, dim=20)
    with pytest.raises(js.InvalidChoiceError, match="'uniform'"):
        js.make_token_data(0, variant="uniform")
    with pytest.raises(js.OutOfRangeError, match="saliency=-1"):
        js.make_token_data(0, saliency=-1.0)
    good = js.make_token_data(0, n_distinct=3, n_common=2, n_classes=3, dim=7)
    with pytest.raises(js.NonFiniteError, match="X holds 1 NaN"):
        js.TokenData(good.X.at[1, 1].set(jnp.nan), good.U)
    with pytest.raises(js.ShapeMismatchError, match="needs M_c \\+ 1 = 6 columns"):
        js.TokenData(good.X, good.U[:, :5])
    with pytest.raises(js.OutOfRangeError, match="orthonormal"):
        js.TokenData(good.X, 2.0 * good.U)
