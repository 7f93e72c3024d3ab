"""The attention forms of JoMA and the Theorem 1 invariants (JOMA_MATH §1.2, §2.2-2.4).

An attention form is a strategy object, as a Diffrax solver is: a subclass of `AbstractAttention`
says what the attention weights are (J3), their Jacobian (J4), the attention as a distribution,
and Theorem 1's prediction of the logits from the projected MLP weights. Logits are divided by a
temperature `T` before use:

| form               | weights b                          | Jacobian ∂b/∂z          |
|--------------------|------------------------------------|-------------------------|
| `LinearAttention`  | x ∘ z / T                          | diag(x) / T             |
| `ExpAttention`     | x ∘ exp(z / T)                     | diag(b) / T             |
| `SoftmaxAttention` | x ∘ exp(z / T) / Σ_l x_l e^{z_l/T} | (diag(b) − b bᵀ) / T    |

`x` may be one frequency vector of shape `(M_c,)` or one per class as the columns of an
`(M_c, K)` matrix; the logits `z` have shape `(M_c,)` (a single query). A new form is one subclass
and, to be named on the command line or in a config file, one line in `ATTENTIONS`.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._errors import InvalidChoiceError, ShapeMismatchError, check_choice, check_positive


def _column(z: jax.Array, x: jax.Array) -> jax.Array:
    """`z` reshaped to broadcast against `x` along the token axis (axis 0)."""
    return jnp.reshape(z, z.shape + (1,) * (jnp.ndim(x) - 1))


class AbstractAttention(eqx.Module):
    """An attention form: its weights, their Jacobian, its distribution, and Theorem 1's invariant
    for it. The Theorem 1 methods take the `LogitInvariant` whose numbers (c, η_z/η_w, T, b̄,
    branch) they use. Forms whose prediction is a sum ẑ₁ + ẑ₂ + c subclass
    `AbstractAdditiveAttention`; the others (linear attention) implement every method themselves.
    """

    name: ClassVar[str]
    additive: ClassVar[bool]
    """Whether Theorem 1's prediction is the sum ẑ₁ + ẑ₂ + c (an `AbstractAdditiveAttention`)."""
    holds_mean_attention: ClassVar[bool] = False
    """Whether Theorem 1 holds a mean attention b̄ fixed for this form (`mean_attention` gives it)."""

    @abc.abstractmethod
    def weights(self, z: jax.Array, x: jax.Array, temperature: jax.Array) -> jax.Array:
        """The attention vector b of J3 (one column per class when `x` is a matrix).

        **Arguments:**

        - `z`: attention logits, `(M_c,)`.
        - `x`: token frequencies, `(M_c,)` or `(M_c, K)`.
        - `temperature`: T > 0.

        **Returns:**

        b with the shape of `x`.
        """

    @abc.abstractmethod
    def jacobian(self, z: jax.Array, x: jax.Array, temperature: jax.Array) -> jax.Array:
        """The Jacobian ∂b/∂z of J4 for one frequency vector `x` `(M_c,)`: the `(M_c, M_c)`
        matrix with entry `[l, j] = ∂b_l/∂z_j`."""

    @abc.abstractmethod
    def distribution(self, z: jax.Array, x: jax.Array, temperature: jax.Array) -> jax.Array:
        """The attention as a probability distribution over tokens, for entropies and plots (every
        column sums to one)."""

    @abc.abstractmethod
    def mean_attention(self, x: jax.Array) -> jax.Array | None:
        """b̄, the mean attention that Theorem 1 holds fixed, from the token frequencies `x`
        `(M_c, K)`: `(M_c,)`; `None` for a form that holds none (`holds_mean_attention`)."""

    @abc.abstractmethod
    def predict(self, invariant: "LogitInvariant", V: jax.Array) -> jax.Array:
        """The predicted logits ẑ(V) at projected weights `V` `(M_c, K)`, `(M_c,)`."""

    @abc.abstractmethod
    def residual(self, invariant: "LogitInvariant", V: jax.Array, z: jax.Array) -> jax.Array:
        """How far `(V, z)` is from the invariant, `(M_c,)`: zero along the joint flow wherever
        Theorem 1 is exact."""

    @abc.abstractmethod
    def constant(self, invariant: "LogitInvariant", V0: jax.Array, z0: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """The constant c (and the branch, for forms that need one) that make the prediction of
        `invariant` (whose own c is ignored) exact at `(V0, z0)`."""


def _normalised(b: jax.Array) -> jax.Array:
    """Non-negative weights normalised to sum to one over tokens (axis 0)."""
    return b / jnp.sum(b, axis=0, keepdims=True)


class AbstractAdditiveAttention(AbstractAttention):
    """A form whose Theorem 1 prediction is additive, ẑ(V) = ẑ₁(V) + ẑ₂(V) + c, with the two parts
    given by `terms`, and whose weights are non-negative (its distribution is b normalised)."""

    additive: ClassVar[bool] = True

    @abc.abstractmethod
    def terms(self, invariant: "LogitInvariant", V: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The two parts (ẑ₁, ẑ₂) of the prediction at projected weights `V` `(M_c, K)`, each
        `(M_c,)` (the two dashed curves of Fig. 2)."""

    def distribution(self, z, x, temperature):
        return _normalised(self.weights(z, x, temperature))

    def predict(self, invariant, V):
        zhat1, zhat2 = self.terms(invariant, V)
        return zhat1 + zhat2 + invariant.c

    def residual(self, invariant, V, z):
        return z - self.predict(invariant, V)

    def constant(self, invariant, V0, z0):
        zhat1, zhat2 = self.terms(invariant, V0)
        return z0 - zhat1 - zhat2, None


class LinearAttention(AbstractAttention):
    """b = x ∘ z / T. Theorem 1 (J9): z² = κ' Σ_k v_k² + c with κ' = η_z/η_w, so
    z = branch · √(κ' Σ_k v_k² + c) with the branch the sign of z(0). Its distribution is |b|
    normalised (linear weights can be negative)."""

    name: ClassVar[str] = "linear"
    additive: ClassVar[bool] = False

    def weights(self, z, x, temperature):
        return x * _column(z / temperature, x)

    def jacobian(self, z, x, temperature):
        return jnp.diag(x) / temperature

    def distribution(self, z, x, temperature):
        return _normalised(jnp.abs(self.weights(z, x, temperature)))

    def mean_attention(self, x):
        return None

    def squared_logits(self, invariant: "LogitInvariant", V: jax.Array) -> jax.Array:
        """The predicted z² = κ' Σ_k v_k² + c."""
        return invariant.lr_ratio * jnp.sum(V**2, axis=1) + invariant.c

    def predict(self, invariant, V):
        return invariant.branch * jnp.sqrt(jnp.maximum(self.squared_logits(invariant, V), 0.0))

    def residual(self, invariant, V, z):
        return z**2 - self.squared_logits(invariant, V)

    def constant(self, invariant, V0, z0):
        return z0**2 - invariant.lr_ratio * jnp.sum(V0**2, axis=1), jnp.where(z0 < 0, -1.0, 1.0)


class ExpAttention(AbstractAdditiveAttention):
    """b = x ∘ exp(z / T). Theorem 1 (J10), exact: z = κ Σ_k v_k² + c with κ = η_z / (2 η_w T)."""

    name: ClassVar[str] = "exp"

    def weights(self, z, x, temperature):
        return x * jnp.exp(_column(z / temperature, x))

    def jacobian(self, z, x, temperature):
        return jnp.diag(self.weights(z, x, temperature)) / temperature

    def mean_attention(self, x):
        return None

    def terms(self, invariant, V):
        zhat1 = invariant.kappa * jnp.sum(V**2, axis=1)
        return zhat1, jnp.zeros_like(zhat1)


class SoftmaxAttention(AbstractAdditiveAttention):
    """b = x ∘ exp(z / T) / Σ_l x_l exp(z_l / T), computed with the largest logit subtracted so it
    stays finite for any finite logits. Theorem 1 (J11), approximate: z = κ (Σ_k v_k² −
    b̄ Σ_k ‖v_k‖²) + c with b̄ the mean token frequency x̄ (the attention at uniform logits), as in
    the authors' code; `jomasim.assumptions` measures what the approximation misses."""

    name: ClassVar[str] = "softmax"
    holds_mean_attention: ClassVar[bool] = True

    def weights(self, z, x, temperature):
        logits = _column(z / temperature, x)
        return _normalised(x * jnp.exp(logits - jnp.max(logits)))

    def jacobian(self, z, x, temperature):
        b = self.weights(z, x, temperature)
        return (jnp.diag(b) - jnp.outer(b, b)) / temperature

    def mean_attention(self, x):
        return jnp.mean(x, axis=1)

    def terms(self, invariant, V):
        zhat1 = invariant.kappa * jnp.sum(V**2, axis=1)
        return zhat1, -invariant.kappa * invariant.b_bar * jnp.sum(V**2)


ATTENTIONS: dict[str, AbstractAttention] = {
    form.name: form for form in (LinearAttention(), ExpAttention(), SoftmaxAttention())
}
"""The attention forms by the names the command line and config files use."""


def get_attention(attention: "str | AbstractAttention") -> AbstractAttention:
    """The attention form named `attention` (a key of `ATTENTIONS`), or `attention` itself when it
    is already an `AbstractAttention`."""
    if isinstance(attention, AbstractAttention):
        return attention
    check_choice("attention", attention, ATTENTIONS)
    return ATTENTIONS[attention]


class LogitInvariant(eqx.Module):
    """Theorem 1: the attention logits as a function of the projected MLP weights V.

    The prediction itself is the attention form's (`AbstractAttention.predict`); this holds its
    numbers. `V` is `(M_c, K)` with column k = v_k. Build one from an initial state with
    `LogitInvariant.from_initial`.

    **Fields:**

    - `attention`: the attention form.
    - `c`: the constant vector fixed by initialisation, shape `(M_c,)`.
    - `lr_ratio`: η_z / η_w.
    - `temperature`: T.
    - `b_bar`: b̄, the mean attention held fixed (`None` for forms without one).
    - `branch`: the sign of z (linear attention only; `None` otherwise).
    """

    attention: AbstractAttention
    c: jax.Array
    lr_ratio: jax.Array
    temperature: jax.Array
    b_bar: jax.Array | None = None
    branch: jax.Array | None = None

    def __check_init__(self):
        check_positive("lr_ratio", self.lr_ratio)
        check_positive("temperature", self.temperature)

    @classmethod
    def from_initial(
        cls,
        attention: "str | AbstractAttention",
        V0: jax.Array,
        z0: jax.Array,
        *,
        lr_ratio: float = 1.0,
        temperature: float = 1.0,
        b_bar: jax.Array | None = None,
    ) -> "LogitInvariant":
        """The invariant whose constant makes the prediction exact at the initial state.

        **Arguments:**

        - `attention`: the attention form, or its name.
        - `V0`: initial projected weights, `(M_c, K)`.
        - `z0`: initial logits, `(M_c,)`.
        - `lr_ratio`, `temperature`: as the fields.
        - `b_bar`: b̄, required by forms that hold a mean attention fixed (softmax).

        **Returns:**

        A `LogitInvariant` with `predict(V0) == z0`.
        """
        attention = get_attention(attention)
        if jnp.shape(z0) != jnp.shape(V0)[:1]:
            raise ShapeMismatchError(f"z0 has shape {jnp.shape(z0)}; expected {jnp.shape(V0)[:1]} to match V0")
        if attention.holds_mean_attention and b_bar is None:
            raise InvalidChoiceError(f"the {attention.name} invariant needs b_bar (the average attention)")
        lr_ratio = jnp.asarray(lr_ratio, dtype=jnp.result_type(float))
        temperature = jnp.asarray(temperature, dtype=jnp.result_type(float))
        unset = cls(attention, jnp.zeros_like(z0), lr_ratio, temperature, b_bar if attention.holds_mean_attention else None)
        c, branch = attention.constant(unset, V0, z0)
        return cls(attention, c, lr_ratio, temperature, unset.b_bar, branch)

    @property
    def kappa(self) -> jax.Array:
        """κ = η_z / (2 η_w T), the factor of the exp and softmax invariants."""
        return self.lr_ratio / (2.0 * self.temperature)

    def terms(self, V: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The two parts (ẑ₁, ẑ₂) of an additive prediction (ẑ₂ = 0 for exp attention); the
        full prediction is ẑ₁ + ẑ₂ + c.

        **Raises:**

        `InvalidChoiceError` for a form whose prediction is not additive (linear attention).
        """
        if not isinstance(self.attention, AbstractAdditiveAttention):
            raise InvalidChoiceError(f"attention={self.attention.name!r} has no additive split; use predict or residual")
        return self.attention.terms(self, V)

    def predict(self, V: jax.Array) -> jax.Array:
        """The predicted logits ẑ(V), shape `(M_c,)`."""
        return self.attention.predict(self, V)

    def residual(self, V: jax.Array, z: jax.Array) -> jax.Array:
        """How far `(V, z)` is from the invariant: z − ẑ(V) (additive forms) or z² − κ'Σv² − c
        (linear). Zero along the exact joint flow for exp and linear attention."""
        return self.attention.residual(self, V, z)
