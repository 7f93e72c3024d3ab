"""Closed-form simplifications of JoMA: the linear-activation flow (J15, J17) and the nonlinear
toy (J22, J23) with its normalised variant (the authors' Fig. 4 code)."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._errors import ShapeMismatchError, check_finite, check_positive
from ._flows import AbstractFlow, as_float


class SalienceFlow(AbstractFlow):
    """Linear activation, exp attention, stationary back-propagated gradient (J15, J17).

        V̇ = η_w diag(exp(z)) Δ,    z = κ (V ∘ V) 1 + c,    state y = V `(M_c, K)`

    The paper's form has κ = ½ (η_z = η_w, T = 1); in general κ = η_z / (2 η_w T). With K = 1 this
    is (J15), solved by `erf_solution`; from V(0) = 0 the solution is `matrix_solution` (J18–J19).
    Every component blows up in finite time: integrate with `simulate(..., blowup=...)`.
    """

    delta: jax.Array
    eta_w: jax.Array
    kappa: jax.Array
    c: jax.Array

    def __init__(self, delta: jax.Array, *, eta_w: float = 1.0, kappa: float = 0.5, c: jax.Array | float = 0.0):
        """**Arguments:**

        - `delta`: the salience Δ = E[x gᵀ], `(M_c, K)` (see `TokenData.salience`).
        - `eta_w`: learning rate (> 0).
        - `kappa`: κ > 0.
        - `c`: the invariant's constant, scalar or `(M_c,)`.
        """
        if jnp.ndim(delta) != 2:
            raise ShapeMismatchError(f"delta has shape {jnp.shape(delta)}; expected a matrix (M_c, K)")
        check_finite("delta", delta)
        check_positive("eta_w", eta_w)
        check_positive("kappa", kappa)
        check_finite("c", c)
        self.delta = as_float(delta)
        self.eta_w = as_float(eta_w)
        self.kappa = as_float(kappa)
        self.c = jnp.broadcast_to(as_float(c), jnp.shape(delta)[:1])

    def __call__(self, t, V, args):
        return self.eta_w * jnp.exp(self.logits(V))[:, None] * self.delta

    def logits(self, V) -> jax.Array:
        return self.kappa * jnp.sum(V**2, axis=1) + self.c

    def attention(self, V) -> jax.Array:
        return jax.nn.softmax(self.logits(V))


class NonlinearToyFlow(AbstractFlow):
    """The nonlinear-activation toy with self-attention (J22, J23) and its normalised variant.

        v̇ = λ (μ − v) ∘ exp(v² / T)              (normalized=False; J23 with τ = T/2)
        v̇ = λ (μ − v) ∘ softmax(v² / T)          (normalized=True; the authors' Fig. 4 code)

    The paper's equation (J22) is T = 2; the Fig. 4 code uses the normalised form with T = 3. The
    two forms trace the same path in v-space for equal T (the softmax only rescales time). The
    attention is softmax(v² / T).
    """

    mu: jax.Array
    rate: jax.Array
    temperature: jax.Array
    normalized: bool = eqx.field(static=True)

    def __init__(self, mu: jax.Array, *, rate: float = 1.0, temperature: float = 2.0, normalized: bool = False):
        """**Arguments:**

        - `mu`: the per-token targets μ, `(M_c,)`.
        - `rate`: λ > 0.
        - `temperature`: T > 0.
        - `normalized`: use softmax(v²/T) instead of exp(v²/T).
        """
        if jnp.ndim(mu) != 1:
            raise ShapeMismatchError(f"mu has shape {jnp.shape(mu)}; expected a vector (M_c,)")
        check_finite("mu", mu)
        check_positive("rate", rate)
        check_positive("temperature", temperature)
        self.mu = as_float(mu)
        self.rate = as_float(rate)
        self.temperature = as_float(temperature)
        self.normalized = normalized

    def __call__(self, t, v, args):
        logits = self.logits(v)
        gain = jax.nn.softmax(logits) if self.normalized else jnp.exp(logits)
        return self.rate * (self.mu - v) * gain

    def logits(self, v) -> jax.Array:
        return v**2 / self.temperature

    def attention(self, v) -> jax.Array:
        return jax.nn.softmax(self.logits(v))
