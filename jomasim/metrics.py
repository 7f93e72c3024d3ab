"""Measures on arrays: normalized correlation, attention entropy, stable rank."""

import jax
import jax.numpy as jnp


def normalized_correlation(a: jax.Array, b: jax.Array, axis: int = -1) -> jax.Array:
    """The normalized correlation (mean-centred cosine) of JoMA's Fig. 2.

    NC(a, b) = ⟨a − ā, b − b̄⟩ / (‖a − ā‖ ‖b − b̄‖), computed along `axis` and broadcast over the
    other axes.

    **Arguments:**

    - `a`, `b`: arrays of the same shape.
    - `axis`: the axis holding the vectors.

    **Returns:**

    Values in [−1, 1]. Where either vector is constant along `axis` there is no correlation to
    measure and the result is 0; where either is not finite, NaN.
    """
    a = a - jnp.mean(a, axis=axis, keepdims=True)
    b = b - jnp.mean(b, axis=axis, keepdims=True)
    norms = jnp.linalg.norm(a, axis=axis) * jnp.linalg.norm(b, axis=axis)
    inner = jnp.sum(a * b, axis=axis)
    safe = jnp.where(norms > 0, norms, 1.0)
    return jnp.clip(jnp.where(norms > 0, inner / safe, jnp.where(jnp.isfinite(norms), 0.0, jnp.nan)), -1.0, 1.0)


def entropy(p: jax.Array, axis: int = 0) -> jax.Array:
    """Shannon entropy −Σ p log p (nats) of distributions along `axis`, with 0 log 0 = 0.

    **Arguments:**

    - `p`: non-negative weights; normalised along `axis` before use.
    - `axis`: the axis of the distribution.

    **Returns:**

    The entropies, with `axis` removed (NaN where a weight is NaN).
    """
    p = p / jnp.sum(p, axis=axis, keepdims=True)
    safe = jnp.where(p > 0, p, 1.0)
    # 0 log 0 = 0, but a weight that is not a number leaves the entropy not a number
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(safe), jnp.where(jnp.isnan(p), jnp.nan, 0.0)), axis=axis)


def mean_attention_entropy(attention: jax.Array) -> jax.Array:
    """Attention entropy (nats) averaged over classes: `attention` is `(M_c, K)`, one
    distribution per class (column)."""
    return jnp.mean(entropy(attention, axis=0))


def attention_map_entropy(maps: jax.Array) -> jax.Array:
    """Per layer, the attention entropy of JOMA_MATH §6.2: −Σ_j a_ij log(a_ij + 1e-8), averaged over
    heads and query positions. `maps` is `(n_layers, H, L, L)`, rows summing to one (causal rows
    included); returns `(n_layers,)`."""
    return jnp.mean(-jnp.sum(maps * jnp.log(maps + 1e-8), axis=-1), axis=(1, 2))


def stable_rank(W: jax.Array) -> jax.Array:
    """The stable rank ‖W‖_F² / ‖W‖₂² of a matrix (JOMA_MATH §4.4); 0 for the zero matrix."""
    singular = jnp.linalg.svd(W, compute_uv=False)
    top = singular[0] ** 2
    return jnp.where(top > 0, jnp.sum(singular**2) / jnp.where(top > 0, top, 1.0), 0.0)
