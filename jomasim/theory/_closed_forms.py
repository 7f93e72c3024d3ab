"""Closed-form solutions of the simplified JoMA dynamics (J16, J18–J19, J24) and blow-up times."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import OutOfRangeError, check_positive, concrete


def _broadcast_time(t: jax.Array, component: jax.Array) -> jax.Array:
    """`t` with trailing unit axes so that it broadcasts against per-component arrays."""
    t = jnp.asarray(t)
    return jnp.reshape(t, t.shape + (1,) * jnp.ndim(component))


def erf_solution(t, v0, delta, *, eta_w: float = 1.0, kappa: float = 0.5, c=0.0) -> jax.Array:
    """Solution of v̇_l = η_w Δ_l exp(κ v_l² + c_l), component by component (J15, J16).

        v_l(t) = erf⁻¹( erf(√κ v_l(0)) + 2 √(κ/π) η_w Δ_l e^{c_l} t ) / √κ

    which for κ = ½, c = 0 is the paper's √2 erf⁻¹(erf(v(0)/√2) + √(2/π) η Δ t).

    **Arguments:**

    - `t`: time(s), any shape; the result has shape `t.shape + v0.shape`.
    - `v0`, `delta`: initial values and salience per component (broadcast together).
    - `eta_w`, `kappa`, `c`: as in `SalienceFlow`.

    **Returns:**

    v(t); components past their blow-up time are ±inf.
    """
    check_positive("eta_w", eta_w)
    check_positive("kappa", kappa)
    v0, delta, c = jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.result_type(float)) for a in (v0, delta, c)))
    root = jnp.sqrt(kappa)
    arg = jax.scipy.special.erf(root * v0) + 2.0 * jnp.sqrt(kappa / math.pi) * eta_w * delta * jnp.exp(c) * _broadcast_time(t, v0)
    finite = jnp.abs(arg) < 1.0
    inside = jax.scipy.special.erfinv(jnp.where(finite, arg, 0.0)) / root
    return jnp.where(finite, inside, jnp.sign(arg) * jnp.inf)


def blowup_time(v0, delta, *, eta_w: float = 1.0, kappa: float = 0.5, c=0.0) -> jax.Array:
    """The time t*_l at which component l of `erf_solution` diverges (inf where Δ_l = 0).

        t*_l = (1 − sign(Δ_l) erf(√κ v_l(0))) / (2 √(κ/π) η_w |Δ_l| e^{c_l})

    From zero initialisation with κ = ½ this is √(π/2) / (η_w |Δ_l|).

    **Arguments / Returns:** as `erf_solution`, without `t`.
    """
    check_positive("eta_w", eta_w)
    check_positive("kappa", kappa)
    v0, delta, c = jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.result_type(float)) for a in (v0, delta, c)))
    speed = 2.0 * jnp.sqrt(kappa / math.pi) * eta_w * jnp.abs(delta) * jnp.exp(c)
    distance = 1.0 - jnp.sign(delta) * jax.scipy.special.erf(jnp.sqrt(kappa) * v0)
    return jnp.where(speed > 0, distance / jnp.where(speed > 0, speed, 1.0), jnp.inf)


def matrix_solution(t, delta, *, eta_w: float = 1.0, kappa: float = 0.5, c=0.0) -> jax.Array:
    """Solution of V̇ = η_w diag(exp(κ (V∘V) 1 + c)) Δ from V(0) = 0 (J17–J19).

    All columns share one row scaling, V(t) = diag(s(t)) Δ, and the row norms ‖Δ_l‖ obey the
    scalar law of `erf_solution`: s_l(t) ‖Δ_l‖ = erf_solution(t, 0, ‖Δ_l‖). Hence rank V(t) ≤
    rank Δ, and the row with the largest ‖Δ_l‖ blows up first.

    **Arguments:**

    - `t`: time(s), any shape; the result has shape `t.shape + delta.shape`.
    - `delta`: Δ, `(M_c, K)`.
    - `eta_w`, `kappa`, `c`: as in `SalienceFlow`.

    **Returns:**

    V(t); rows past their blow-up time are ±inf (rows with Δ_l = 0 stay 0).
    """
    delta = jnp.asarray(delta, dtype=jnp.result_type(float))
    norms = jnp.linalg.norm(delta, axis=1)
    scaled = erf_solution(t, 0.0, norms, eta_w=eta_w, kappa=kappa, c=c)
    safe = jnp.where(norms > 0, norms, 1.0)
    linear_growth = eta_w * jnp.exp(jnp.broadcast_to(jnp.asarray(c), norms.shape)) * _broadcast_time(t, norms)
    s = jnp.where(norms > 0, scaled / safe, linear_growth)
    return s[..., None] * delta


def convergence_time(mu, *, v0=0.0, eps: float = 0.01, rate: float = 1.0, temperature: float = 2.0, nodes: int = 64):
    """Time for v̇ = λ (μ − v) exp(v²/T) to go from v(0) to (1 − ε) μ (J24).

        t(ε) = ∫_{v(0)}^{(1−ε)μ} e^{−s²/T} / (λ (μ − s)) ds

    computed exactly (to quadrature precision) after the substitution s = μ − e^{−u}, which
    removes the 1/(μ − s) growth: t = (1/λ) ∫ exp(−(μ − e^{−u})²/T) du over u from −ln(μ − v(0))
    to −ln(εμ), by Gauss–Legendre quadrature. With T = 2, λ = 1, v(0) = 0, ε = 0.01:
    t = 3.32, 1.48, 0.67, 0.41 for μ = 1, 2, 3, 4.

    **Arguments:**

    - `mu`: targets μ > 0 (any shape).
    - `v0`: starting values, 0 ≤ v(0) < (1 − ε) μ.
    - `eps`: 0 < ε < 1.
    - `rate`: λ > 0; `temperature`: T > 0.
    - `nodes`: number of quadrature nodes.

    **Returns:**

    The convergence times, shaped like `mu`.
    """
    check_positive("mu", mu)
    check_positive("rate", rate)
    check_positive("temperature", temperature)
    if not 0.0 < eps < 1.0:
        raise OutOfRangeError(f"eps={eps!r} is not allowed; it must lie in (0, 1)")
    mu, v0 = jnp.broadcast_arrays(*(jnp.asarray(a, dtype=jnp.result_type(float)) for a in (mu, v0)))
    start = concrete(v0)
    if start is not None and np.any((start < 0) | (start >= (1.0 - eps) * np.asarray(mu))):
        raise OutOfRangeError(f"v0={start!r} is not allowed; it must satisfy 0 <= v0 < (1 - eps) * mu")
    points, weights = np.polynomial.legendre.leggauss(nodes)
    lower = -jnp.log(mu - v0)[..., None]
    upper = -jnp.log(eps * mu)[..., None]
    u = 0.5 * (upper - lower) * points + 0.5 * (upper + lower)
    integrand = jnp.exp(-((mu[..., None] - jnp.exp(-u)) ** 2) / temperature)
    return 0.5 * (upper[..., 0] - lower[..., 0]) * jnp.sum(weights * integrand, axis=-1) / rate
