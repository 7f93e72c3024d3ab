"""The three attention forms of JoMA and the Theorem 1 invariants (JOMA_MATH §1.2, §2.2-2.4).

Logits are divided by a temperature `T` before use (J3 with the code's temperature):

| kind      | weights b                          | Jacobian ∂b/∂z          |
|-----------|------------------------------------|-------------------------|
| `linear`  | x ∘ z / T                          | diag(x) / T             |
| `exp`     | x ∘ exp(z / T)                     | diag(b) / T             |
| `softmax` | x ∘ exp(z / T) / Σ_l x_l e^{z_l/T} | (diag(b) − b bᵀ) / T    |

`x` may be one frequency vector of shape `(M_c,)` or one per class as the columns of an
`(M_c, K)` matrix; the logits `z` have shape `(M_c,)` (a single query).
"""

import jax
import jax.numpy as jnp
import equinox as eqx

from ._errors import InvalidChoiceError, ShapeMismatchError, check_choice, check_positive

ATTENTION_KINDS = ("linear", "exp", "softmax")


def _column(z: jax.Array, x: jax.Array) -> jax.Array:
    """`z` reshaped to broadcast against `x` along the token axis (axis 0)."""
    return jnp.reshape(z, z.shape + (1,) * (jnp.ndim(x) - 1))


def attention_weights(kind: str, z: jax.Array, x: jax.Array, temperature: float = 1.0) -> jax.Array:
    """The attention vector b of J3 (one column per class when `x` is a matrix).

    **Arguments:**

    - `kind`: `"linear"`, `"exp"` or `"softmax"`.
    - `z`: attention logits, shape `(M_c,)`.
    - `x`: token frequencies, shape `(M_c,)` or `(M_c, K)`.
    - `temperature`: T > 0.

    **Returns:**

    b with the shape of `x`. The softmax form is computed with the maximum logit subtracted, so it
    stays finite for any finite logits.
    """
    check_choice("attention", kind, ATTENTION_KINDS)
    check_positive("temperature", temperature)
    logits = _column(z / temperature, x)
    if kind == "linear":
        return x * logits
    if kind == "exp":
        return x * jnp.exp(logits)
    unnormalised = x * jnp.exp(logits - jnp.max(logits))
    return unnormalised / jnp.sum(unnormalised, axis=0, keepdims=True)


def attention_jacobian(kind: str, z: jax.Array, x: jax.Array, temperature: float = 1.0) -> jax.Array:
    """The Jacobian ∂b/∂z of J4 for one frequency vector.

    **Arguments:** as `attention_weights`, with `x` of shape `(M_c,)`.

    **Returns:**

    The `(M_c, M_c)` matrix with entry `[l, j] = ∂b_l/∂z_j`.
    """
    if jnp.ndim(x) != 1:
        raise ShapeMismatchError(f"x has shape {jnp.shape(x)}; the Jacobian needs one vector (M_c,)")
    b = attention_weights(kind, z, x, temperature)
    if kind == "linear":
        return jnp.diag(x) / temperature
    if kind == "exp":
        return jnp.diag(b) / temperature
    return (jnp.diag(b) - jnp.outer(b, b)) / temperature


def attention_distribution(kind: str, z: jax.Array, x: jax.Array, temperature: float = 1.0) -> jax.Array:
    """The attention as a probability distribution over tokens, for entropies and plots.

    exp and softmax weights are normalised to sum to one over tokens; linear weights can be
    negative, so their magnitudes |b| are normalised.

    **Arguments / Returns:** as `attention_weights`; every column sums to one.
    """
    b = attention_weights(kind, z, x, temperature)
    if kind == "linear":
        b = jnp.abs(b)
    return b / jnp.sum(b, axis=0, keepdims=True)


class LogitInvariant(eqx.Module):
    """Theorem 1: the attention logits as a function of the projected MLP weights V.

    With κ = η_z / (2 η_w T) and κ' = η_z / η_w (JOMA_MATH §2.4), along the joint flow

    - exp:     z = κ Σ_k v_k² + c                                   (J10)
    - softmax: z = κ (Σ_k v_k² − b̄ Σ_k ‖v_k‖²) + c                  (J11, approximate)
    - linear:  z² = κ' Σ_k v_k² + c, i.e. z = branch · √(κ' Σ_k v_k² + c)   (J9)

    Squares are element-wise; `V` is `(M_c, K)` with column k = v_k. Build one from an initial
    state with `LogitInvariant.from_initial`.

    **Fields:**

    - `kind`: the attention kind.
    - `c`: the constant vector fixed by initialisation, shape `(M_c,)`.
    - `lr_ratio`: η_z / η_w.
    - `temperature`: T.
    - `b_bar`: b̄, the time-averaged attention (softmax only; `None` otherwise).
    - `branch`: the sign of z (linear only; `None` otherwise).
    """

    kind: str = eqx.field(static=True)
    c: jax.Array
    lr_ratio: jax.Array
    temperature: jax.Array
    b_bar: jax.Array | None = None
    branch: jax.Array | None = None

    def __check_init__(self):
        check_choice("attention", self.kind, ATTENTION_KINDS)
        check_positive("lr_ratio", self.lr_ratio)
        check_positive("temperature", self.temperature)
        if self.kind == "softmax" and self.b_bar is None:
            raise InvalidChoiceError("the softmax invariant needs b_bar (the average attention)")

    @classmethod
    def from_initial(
        cls,
        kind: str,
        V0: jax.Array,
        z0: jax.Array,
        *,
        lr_ratio: float = 1.0,
        temperature: float = 1.0,
        b_bar: jax.Array | None = None,
    ) -> "LogitInvariant":
        """The invariant whose constant makes the prediction exact at the initial state.

        **Arguments:**

        - `kind`: the attention kind.
        - `V0`: initial projected weights, `(M_c, K)`.
        - `z0`: initial logits, `(M_c,)`.
        - `lr_ratio`, `temperature`, `b_bar`: as the fields.

        **Returns:**

        A `LogitInvariant` with `predict(V0) == z0`.
        """
        if jnp.shape(z0) != jnp.shape(V0)[:1]:
            raise ShapeMismatchError(f"z0 has shape {jnp.shape(z0)}; expected {jnp.shape(V0)[:1]} to match V0")
        lr_ratio = jnp.asarray(lr_ratio, dtype=jnp.result_type(float))
        temperature = jnp.asarray(temperature, dtype=jnp.result_type(float))
        zero = cls(kind, jnp.zeros_like(z0), lr_ratio, temperature, b_bar, jnp.ones_like(z0))
        if kind == "linear":
            c = z0**2 - zero.squared_logits(V0)
            return cls(kind, c, lr_ratio, temperature, None, jnp.where(z0 < 0, -1.0, 1.0))
        return cls(kind, z0 - zero.predict(V0), lr_ratio, temperature, b_bar, None)

    def terms(self, V: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The two parts ẑ₁ = κ Σ_k v_k² and ẑ₂ = −κ b̄ Σ_k ‖v_k‖² of the exp/softmax prediction.

        These are the two dashed curves of Fig. 2 (ẑ₂ = 0 for exp attention).

        **Arguments:**

        - `V`: projected weights, `(M_c, K)`.

        **Returns:**

        `(ẑ₁, ẑ₂)`, each `(M_c,)`; the full prediction is ẑ₁ + ẑ₂ + c.
        """
        if self.kind == "linear":
            raise InvalidChoiceError("attention='linear' has no additive split; use predict or residual")
        kappa = self.lr_ratio / (2.0 * self.temperature)
        zhat1 = kappa * jnp.sum(V**2, axis=1)
        if self.kind == "exp":
            return zhat1, jnp.zeros_like(zhat1)
        return zhat1, -kappa * self.b_bar * jnp.sum(V**2)

    def squared_logits(self, V: jax.Array) -> jax.Array:
        """Linear attention: the predicted z² = κ' Σ_k v_k² + c."""
        return self.lr_ratio * jnp.sum(V**2, axis=1) + self.c

    def predict(self, V: jax.Array) -> jax.Array:
        """The predicted logits ẑ(V), shape `(M_c,)`."""
        if self.kind == "linear":
            return self.branch * jnp.sqrt(jnp.maximum(self.squared_logits(V), 0.0))
        zhat1, zhat2 = self.terms(V)
        return zhat1 + zhat2 + self.c

    def residual(self, V: jax.Array, z: jax.Array) -> jax.Array:
        """How far `(V, z)` is from the invariant: z − ẑ(V) (exp, softmax) or z² − κ'Σv² − c (linear).

        Zero along the exact joint flow for exp and linear attention.
        """
        if self.kind == "linear":
            return z**2 - self.squared_logits(V)
        return z - self.predict(V)
