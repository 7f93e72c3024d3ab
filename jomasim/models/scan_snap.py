"""Scan&Snap's reparameterised one-layer Transformer (JOMA_MATH §7.1, the authors' `Model2`) in Flax NNX."""

import jax
import jax.numpy as jnp
from flax import nnx


def token_attention(Z: jax.Array, counts: jax.Array, query: jax.Array) -> jax.Array:
    """The attention of one sequence summed per token id, `(M,)` (sums to one).

    With no positional encoding, softmax over the positions of a sequence with token counts c gives
    token l the weight c_l e^{Z[m,l]} / Σ_k c_k e^{Z[m,k]}, i.e. softmax(Z[m] + log c).

    **Arguments:**

    - `Z`: attention logits `(M, M)`.
    - `counts`: contextual-token counts `(M,)`, not all zero; `query`: the query id m (scalar).
    """
    present = counts > 0
    return jax.nn.softmax(jnp.where(present, Z[query] + jnp.log(jnp.where(present, counts, 1.0)), -jnp.inf))


class ScanSnapModel(nnx.Module):
    """Attention and decoder written directly in token-pair space.

    For contextual tokens x_1..x_{L−1} and query m the attention is a_t = softmax_t(Z[m, x_t]); the
    attended bag f = Σ_t a_t e_{x_t} (attention mass per token id, computed from the sequence's
    token counts by `token_attention`), optionally plus the query's own
    embedding e_m (the residual Scan&Snap leaves out), is ℓ2-normalised and the next-token logits
    are Y f.

    **Attributes:**

    - `Y`: `nnx.Param`, `(M, M)`, decoder logits, `Y[n, l]` from token l to next token n.
    - `Z`: `nnx.Param`, `(M, M)`, attention logits, `Z[m, l]` of query m to token l.
    - `residual`: whether e_m is added before the normalisation.
    """

    #: names of the parameters that the attention learning rate η_z applies to
    attention_parameters = ("Z",)

    def __init__(self, Y0: jax.Array, Z0: jax.Array, *, residual: bool = False):
        """**Arguments:**

        - `Y0`, `Z0`: initial parameters, both `(M, M)`.
        - `residual`: add the query embedding to the attended bag.
        """
        self.Y = nnx.Param(Y0)
        self.Z = nnx.Param(Z0)
        self.residual = residual

    def __call__(self, counts: jax.Array, query: jax.Array) -> jax.Array:
        """Next-token logits `(M,)` of one sequence given by its contextual-token counts `(M,)` and
        its query id (vmap for a batch)."""
        bag = token_attention(self.Z[...], counts, query)
        if self.residual:
            bag = bag + jax.nn.one_hot(query, bag.shape[0], dtype=bag.dtype)
        return self.Y[...] @ (bag / jnp.linalg.norm(bag))
