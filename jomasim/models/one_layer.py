"""A one-layer Transformer on the §3.5 data model, with each of JoMA's idealisations a switch.

The JoMA block (`JoMABlock`) is this model with direct logits, fixed embeddings, no value matrix,
no LayerNorm and no head, read on the expectation bags. Switched on one by one, the other choices
make it a Transformer as trained in practice:

| switch            | JoMA's idealisation                    | the other choice                                  |
|-------------------|----------------------------------------|---------------------------------------------------|
| `attention_params`| `"logits"`: z, one per query and token | `"qk"`: z_ml = (W_Q a_m)·(W_K a_l)/√d_k           |
| `embeddings`      | `"fixed"`: the data's orthonormal U    | `"learned"`: parameters, from U                   |
| `value`           | `"identity"`: tokens enter as a_l      | `"learned"`: W_V a_l, W_V from the identity       |
| `norm`            | `"none"`                               | `"post"`: LayerNorm on f; `"pre"`: also on a_l    |
| `head`            | hidden nodes are the K logits          | a learned linear head on φ(hidden)                |

For a sample of query m, class y and contextual positions p with tokens t_p and weights x_p
(`jomasim.data.Bags`): b = attention weights of the logits z_{m t_p} (the attention form, as in
the block), f = r_m + Σ_p b_p v_{t_p} with r_m the query's embedding (the residual) and v_l the
value vector of token l, then LayerNorm (`norm`), hidden = Wᵀ f, and cross-entropy on φ(hidden)
(or on the head's output). The attention inputs a are the embeddings (`pre`: their LayerNorm).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from .._errors import check_choice
from ..activation import AbstractActivation, get_activation
from ..attention import AbstractAttention, get_attention
from ..block import LAYER_NORM_EPSILON
from ..data import Bags

ATTENTION_PARAMS = ("logits", "qk")
EMBEDDING_CHOICES = ("fixed", "learned")
VALUE_CHOICES = ("identity", "learned")
NORMS = ("none", "post", "pre")


READ_PATHS = ("joma", "centring", "scale")
"""The three paths of LayerNorm's derivative (JOMA_MATH §10.3): d f̃ = (γ/σ)∘(I − 11ᵀ/d − f̂f̂ᵀ/d) df,
the first term JoMA's read with a gain 1/σ, the second the mean's, the third the spread's."""


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with a learned scale γ (from ones) and shift β (from zeros)."""

    def __init__(self, dim: int):
        self.scale = nnx.Param(jnp.ones(dim))
        self.bias = nnx.Param(jnp.zeros(dim))

    def __call__(self, x: jax.Array, path: str | None = None) -> jax.Array:
        """γ∘(x − m)/σ + β. With `path` (one of `READ_PATHS`) the value is the same but only that
        path of the derivative passes: x/σ with σ held (`joma`), −m/σ (`centring`), or (x − m)
        held with σ moving (`scale`); the three gradients add up to the whole."""
        mean, spread = self.moments(x)
        centred = x - mean
        normalised = centred / spread
        if path is not None:
            check_choice("path", path, READ_PATHS)
            held = jax.lax.stop_gradient
            passed = {"joma": x / held(spread), "centring": -mean / held(spread), "scale": held(centred) / spread}[path]
            normalised = held(normalised) + passed - held(passed)
        return normalised * self.scale[...] + self.bias[...]

    @staticmethod
    def moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The mean m and the spread σ = √(mean of (x − m)² + ε) over the last axis (kept)."""
        mean = jnp.mean(x, axis=-1, keepdims=True)
        return mean, jnp.sqrt(jnp.mean((x - mean) ** 2, axis=-1, keepdims=True) + LAYER_NORM_EPSILON)


class DirectLogits(nnx.Module):
    """JoMA's logits: one parameter per query and contextual token, `z` `(M_Q, M_c)`."""

    def __init__(self, z0: jax.Array):
        self.z = nnx.Param(z0)

    def table(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        """The logits `(M_Q, M_c)` (the attention inputs `queries`, `tokens` are not used)."""
        return self.z[...]

    def preconditioner(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        """How one step of rate η_z moves each query's logits per unit of −∂L/∂z: the identity,
        `(M_Q, M_c, M_c)`."""
        n_queries, n_tokens = self.z.shape
        return jnp.broadcast_to(jnp.eye(n_tokens, dtype=self.z.dtype), (n_queries, n_tokens, n_tokens))


class QueryKeyLogits(nnx.Module):
    """Learned projections: z_ml = (W_Q a_m)·(W_K a_l)/√d_k, with W_Q, W_K `(d_k, d)`."""

    def __init__(self, W_Q0: jax.Array, W_K0: jax.Array):
        self.query = nnx.Param(W_Q0)
        self.key = nnx.Param(W_K0)

    def table(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        """The logits `(M_Q, M_c)` of the query inputs `(M_Q, d)` over the token inputs `(M_c, d)`."""
        return (queries @ self.query[...].T) @ (tokens @ self.key[...].T).T / math.sqrt(self.query.shape[0])

    def preconditioner(self, queries: jax.Array, tokens: jax.Array) -> jax.Array:
        """How gradient descent at rate η_z on W_Q, W_K moves query m's logits (JOMA_MATH §10.2):
        ż_m = −η_z P_m ∂L/∂z_m from query m's own loss gradient, with

            P_m = (‖a_m‖² K Kᵀ + ‖q_m‖² A Aᵀ) / d_k,   q_m = W_Q a_m, rows of K: k_l = W_K a_l,

        A the token inputs `(M_c, d)` (J Jᵀ for J = ∂z_m/∂(W_Q, W_K)); other queries' gradients
        add coupling terms through W_K that this leaves out. `(M_Q, M_c, M_c)`."""
        d_k = self.query.shape[0]
        q = queries @ self.query[...].T
        keys = tokens @ self.key[...].T
        inputs = jnp.sum(queries**2, axis=1)
        return (inputs[:, None, None] * (keys @ keys.T) + jnp.sum(q**2, axis=1)[:, None, None] * (tokens @ tokens.T)) / d_k


class Probe(NamedTuple):
    """JoMA's quantities read off the model (`OneLayerTransformer.probe`).

    **Fields:**

    - `z`: each query's logits over the contextual tokens, `(M_Q, M_c)`.
    - `V`: how hidden node k reads token l through the value path, `(M_c, K)`: v_lᵀ diag(γ) w_k
      with v_l the value vector of token l and γ the scale of the LayerNorm on the MLP's input
      (ones without one); LayerNorm's centring and its division by the state's spread are not in V.
    - `w_q`: how hidden node k reads each query's residual, `(M_Q, K)`: r_mᵀ diag(γ) w_k.
    - `preconditioner`: P of each query (`QueryKeyLogits.preconditioner`), `(M_Q, M_c, M_c)`.
    """

    z: jax.Array
    V: jax.Array
    w_q: jax.Array
    preconditioner: jax.Array

    @property
    def rate(self) -> jax.Array:
        """The factor on η_z of each logit's own motion, the diagonal of `preconditioner`,
        `(..., M_Q, M_c)` (ones for direct logits; (‖a_m‖²‖k_l‖² + ‖q_m‖²‖a_l‖²)/d_k for W_Q, W_K)."""
        return jnp.diagonal(self.preconditioner, axis1=-2, axis2=-1)


class OneLayerTransformer(nnx.Module):
    """One attention layer and one MLP layer on the §3.5 data model (see the module docstring).

    **Attributes:**

    - `logits`: a `DirectLogits` or `QueryKeyLogits` (the parameters η_z applies to).
    - `embeddings`: `(M_c + M_Q, d)`, contextual tokens then queries; a `Param` or a fixed `Variable`.
    - `value`: W_V `(d, d)` or `None`; `attention_norm`, `mlp_norm`: `LayerNorm`s or `None`.
    - `W`: the MLP's first layer `(d, K)`; `head`, `head_bias`: `(K, K)`, `(K,)` or `None`.
    """

    #: names of the parameters that the attention learning rate η_z applies to
    attention_parameters = ("logits",)

    def __init__(self, embeddings: jax.Array, W0: jax.Array, z0: jax.Array, key: jax.Array, *,
                 attention_params: str = "logits", learned_embeddings: bool = False, learned_value: bool = False,
                 norm: str = "none", head: bool = False, attention: "str | AbstractAttention" = "softmax",
                 activation: "str | AbstractActivation" = "linear", temperature: float = 1.0):
        """**Arguments:**

        - `embeddings`: the initial embeddings `(M_c + M_Q, d)` (the data's orthonormal U and the
          query embeddings, as rows).
        - `W0`: the MLP's first layer `(d, K)`; `z0`: the direct logits `(M_Q, M_c)` (used with
          `attention_params="logits"`).
        - `key`: a `jax.random` key for W_Q, W_K and the head (LeCun-normal, as Flax's `Linear`).
        - `attention_params`, `norm`: one of `ATTENTION_PARAMS`, `NORMS`.
        - `learned_embeddings`, `learned_value`, `head`: the switches of the module docstring.
        - `attention`, `activation`, `temperature`: as in the block.
        """
        check_choice("attention_params", attention_params, ATTENTION_PARAMS)
        check_choice("norm", norm, NORMS)
        n_queries, self.n_tokens = z0.shape
        dim, n_hidden = W0.shape
        query_key, key_key, head_key = jax.random.split(key, 3)
        lecun = lambda k, shape: jax.random.normal(k, shape, W0.dtype) / math.sqrt(shape[1])  # noqa: E731
        self.logits = (DirectLogits(z0) if attention_params == "logits"
                       else QueryKeyLogits(lecun(query_key, (dim, dim)), lecun(key_key, (dim, dim))))
        self.embeddings = (nnx.Param if learned_embeddings else nnx.Variable)(embeddings)
        self.value = nnx.Param(jnp.eye(dim, dtype=W0.dtype)) if learned_value else None
        self.attention_norm = LayerNorm(dim) if norm == "pre" else None
        self.mlp_norm = LayerNorm(dim) if norm != "none" else None
        self.W = nnx.Param(W0)
        self.head = nnx.Param(lecun(head_key, (n_hidden, n_hidden))) if head else None
        self.head_bias = nnx.Param(jnp.zeros(n_hidden, W0.dtype)) if head else None
        self.attention = get_attention(attention)
        self.activation = get_activation(activation)
        self.temperature = nnx.Variable(jnp.asarray(temperature, dtype=W0.dtype))

    def _tables(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The logits `(M_Q, M_c)`, the value vectors `(M_c, d)` and the attention inputs `(M, d)`."""
        inputs = self.embeddings[...]
        if self.attention_norm is not None:
            inputs = self.attention_norm(inputs)
        tokens = inputs[: self.n_tokens]
        values = tokens @ self.value[...].T if self.value is not None else tokens
        return self.logits.table(inputs[self.n_tokens:], tokens), values, inputs

    def read_scale(self) -> jax.Array:
        """γ of the LayerNorm on the MLP's input (ones without one), `(d,)`."""
        return self.mlp_norm.scale[...] if self.mlp_norm is not None else jnp.ones(self.W.shape[0], self.W.dtype)

    def _position_logits(self, logits: jax.Array, bags: Bags) -> jax.Array:
        """Each position's logit, `(N, P)`: its sample's query's logit of its token."""
        return logits[bags.query[:, None], bags.tokens]

    def attention_distribution(self, bags: Bags) -> jax.Array:
        """The attention over every sample's positions as a distribution, `(N, P)` (the form's
        `distribution`: the weights normalised, their magnitudes for linear attention)."""
        logits, _, _ = self._tables()
        return jax.vmap(self.attention.distribution, in_axes=(0, 0, None))(
            self._position_logits(logits, bags), bags.weights, self.temperature[...])

    def _mlp_input(self, bags: Bags, logits: jax.Array | None = None) -> jax.Array:
        """f = r_m + Σ_p b_p v_{t_p} of every sample, `(N, d)`, at the model's logits or the table
        `logits`."""
        table, values, _ = self._tables()
        logits = table if logits is None else logits
        weights = jax.vmap(self.attention.weights, in_axes=(0, 0, None))(
            self._position_logits(logits, bags), bags.weights, self.temperature[...])
        attended = jnp.einsum("np,npd->nd", weights, values[bags.tokens])
        return self.embeddings[...][self.n_tokens + bags.query] + attended

    def hidden(self, bags: Bags, logits: jax.Array | None = None, read_path: str | None = None) -> jax.Array:
        """The hidden nodes' pre-activations Wᵀ f, `(N, K)`, at the model's logits or at the
        given table `logits` `(M_Q, M_c)` (for ∂L/∂z); `read_path` lets one path of the
        LayerNorm on the MLP's input pass the derivative (`LayerNorm`)."""
        f = self._mlp_input(bags, logits)
        if self.mlp_norm is not None:
            f = self.mlp_norm(f, read_path)
        return f @ self.W[...]

    def __call__(self, bags: Bags, logits: jax.Array | None = None, read_path: str | None = None) -> jax.Array:
        """The mean cross-entropy over the samples (at the table `logits`, along `read_path`, as
        `hidden`)."""
        out = self.activation.fn(self.hidden(bags, logits, read_path))
        if self.head is not None:
            out = out @ self.head[...] + self.head_bias[...]
        log_probs = jax.nn.log_softmax(out, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_probs, bags.label[:, None], axis=1))

    def path_gradients(self, bags: Bags) -> jax.Array:
        """∂L/∂z of the logits table split by the paths of the LayerNorm on the MLP's input
        (`READ_PATHS`): `(3, M_Q, M_c)`, adding up to ∂L/∂z; without that LayerNorm the JoMA path
        is all of it and the others are zero."""
        table = self._tables()[0]
        if self.mlp_norm is None:
            gradient = jax.grad(lambda logits: self(bags, logits))(table)
            return jnp.stack([gradient, jnp.zeros_like(gradient), jnp.zeros_like(gradient)])
        return jnp.stack([jax.grad(lambda logits: self(bags, logits, path))(table) for path in READ_PATHS])

    def read_gain(self, bags: Bags) -> jax.Array:
        """LayerNorm's gain on JoMA's read, 1/σ of the MLP's input averaged over the samples of
        `bags` (1 without that LayerNorm): the effective V is the probe's V times this gain."""
        if self.mlp_norm is None:
            return jnp.ones((), self.W.dtype)
        return jnp.mean(1 / LayerNorm.moments(self._mlp_input(bags))[1])

    def scaled_preconditioner(self, inverse_scale) -> jax.Array:
        """J D⁻¹ Jᵀ of each query's logits, `(M_Q, M_c, M_c)`: how a step that moves the attention
        parameters θ by −η D⁻¹ ∇_θ L moves query m's logits per unit of −∂L/∂z_m (J = ∂z_m/∂θ by
        autodiff; other queries' gradients add coupling terms it leaves out, as `Probe`'s). With
        D⁻¹ = 1 it is SGD's `Probe.preconditioner`; with Adam's `train.adam_inverse_scale` it is
        Adam's preconditioner in logit space (JOMA_MATH §10.4).

        **Arguments:**

        - `inverse_scale`: D⁻¹, a tree like the parameters of `logits` (`DirectLogits` or
          `QueryKeyLogits`).
        """
        _, _, inputs = self._tables()
        graphdef, params, rest = nnx.split(self.logits, nnx.Param, ...)
        jacobian = jax.jacrev(lambda p: nnx.merge(graphdef, p, rest).table(inputs[self.n_tokens:], inputs[: self.n_tokens]))(params)

        def part(J, scale):
            J = J.reshape(J.shape[:2] + (-1,))
            return jnp.einsum("mlp,p,mkp->mlk", J, jnp.ravel(scale), J)

        parts = jax.tree_util.tree_map(part, jacobian, inverse_scale)
        return sum(jax.tree_util.tree_leaves(parts))

    def probe(self) -> Probe:
        """JoMA's z, V, w_q, the logits' rate factor and preconditioner at the current parameters
        (`Probe`)."""
        logits, values, inputs = self._tables()
        read = self.read_scale()[:, None] * self.W[...]
        queries = self.embeddings[...][self.n_tokens:]
        preconditioner = self.logits.preconditioner(inputs[self.n_tokens:], inputs[: self.n_tokens])
        return Probe(logits, values @ read, queries @ read, preconditioner)
