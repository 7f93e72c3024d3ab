"""WikiText runs: a tiny language model on the real WikiText-2 valid/test files (when
`JOMASIM_WIKITEXT` names them) gets sparser attention in layer 0 and a lower validation loss."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jomasim._errors import JomasimError
from jomasim.cli import main
from jomasim.corpus import CORPUS_VARIABLE
from jomasim.experiments.wikitext import WikitextConfig, _windows, run_wikitext, train_depth
from jomasim.models import Transformer, TransformerConfig
from jomasim.models.transformer import dropout

# without the reference's dropout, which slows a run this short (its effect is in the docs' runs)
TINY = dict(train_split="valid", valid_split="test", min_count=100, depths=(1,), ablation_lrs=(), lr=1e-3, seeds=2,
            d_model=32, d_hidden=32, steps=300, eval_every=50, eval_windows=10, dropout=0.0)


def test_bad_settings_are_named():
    for bad, message in ((dict(depths=()), "depths=()"), (dict(eval_every=10, steps=5), "eval_every=10"),
                         (dict(ablation_lrs=(1e-3, -1.0)), "ablation_lrs=-1.0"), (dict(bptt=1), "bptt=1"),
                         (dict(ffn_activation="tanh"), "ffn_activation='tanh'"), (dict(dropout=1.0), "dropout=1.0"),
                         (dict(optimizer="lion"), "optimizer='lion'"), (dict(norm="mid"), "norm='mid'")):
        with pytest.raises(JomasimError, match=message):
            WikitextConfig(**bad)
    assert WikitextConfig(depths=(5,), lr=1e-4, ablation_lrs=(1e-4, 1e-3)).runs == [(5, 1e-4), (5, 1e-3)]


def test_missing_corpus_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "wikitext", "--corpus", str(tmp_path / "nowhere"), "--small", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "does not exist" in error


@pytest.mark.skipif(not os.environ.get(CORPUS_VARIABLE), reason=f"set {CORPUS_VARIABLE} to a WikiText folder")
@pytest.mark.slow
def test_layer_0_attention_sparsifies_and_loss_falls(tmp_path, monkeypatch):
    monkeypatch.setenv("JOMASIM_CACHE", str(tmp_path / "cache"))
    result = run_wikitext(WikitextConfig(**TINY))
    data, summary = result.arrays(), result.summary()
    assert [run["depth"] for run in summary["runs"]] == [1]
    for index, run in enumerate(summary["runs"]):
        assert run["entropy_min"][0] < run["entropy_initial"][0] - 0.1, "layer 0 gets sparser within the run"
        valid = data[f"valid_loss_{index}"].mean(axis=0)
        assert valid[-1] < valid[0] - 1.0 and np.all(np.isfinite(data[f"losses_{index}"]))
        assert data[f"entropy_{index}"].shape == (2, len(data["steps"]), run["depth"])


def _model(**switches):
    config = TransformerConfig(vocab_size=13, n_outputs=13, d_model=8, n_layers=2, d_hidden=12, max_len=10, **switches)
    return Transformer(config, nnx.Rngs(3))


@pytest.mark.slow
def test_with_a_linear_ffn_the_mlp_is_its_matrix_product():
    block = _model(ffn_activation="linear", norm="none").blocks[0]
    x = jax.random.normal(jax.random.key(0), (6, 8))
    attended, _ = block.attention(x)
    inner = x + attended
    expected = inner + (inner @ block.up.kernel[...] + block.up.bias[...]) @ block.down.kernel[...] + block.down.bias[...]
    out, _, hidden = block(x)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hidden, inner @ block.up.kernel[...] + block.up.bias[...], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_dropout_is_off_without_a_key_and_inverted_with_one():
    tokens = jnp.arange(10) % 13
    with_dropout, without = _model(dropout=0.2), _model()
    np.testing.assert_array_equal(with_dropout(tokens)[0], without(tokens)[0])
    assert not np.allclose(with_dropout(tokens, jax.random.key(1))[0], without(tokens)[0])
    dropped = dropout(jnp.ones(200_000), 0.2, jax.random.key(2))
    assert abs(float(jnp.mean(dropped == 0)) - 0.2) < 0.01 and set(np.unique(dropped).tolist()) == {0.0, 1.25}


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(0)
    return rng.integers(0, 13, size=(60, 3)), rng.integers(0, 13, size=(40, 2))


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_optimizer_switch_trains_as_optax_does_directly(streams, optimizer):
    config = WikitextConfig(optimizer=optimizer, dropout=0.0, seeds=1, d_model=8, d_hidden=12, steps=3, eval_every=1,
                            bptt=5, lr=0.05, norm="pre", ffn_activation="silu", positions=False)
    result = train_depth(config, 1, config.lr, *streams, vocab=13)
    model_config = TransformerConfig(vocab_size=13, n_outputs=13, d_model=8, n_layers=1, d_hidden=12, max_len=5, norm="pre",
                                     ffn_activation="silu", positional=False, embedding_scale=True)
    model = Transformer(model_config, nnx.Rngs(jax.random.split(jax.random.key(0))[0]))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    base = optax.adam(0.05) if optimizer == "adam" else optax.sgd(0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(0.5), base)
    state, losses = optimizer.init(params), []

    def loss(params, step):
        inputs, targets = _windows(jnp.asarray(streams[0]), step, 5)
        logits, _ = jax.vmap(nnx.merge(graphdef, params, rest))(inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    gradient = jax.jit(jax.value_and_grad(loss))
    for step in range(3):
        value, grads = gradient(params, step)
        updates, state = optimizer.update(grads, state, params)
        params, _ = optax.apply_updates(params, updates), losses.append(value)
    np.testing.assert_allclose(result.losses[0], losses, rtol=1e-5)  # float32, compiled against eager
    # the stable rank at every checkpoint is the SVD's of that checkpoint's MLP lower layers
    final = [np.linalg.svd(np.asarray(params["blocks"][layer]["up"]["kernel"][...]), compute_uv=False) for layer in (0,)]
    np.testing.assert_allclose(result.stable_rank[0, -1], [np.sum(s**2) / s[0] ** 2 for s in final], rtol=1e-5)
