"""The one-layer JoMA block of §3.5 as a pure function: attention, residual, MLP, cross-entropy.

For class y the block reads `f_y = U_C b_y + u_q` (J1), with b_y the attention over the class's
token frequencies, and its K hidden nodes `h = φ(Wᵀ f_y)` (J2) are the logits of a K-class
cross-entropy with label y (the authors' Fig. 2 model). Every class is one sample, so the loss is
the full-batch loss and its gradient flow is the continuous-time limit of full-batch training.
"""

import jax
import jax.numpy as jnp

from ._errors import ShapeMismatchError
from .activation import AbstractActivation, get_activation
from .attention import AbstractAttention
from .data import TokenData

LAYER_NORM_EPSILON = 1e-5
"""ε of every LayerNorm (PyTorch's default): σ = √(variance + ε)."""


def block_hidden(W: jax.Array, z: jax.Array, data: TokenData, *, attention: AbstractAttention,
                 temperature: float) -> jax.Array:
    """Pre-activations `Fᵀ W` of the hidden nodes, one row per class (sample).

    **Arguments:**

    - `W`: MLP weights, `(d, K)`, column k = w_k.
    - `z`: attention logits, `(M_c,)`.
    - `data`: the token data.
    - `attention`: the attention form; `temperature`: T.

    **Returns:**

    `(K, K)`: row y holds `w_kᵀ f_y` for every hidden node k.
    """
    if W.shape != (data.dim, data.n_classes) or z.shape != (data.n_tokens,):
        raise ShapeMismatchError(
            f"W has shape {W.shape} and z has shape {z.shape}; the block needs W of shape "
            f"(d, K) = {(data.dim, data.n_classes)} and z of shape (M_c,) = {(data.n_tokens,)}"
        )
    B = attention.weights(z, data.X, temperature)
    F = data.U_c @ B + data.u_q[:, None]
    return F.T @ W


def block_loss(
    W: jax.Array, z: jax.Array, data: TokenData, *, attention: AbstractAttention, activation: "str | AbstractActivation", temperature: float
) -> jax.Array:
    """Mean cross-entropy of the block over the K classes (labels y = 0..K−1).

    **Arguments:** as `block_hidden`, plus `activation`, φ or its name.

    **Returns:**

    The scalar loss.
    """
    return hidden_loss(block_hidden(W, z, data, attention=attention, temperature=temperature), activation)


def hidden_loss(hidden: jax.Array, activation: "str | AbstractActivation") -> jax.Array:
    """The block's loss as a function of its pre-activations: mean cross-entropy of φ(hidden).

    **Arguments:**

    - `hidden`: `(K, K)`, row y the pre-activations of class y (`block_hidden`).
    - `activation`: φ (`jomasim.activation`) or its name.

    **Returns:**

    The scalar loss; its negative gradient is g_{h_k} h'_k per class (row) and hidden node (column).
    """
    return output_loss(get_activation(activation).fn(hidden))


def output_loss(outputs: jax.Array) -> jax.Array:
    """The block's loss as a function of its outputs φ(h): mean cross-entropy with label y for row y.

    **Arguments:**

    - `outputs`: `(K, K)`, row y the outputs of class y.

    **Returns:**

    The scalar loss; its negative gradient is the back-propagated gradient g_{h_k} per class and
    hidden node.
    """
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(outputs, axis=1)))
