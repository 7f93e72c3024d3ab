"""The §3.5 JoMA block as a Flax NNX module: attention logits z and MLP weights W as parameters."""

import jax
import jax.numpy as jnp
from flax import nnx

from ..activation import AbstractActivation, get_activation
from ..attention import AbstractAttention, get_attention
from ..block import block_hidden, hidden_loss
from ..data import TokenData


class JoMABlock(nnx.Module):
    """One query token attending over contextual tokens, a residual, an MLP and a cross-entropy head.

    Exactly the model of the theory (`jomasim.block.block_loss`), so its full-batch gradient
    descent is the Euler discretisation of `JointFlow`. The token data and temperature are
    non-trainable variables, so a batch of blocks with different data can be trained under `vmap`.

    **Attributes:**

    - `W`: `nnx.Param`, `(d, K)` MLP weights (column k = hidden node k).
    - `z`: `nnx.Param`, `(M_c,)` attention logits (the Scan&Snap reparameterisation).
    - `X`, `U`, `temperature`: `nnx.Variable`s holding the data and T.
    """

    #: names of the parameters that the attention learning rate η_z applies to
    attention_parameters = ("z",)

    def __init__(self, data: TokenData, W0: jax.Array, z0: jax.Array, *, attention: "str | AbstractAttention",
                 activation: "str | AbstractActivation", temperature: float):
        """**Arguments:**

        - `data`: the token data.
        - `W0`, `z0`: initial parameters (e.g. `JointFlow.initial_state`, so that theory and
          training start from the same point).
        - `attention`: the attention form (or its name); `activation`: the activation (or its name), as
          in `JointFlow`.
        - `temperature`: T > 0.
        """
        self.X = nnx.Variable(data.X)
        self.U = nnx.Variable(data.U)
        self.temperature = nnx.Variable(jnp.asarray(temperature, dtype=jnp.result_type(float)))
        self.W = nnx.Param(W0)
        self.z = nnx.Param(z0)
        self.attention = get_attention(attention)
        self.activation = get_activation(activation)

    @property
    def data(self) -> TokenData:
        """The token data as a `TokenData`."""
        return TokenData(self.X[...], self.U[...])

    def __call__(self) -> jax.Array:
        """The full-batch cross-entropy over the K classes."""
        return hidden_loss(self.hidden(), self.activation)

    def hidden(self) -> jax.Array:
        """The hidden nodes' pre-activations, one row per class, `(K, K)` (`jomasim.block.block_hidden`)."""
        return block_hidden(self.W[...], self.z[...], self.data, attention=self.attention,
                            temperature=self.temperature[...])

    def attention_map(self) -> jax.Array:
        """The attention distribution over tokens for every class, `(M_c, K)`."""
        return self.attention.distribution(self.z[...], self.X[...], self.temperature[...])
