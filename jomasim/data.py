"""The synthetic data model of JoMA §3.5: class-conditional token frequencies and embeddings.

Each class y has a deterministic contextual-token frequency vector (the limit of infinitely long
sequences), stored as column y of `X` (shape `(M_c, K)`). The first `n_distinct` tokens are the
*distinct* tokens, the rest are *common* tokens. Embeddings `U` are orthonormal: columns
`0..M_c−1` are the contextual tokens, column `M_c` is the single query token (the residual
direction u_q).
"""

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import (
    OutOfRangeError,
    ShapeMismatchError,
    at_least,
    check_choice,
    check_finite,
    check_integer,
    check_nonnegative,
    check_positive,
    concrete,
)
from ._settings import Settings, setting

VARIANTS = ("gaussian", "random")
EMBEDDINGS = ("identity", "random")


@dataclasses.dataclass(frozen=True)
class BlockSizes(Settings):
    """The sizes of the §3.5 data, declared once: a mixin of settings for every config that sets
    them (the block's, `BlockSetting`, and the ladder's, `ReachConfig`) and the defaults of
    `make_token_data`. The paper's Fig. 2 sizes: 10 distinct + 10 common tokens, K = 20, d = 30."""

    n_distinct: int = setting(10, "distinct tokens per class", check=at_least(0))
    n_common: int = setting(10, "tokens common to every class", check=at_least(0))
    n_classes: int = setting(20, "classes K (and hidden nodes)", check=at_least(1))
    dim: int = setting(30, "embedding dimension d", check=at_least(1))

    @property
    def n_tokens(self) -> int:
        """M_c, the contextual tokens: the distinct and the common ones."""
        return self.n_distinct + self.n_common

    def sizes(self) -> dict[str, int]:
        """The four sizes by name, as `make_token_data` and `check_data_options` take them."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(BlockSizes)}


class TokenData(eqx.Module):
    """Token frequencies and embeddings for one query token.

    **Fields:**

    - `X`: `(M_c, K)`, column y = contextual-token frequencies of class y (non-negative, each column
      sums to one).
    - `U`: `(d, M_c + 1)` orthonormal embeddings; `U[:, :M_c]` = U_C, `U[:, M_c]` = u_q.
    """

    X: jax.Array
    U: jax.Array

    def __check_init__(self):
        if jnp.ndim(self.X) != 2 or jnp.ndim(self.U) != 2:
            raise ShapeMismatchError(
                f"X has shape {jnp.shape(self.X)} and U has shape {jnp.shape(self.U)}; both must be matrices"
            )
        n_tokens = jnp.shape(self.X)[0]
        if jnp.shape(self.U)[1] != n_tokens + 1:
            raise ShapeMismatchError(
                f"U has shape {jnp.shape(self.U)}; it needs M_c + 1 = {n_tokens + 1} columns for X of shape {jnp.shape(self.X)}"
            )
        check_finite("X", self.X)
        check_finite("U", self.U)
        check_nonnegative("X", self.X)
        U = concrete(self.U)
        if U is not None and not np.allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-6):
            raise OutOfRangeError("U does not have orthonormal columns (UᵀU != I); JoMA needs orthonormal embeddings")

    @property
    def n_tokens(self) -> int:
        """M_c, the number of contextual tokens."""
        return self.X.shape[0]

    @property
    def n_classes(self) -> int:
        """K, the number of classes (and of MLP hidden nodes in the §3.5 model)."""
        return self.X.shape[1]

    @property
    def dim(self) -> int:
        """d, the embedding dimension."""
        return self.U.shape[0]

    @property
    def U_c(self) -> jax.Array:
        """Contextual embeddings U_C, `(d, M_c)`."""
        return self.U[:, : self.n_tokens]

    @property
    def u_q(self) -> jax.Array:
        """Query embedding u_q, `(d,)`."""
        return self.U[:, self.n_tokens]

    def mean_frequency(self) -> jax.Array:
        """x̄ = mean over classes of the frequencies: the attention at uniform logits, used as b̄."""
        return jnp.mean(self.X, axis=1)

    def salience(self) -> jax.Array:
        """Δ = E[x gᵀ] at the start of training (J14), shape `(M_c, K)`.

        With the cross-entropy head at uniform output, g_{h_k} = (1[k = y] − 1/K) / K, so
        Δ = (X − x̄ 1ᵀ) / K: token frequency times how much it discriminates the class.
        """
        return (self.X - self.mean_frequency()[:, None]) / self.n_classes


def check_data_options(*, n_distinct: int, n_common: int, n_classes: int, dim: int, variant: str, saliency,
                       embedding: str, bump_width: float = 30.0) -> None:
    """Checks the options of `make_token_data` (same names) without computing anything.

    **Raises:**

    `InvalidChoiceError` or `OutOfRangeError` naming the first bad option.
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("embedding", embedding, EMBEDDINGS)
    for name, count in (("n_distinct", n_distinct), ("n_common", n_common)):
        if count < 0:
            raise OutOfRangeError(f"{name}={count} is not allowed; it must be >= 0")
    n_tokens = n_distinct + n_common
    if n_tokens < 1 or n_classes < 1:
        raise OutOfRangeError(f"n_distinct + n_common = {n_tokens} and n_classes = {n_classes} must both be >= 1")
    if dim < n_tokens + 1:
        raise OutOfRangeError(
            f"dim={dim} is too small for orthonormal embeddings of {n_tokens} contextual tokens and one "
            f"query; it must be >= {n_tokens + 1}"
        )
    check_nonnegative("saliency", saliency)
    check_positive("bump_width", bump_width)
    if n_common == 0 and concrete(saliency) is not None and np.any(concrete(saliency) == 0):
        raise OutOfRangeError(f"saliency={saliency!r} with n_common=0 leaves every class with no tokens; use saliency > 0 or n_common > 0")


def make_token_data(
    seed: int | jax.Array = 0,
    *,
    n_distinct: int = BlockSizes.n_distinct,
    n_common: int = BlockSizes.n_common,
    n_classes: int = BlockSizes.n_classes,
    dim: int = BlockSizes.dim,
    variant: str = "gaussian",
    saliency: float = 1.0,
    bump_width: float = 30.0,
    embedding: str = "identity",
) -> TokenData:
    """The §3.5 data model (the authors' `draw_figure_2_3.py` generator), seeded.

    Frequencies start i.i.d. uniform on [0, 0.5). With `variant="gaussian"` the distinct rows become
    a Gaussian bump over classes, `X[l, y] = exp(−(l − y·n_distinct/K)² / bump_width)`; with
    `variant="random"` they stay random. The distinct rows are then multiplied by `saliency` (1 is
    the paper's setting; larger makes distinct tokens stand out more, 0 removes them) and every
    column is normalised to sum to one.

    **Arguments:**

    - `seed`: an integer seed or a `jax.random` key (use a key to `vmap` over seeds).
    - `n_distinct`, `n_common`: numbers of distinct and common tokens (M_c is their sum).
    - `n_classes`: K.
    - `dim`: d, at least M_c + 1 (orthonormal contextual and query embeddings).
    - `variant`: `"gaussian"` or `"random"`.
    - `saliency`: ≥ 0, the factor on the distinct rows.
    - `bump_width`: > 0, the width of the Gaussian bump.
    - `embedding`: `"identity"` (U = [I; 0], as the authors' code) or `"random"` (a random
      orthonormal basis drawn from the same key).

    **Returns:**

    A `TokenData`.
    """
    check_data_options(n_distinct=n_distinct, n_common=n_common, n_classes=n_classes, dim=dim, variant=variant,
                       saliency=saliency, bump_width=bump_width, embedding=embedding)
    n_tokens = n_distinct + n_common
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    freq_key, embed_key = jax.random.split(key)
    X = jax.random.uniform(freq_key, (n_tokens, n_classes)) / 2
    if variant == "gaussian":
        tokens = jnp.arange(n_distinct)[:, None]
        centres = jnp.arange(n_classes)[None, :] * n_distinct / n_classes
        X = X.at[:n_distinct].set(jnp.exp(-((tokens - centres) ** 2) / bump_width))
    X = X.at[:n_distinct].multiply(saliency)
    X = X / jnp.sum(X, axis=0, keepdims=True)

    if embedding == "identity":
        U = jnp.eye(dim, n_tokens + 1)
    else:
        U, _ = jnp.linalg.qr(jax.random.normal(embed_key, (dim, n_tokens + 1)))
    return TokenData(X, U)


class SequenceClasses(eqx.Module):
    """Scan&Snap's sequence classes (JOMA_MATH §7.2, the authors' `Dataset2`).

    Class n is a next token with a fixed query (last) token; its contextual tokens are drawn i.i.d.
    from `context[n]`. Token ids: contextual tokens `0..n_context−1` (global common, then common
    per query, then distinct per class), then the query tokens, then the next tokens.

    **Fields:**

    - `context`: `(n_classes, vocab_size)`, row n = P(l | class n) (zero outside the contextual ids).
    - `query`: `(n_classes,)` query-token id of each class.
    - `target`: `(n_classes,)` next-token id of each class (the label).
    """

    context: jax.Array
    query: jax.Array
    target: jax.Array

    @property
    def vocab_size(self) -> int:
        """M, every token id (contextual, query and next tokens)."""
        return self.context.shape[1]

    @property
    def n_classes(self) -> int:
        """The number of classes (next tokens)."""
        return self.context.shape[0]

    @property
    def classes_per_token(self) -> jax.Array:
        """In how many classes each token id appears, `(M,)`: 1 for a distinct token, more for a
        common one, 0 for query and next tokens."""
        return jnp.sum(self.context > 0, axis=0)

    def sample(self, key: jax.Array, batch: int, length: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """A batch of sequences: classes uniform, contextual tokens i.i.d. given the class. Without
        positional encoding a sequence is its token counts, which is what is returned.

        **Arguments:**

        - `key`: a `jax.random` key.
        - `batch`: number of sequences.
        - `length`: sequence length L (L − 1 contextual tokens, then the query).

        **Returns:**

        `(counts, query, label)`: contextual-token counts `(batch, M)` (each row sums to L − 1),
        query ids `(batch,)` and next-token ids `(batch,)`.
        """
        class_key, token_key = jax.random.split(key)
        classes = jax.random.randint(class_key, (batch,), 0, self.n_classes)
        # inverse-CDF sampling: one uniform per token (Gumbel-max would need one per token and id)
        cdf = jnp.cumsum(self.context[classes], axis=1)
        uniforms = (1.0 - jax.random.uniform(token_key, (batch, length - 1), dtype=cdf.dtype)) * cdf[:, -1:]  # in (0, total]
        tokens = jnp.minimum(jax.vmap(jnp.searchsorted)(cdf, uniforms), self.vocab_size - 1)
        counts = jnp.sum(jax.nn.one_hot(tokens, self.vocab_size, dtype=self.context.dtype), axis=1)
        return counts, self.query[classes], self.target[classes]


def check_sequence_class_sizes(n_queries: int, next_per_query: int, n_common: int, common_per_query: int,
                               distinct_per_class: int) -> None:
    """Checks the sizes of `make_sequence_classes` (same names) without any JAX work.

    **Raises:**

    `OutOfRangeError` naming the first bad size.
    """
    for name, value, least in (("n_queries", n_queries, 1), ("next_per_query", next_per_query, 1),
                               ("n_common", n_common, 0), ("common_per_query", common_per_query, 0),
                               ("distinct_per_class", distinct_per_class, 0)):
        check_integer(name, value, least=least)
    if n_common + common_per_query + distinct_per_class < 1:
        raise OutOfRangeError("n_common + common_per_query + distinct_per_class must be >= 1 (every class needs a contextual token)")


def make_sequence_classes(n_queries: int = 2, next_per_query: int = 2, n_common: int = 10, common_per_query: int = 0,
                          distinct_per_class: int = 10) -> SequenceClasses:
    """The sequence classes of Scan&Snap's Fig. 6 setting (defaults) or any other sizes.

    Every class has `n_common` global common tokens and the `common_per_query` tokens of its query
    (unnormalised probability 1 each), and `distinct_per_class` tokens of its own with unnormalised
    probabilities `linspace(0.1, 1, distinct_per_class)`; each row is then normalised.

    **Arguments:**

    - `n_queries`: number of query (last) tokens, ≥ 1.
    - `next_per_query`: classes (next tokens) per query, ≥ 1.
    - `n_common`, `common_per_query`: ≥ 0.
    - `distinct_per_class`: ≥ 0; with `n_common + common_per_query` at least one token per class.

    **Returns:**

    A `SequenceClasses`.
    """
    check_sequence_class_sizes(n_queries, next_per_query, n_common, common_per_query, distinct_per_class)
    n_classes = n_queries * next_per_query
    n_context = n_common + n_queries * common_per_query + n_classes * distinct_per_class
    vocab = n_context + n_queries + n_classes
    query_of_class = np.repeat(np.arange(n_queries), next_per_query)
    weights = np.zeros((n_classes, vocab))
    weights[:, :n_common] = 1.0
    for n, m in enumerate(query_of_class):
        shared = n_common + m * common_per_query
        weights[n, shared:shared + common_per_query] = 1.0
        own = n_common + n_queries * common_per_query + n * distinct_per_class
        weights[n, own:own + distinct_per_class] = np.linspace(0.1, 1.0, distinct_per_class)
    context = weights / weights.sum(axis=1, keepdims=True)
    return SequenceClasses(jnp.asarray(context), jnp.asarray(n_context + query_of_class),
                           jnp.asarray(n_context + n_queries + np.arange(n_classes)))


class Bags(NamedTuple):
    """A batch of samples of the §3.5 data model as weighted token positions, one row per sample.

    A sampled sequence is its L contextual tokens, each position of weight 1/L; the expectation
    limit (L → ∞) of class y is one position per contextual token, of weight `X[l, y]`. Attention
    over the positions with a logit per token is then the same computation in both.

    **Fields:**

    - `tokens`: contextual-token ids `(N, P)`; `weights`: position weights `(N, P)`, rows summing to one.
    - `query`: the query of each sample `(N,)` (0 … M_Q − 1); `label`: its class `(N,)`.
    """

    tokens: jax.Array
    weights: jax.Array
    query: jax.Array
    label: jax.Array


def _every_class_and_query(n_classes: int, n_queries: int, repeat: int) -> tuple[jax.Array, jax.Array]:
    """Labels and queries of `repeat` samples of every (class, query) pair, class-major."""
    label = jnp.repeat(jnp.arange(n_classes), n_queries * repeat)
    query = jnp.tile(jnp.repeat(jnp.arange(n_queries), repeat), n_classes)
    return label, query


def expectation_bags(X: jax.Array, n_queries: int = 1) -> Bags:
    """Every (class, query) pair once as its frequency bag: the block's input (`X` is `(M_c, K)`)."""
    n_tokens, n_classes = X.shape
    label, query = _every_class_and_query(n_classes, n_queries, 1)
    tokens = jnp.broadcast_to(jnp.arange(n_tokens), (label.shape[0], n_tokens))
    return Bags(tokens, X[:, label].T, query, label)


def sample_bags(key: jax.Array, X: jax.Array, n_queries: int, length: int, per_pair: int) -> Bags:
    """`per_pair` sampled sequences of every (class, query) pair: for class y, `length` contextual
    tokens drawn i.i.d. from `X[:, y]` (the queries share the class's tokens), each of weight 1/L.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `X`: token frequencies `(M_c, K)`.
    - `n_queries`: M_Q; `length`: L ≥ 1; `per_pair`: sequences per (class, query).

    **Returns:**

    The `Bags`, `N = K · M_Q · per_pair` rows of `P = L` positions.
    """
    label, query = _every_class_and_query(X.shape[1], n_queries, per_pair)
    # inverse-CDF sampling, one uniform per token (as SequenceClasses.sample)
    cdf = jnp.cumsum(X, axis=0).T[label]
    uniforms = (1.0 - jax.random.uniform(key, (label.shape[0], length), dtype=cdf.dtype)) * cdf[:, -1:]  # in (0, total]
    tokens = jnp.minimum(jax.vmap(jnp.searchsorted)(cdf, uniforms), X.shape[0] - 1)
    return Bags(tokens, jnp.full(tokens.shape, 1.0 / length, dtype=X.dtype), query, label)


def check_query_count(name: str, n_queries: int, *, dim: int, n_tokens: int) -> None:
    """Raises `OutOfRangeError` naming `name` unless M_Q orthonormal query embeddings fit beside
    `n_tokens` contextual ones in dimension `dim` (n_tokens + n_queries ≤ dim)."""
    if n_tokens + n_queries > dim:
        raise OutOfRangeError(f"{name}={n_queries} is not allowed with dim={dim} and {n_tokens} contextual tokens; "
                              f"it must be <= {dim - n_tokens}")


def query_embeddings(U: jax.Array, n_queries: int) -> jax.Array:
    """Embeddings of M_Q query tokens, `(d, M_Q)`: u_q (the last column of `U`) first, then
    orthonormal directions outside the span of `U` (from the projector onto its complement).

    **Raises:**

    `OutOfRangeError` unless d ≥ M_c + M_Q.
    """
    dim, taken = U.shape
    check_query_count("n_queries", n_queries, dim=dim, n_tokens=taken - 1)
    _, vectors = jnp.linalg.eigh(jnp.eye(dim) - U @ U.T)  # eigenvalues 0 (span of U) then 1 (its complement)
    return jnp.concatenate([U[:, -1:], vectors[:, dim - n_queries + 1:]], axis=1)
