"""A multilayer decoder-only Transformer in Flax NNX that exposes its attention maps and MLP hidden
activations (for attention entropy and latent/hidden correlation)."""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from .._errors import OutOfRangeError, ShapeMismatchError, check_choice
from ..activation import ACTIVATIONS, get_activation

NORMS = ("post", "pre", "none")
"""Where a `Transformer`'s LayerNorms sit."""


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: each entry zeroed with probability `rate` and the rest divided by 1 − rate;
    `x` itself without a key or at rate 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shape and wiring of a `Transformer`.

    **Fields:**

    - `vocab_size`: number of token ids.
    - `n_outputs`: size of the output head (vocab size for language modelling, C for classes).
    - `d_model`, `n_layers`, `n_heads`, `d_hidden`: width, depth, heads, MLP hidden width.
    - `max_len`: longest sequence (for positional encodings).
    - `norm`: where the LayerNorms sit (`NORMS`): after each residual (`post`, as the reference
      code), before each sub-layer (`pre`), or nowhere (`none`).
    - `ffn_activation`: the MLP's activation (`jomasim.activation`: relu as the reference, gelu,
      silu, or linear).
    - `dropout`: the rate of the reference's (PyTorch's `TransformerEncoderLayer`'s) dropouts: on
      the embeddings plus positions, on the attention weights, after attention, on the MLP's
      hidden activations and after the MLP; active only where `__call__` gets a key (training).
    - `positional`: add sinusoidal positional encodings.
    - `causal`: causal attention mask.
    - `out_projection`: an output projection after attention (the WikiText reference has one,
      the hierarchical-data reference does not).
    - `embedding_scale`: multiply embeddings by √d_model (the WikiText reference does).
    - `init`: the initialisation (`INITIALISATIONS`): `flax`, Flax's defaults (embeddings
      N(0, 1/d_model), kernels LeCun normal, zero biases), or `torch`, PyTorch's defaults for
      `nn.Embedding` and `nn.Linear` (embeddings N(0, 1), kernels and biases U(±1/√fan_in)), as
      the reference code gets them.
    """

    vocab_size: int
    n_outputs: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    d_hidden: int = 128
    max_len: int = 128
    norm: str = "post"
    ffn_activation: str = "relu"
    dropout: float = 0.0
    positional: bool = True
    causal: bool = True
    out_projection: bool = True
    embedding_scale: bool = False
    init: str = "flax"

    def __post_init__(self):
        check_choice("init", self.init, INITIALISATIONS)
        check_choice("norm", self.norm, NORMS)
        check_choice("ffn_activation", self.ffn_activation, ACTIVATIONS)
        if not 0.0 <= self.dropout < 1.0:
            raise OutOfRangeError(f"dropout={self.dropout!r} is not allowed; it must lie in [0, 1)")
        for name in ("vocab_size", "n_outputs", "d_model", "n_layers", "n_heads", "d_hidden", "max_len"):
            if getattr(self, name) < 1:
                raise OutOfRangeError(f"{name}={getattr(self, name)!r} is not allowed; it must be >= 1")
        if self.d_model % self.n_heads:
            raise OutOfRangeError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")


@dataclasses.dataclass(frozen=True)
class Initialisation:
    """How a `Transformer`'s parameters are drawn: `embedding`, the embedding table's initialiser, and
    `linear(fan_in)`, the keyword arguments (`kernel_init`, `bias_init`) of a linear layer."""

    embedding: Callable
    bias: Callable[[int], Callable] | None = None
    kernel: Callable = nnx.initializers.lecun_normal()

    def linear(self, fan_in: int) -> dict:
        """`nnx.Linear`'s initialisers for a layer with `fan_in` inputs."""
        bias = nnx.initializers.zeros_init() if self.bias is None else self.bias(fan_in)
        return {"kernel_init": self.kernel, "bias_init": bias}


def torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype=float) -> jax.Array:
    """U(−1/√fan_in, 1/√fan_in), how PyTorch's `nn.Linear` draws its weight (Kaiming uniform with
    a = √5) and its bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _uniform_bias(fan_in: int) -> Callable:
    """PyTorch's `nn.Linear` bias as a Flax initialiser (`torch_uniform`)."""
    return lambda key, shape, dtype=jnp.float32: torch_uniform(key, shape, fan_in, dtype)


INITIALISATIONS = {
    "flax": Initialisation(nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)),
    # Kaiming uniform with a = √5 is U(±1/√fan_in): variance 1/(3 fan_in)
    "torch": Initialisation(nnx.initializers.normal(1.0), _uniform_bias,
                            nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")),
}
"""The initialisations a `Transformer` offers, by name."""


def sinusoidal_positions(length: int, d_model: int) -> jax.Array:
    """The sinusoidal positional encodings of Vaswani et al., `(length, d_model)`."""
    position = jnp.arange(length)[:, None]
    frequency = jnp.exp(jnp.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = jnp.zeros((length, d_model))
    table = table.at[:, 0::2].set(jnp.sin(position * frequency))
    return table.at[:, 1::2].set(jnp.cos(position * frequency[: d_model // 2]))


class SelfAttention(nnx.Module):
    """Multi-head self-attention with learned W_Q, W_K, W_V that also returns its attention maps."""

    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        d = config.d_model
        init = INITIALISATIONS[config.init].linear(d)
        self.query = nnx.Linear(d, d, use_bias=False, rngs=rngs, **init)
        self.key = nnx.Linear(d, d, use_bias=False, rngs=rngs, **init)
        self.value = nnx.Linear(d, d, use_bias=False, rngs=rngs, **init)
        self.out = nnx.Linear(d, d, rngs=rngs, **init) if config.out_projection else None
        self.n_heads = config.n_heads
        self.causal = config.causal
        self.dropout_rate = config.dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """`x`: `(L, d)`; `key`: dropout on the attention weights (none without). Returns the
        output `(L, d)` and the attention maps `(H, L, L)` (before dropout)."""
        length, d = x.shape
        split = lambda a: a.reshape(length, self.n_heads, d // self.n_heads).transpose(1, 0, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d // self.n_heads)
        if self.causal:
            scores = jnp.where(jnp.tril(jnp.ones((length, length), dtype=bool)), scores, -jnp.inf)
        maps = jax.nn.softmax(scores, axis=-1)
        out = (dropout(maps, self.dropout_rate, key) @ v).transpose(1, 0, 2).reshape(length, d)
        return (self.out(out) if self.out is not None else out), maps


class Block(nnx.Module):
    """Attention, residual, MLP, residual, with LayerNorms after each residual (`post`), before each
    sub-layer (`pre`) or none, and the reference's dropouts (`TransformerConfig`)."""

    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.attention = SelfAttention(config, rngs)
        with_norms = config.norm != "none"
        self.norm1 = nnx.LayerNorm(config.d_model, rngs=rngs) if with_norms else None
        self.norm2 = nnx.LayerNorm(config.d_model, rngs=rngs) if with_norms else None
        init = INITIALISATIONS[config.init]
        self.up = nnx.Linear(config.d_model, config.d_hidden, rngs=rngs, **init.linear(config.d_model))
        self.down = nnx.Linear(config.d_hidden, config.d_model, rngs=rngs, **init.linear(config.d_hidden))
        self.norm = config.norm
        self.activation = get_activation(config.ffn_activation)
        self.dropout_rate = config.dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns the block output `(L, d)`, attention maps `(H, L, L)`, MLP hidden `(L, d_hidden)`
        (after the activation, before dropout); `key`: the dropouts' (none without)."""
        keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
        before = (lambda norm, y: norm(y)) if self.norm == "pre" else (lambda norm, y: y)
        after = (lambda norm, y: norm(y)) if self.norm == "post" else (lambda norm, y: y)
        attended, maps = self.attention(before(self.norm1, x), keys[0])
        x = after(self.norm1, x + dropout(attended, self.dropout_rate, keys[1]))
        hidden = self.activation.fn(self.up(before(self.norm2, x)))
        out = self.down(dropout(hidden, self.dropout_rate, keys[2]))
        return after(self.norm2, x + dropout(out, self.dropout_rate, keys[3])), maps, hidden


class Transformer(nnx.Module):
    """Token embedding (+ positions), `n_layers` blocks, and a linear head on every position."""

    #: parameter-path names that the attention learning rate η_z applies to (W_Q, W_K)
    attention_parameters = ("query", "key")

    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        """**Arguments:**

        - `config`: a `TransformerConfig`.
        - `rngs`: `nnx.Rngs` for the initialisation.
        """
        self.config = config
        init = INITIALISATIONS[config.init]
        self.embed = nnx.Embed(config.vocab_size, config.d_model, embedding_init=init.embedding, rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs) for _ in range(config.n_layers)])
        self.head = nnx.Linear(config.d_model, config.n_outputs, rngs=rngs, **init.linear(config.d_model))

    def __call__(self, tokens: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Runs one sequence.

        **Arguments:**

        - `tokens`: integer ids, `(L,)` with L ≤ `max_len` (vmap for a batch).
        - `key`: a `jax.random` key for the dropouts (training); `None` runs without them.

        **Returns:**

        `(logits, inside)`: logits `(L, n_outputs)`, and `inside` with `"attention"`
        `(n_layers, H, L, L)` (rows sum to one) and `"hidden"` `(n_layers, L, d_hidden)` (the
        activations of each block's MLP).
        """
        if tokens.ndim != 1 or tokens.shape[0] > self.config.max_len:
            raise ShapeMismatchError(
                f"tokens has shape {tokens.shape}; expected one sequence (L,) with L <= max_len={self.config.max_len}"
            )
        x = self.embed(tokens)
        if self.config.embedding_scale:
            x = x * math.sqrt(self.config.d_model)
        if self.config.positional:
            x = x + sinusoidal_positions(tokens.shape[0], self.config.d_model)
        keys = [None] * (len(self.blocks) + 1) if key is None else list(jax.random.split(key, len(self.blocks) + 1))
        x = dropout(x, self.config.dropout, keys[0])
        maps, hiddens = [], []
        for block, block_key in zip(self.blocks, keys[1:]):
            x, attention, hidden = block(x, block_key)
            maps.append(attention)
            hiddens.append(hidden)
        return self.head(x), {"attention": jnp.stack(maps), "hidden": jnp.stack(hiddens)}
