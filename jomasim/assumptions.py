"""How fast a state of the §3.5 block leaves Theorem 1's invariant, and why (JOMA_MATH §2.3, §8.1).

Along the joint flow the invariant residual r(V, z) (`LogitInvariant.residual`) changes at the
rate ṙ = ∂r/∂V · V̇ + ∂r/∂z · ż. For exp and linear attention Theorem 1 is exact and ṙ = 0. For
softmax attention (J11) it holds only under two assumptions, and the rate splits exactly into
what each of them misses. With B the attention per class (column b_y), R the back-propagated
signal g_{h_k} h'_k per class (row y) and hidden node (column k), S = V Rᵀ (column y:
Σ_k g_{h_k} h'_k v_k for class y), a_y = b_yᵀ S_y, b̄(t) = E[b] the mean attention over classes and
b̄ the constant of the invariant (x̄, the attention at uniform logits):

    ṙ = ż − ẑ̇ = −(η_z / T) [ (Σ_y a_y b_y − b̄(t) Σ_y a_y)  +  (b̄(t) − b̄) Σ_y a_y ]
                              factorisation gap                 drift of b̄

The first part is how far E[Σ_k g h' b bᵀ v_k] is from b̄(t) E[Σ_k g h' bᵀ v_k] (the factorisation
assumption, measured with v_k inside the sum as it enters ż: the shorthand E[Σ_k g h' b bᵀ] sums
over k first, which for a cross-entropy head and a linear activation is zero, Σ_k g_{h_k} = 0);
the second is what holding b̄ fixed misses while the attention moves.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .attention import LogitInvariant
from .block import block_hidden, hidden_loss
from .theory import JointFlow


class LeakCurves(NamedTuple):
    """How fast a state leaves Theorem 1's invariant (`state_leak`; curves under `leak_curves`):
    `invariant_leak` = ‖ṙ‖ / ‖∂r/∂z · ż‖ (0 where Theorem 1 is exact) and, for a form that holds
    a mean attention fixed (softmax; `None` otherwise), `bbar_drift` = ‖b̄(t) − b̄‖ / ‖b̄‖ and the
    two parts of ṙ on the same scale, `leak_factorization` and `leak_bbar` (see the module
    docstring)."""

    invariant_leak: jax.Array
    bbar_drift: jax.Array | None = None
    leak_factorization: jax.Array | None = None
    leak_bbar: jax.Array | None = None


def _relative(vector: jax.Array, scale: jax.Array) -> jax.Array:
    """‖vector‖ / scale (‖vector‖ itself where the scale is zero)."""
    return jnp.linalg.norm(vector) / jnp.where(scale > 0, scale, 1.0)


def _backpropagated(joint: JointFlow, W: jax.Array, z: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The signal g_{h_k} h'_k per class and hidden node (`(K, K)`, −∂L/∂hidden) and the joint
    field (Ẇ, ż) it gives through the block: `JointFlow`'s field, sharing one backward pass."""
    hidden, pullback = jax.vjp(
        lambda weights, logits: block_hidden(weights, logits, joint.data, attention=joint.attention_form,
                                             temperature=joint.temperature), W, z)
    signal = -jax.grad(hidden_loss)(hidden, joint.activation)
    W_gradient, z_gradient = pullback(signal)
    return signal, (joint.eta_w * W_gradient, joint.eta_z * z_gradient)


def _softmax_parts(joint: JointFlow, invariant: LogitInvariant, W: jax.Array, z: jax.Array,
                   signal: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    B = joint.attention_form.weights(z, joint.data.X, joint.temperature)
    a = jnp.sum(B * ((joint.data.U_c.T @ W) @ signal.T), axis=0)
    b_mean = jnp.mean(B, axis=1)
    return B @ a - b_mean * jnp.sum(a), (b_mean - invariant.b_bar) * jnp.sum(a), b_mean


def softmax_leak_parts(joint: JointFlow, invariant: LogitInvariant, W: jax.Array,
                       z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The two parts of the softmax invariant's rate ṙ at one state (see the module docstring).

    **Arguments:** as `state_leak`, with softmax attention.

    **Returns:**

    `(factorization, drift, b_mean)`: ṙ = −(η_z / T)(factorization + drift), each `(M_c,)`, and
    b̄(t), the mean attention over classes.
    """
    return _softmax_parts(joint, invariant, W, z, _backpropagated(joint, W, z)[0])


def state_leak(joint: JointFlow, invariant: LogitInvariant, W: jax.Array, z: jax.Array) -> LeakCurves:
    """How fast the joint flow leaves the invariant at one state, relative to how fast z moves.

    **Arguments:**

    - `joint`: the joint flow (its data, attention, activation, rates and temperature).
    - `invariant`: Theorem 1 for that flow (`joint.invariant(y0)`).
    - `W`: MLP weights `(d, K)`; `z`: attention logits `(M_c,)`.

    **Returns:**

    `LeakCurves` of scalars.
    """
    signal, (W_rate, z_rate) = _backpropagated(joint, W, z)
    V, V_rate = joint.data.U_c.T @ W, joint.data.U_c.T @ W_rate
    _, residual_rate = jax.jvp(invariant.residual, (V, z), (V_rate, z_rate))
    _, logit_part = jax.jvp(lambda logits: invariant.residual(V, logits), (z,), (z_rate,))
    scale = jnp.linalg.norm(logit_part)
    leak = _relative(residual_rate, scale)
    if invariant.b_bar is None:
        return LeakCurves(leak)
    factorization, drift, b_mean = _softmax_parts(joint, invariant, W, z, signal)
    rate = joint.eta_z / joint.temperature
    return LeakCurves(
        leak,
        bbar_drift=_relative(b_mean - invariant.b_bar, jnp.linalg.norm(invariant.b_bar)),
        leak_factorization=_relative(rate * factorization, scale),
        leak_bbar=_relative(rate * drift, scale),
    )


def leak_curves(joint: JointFlow, invariant: LogitInvariant, W: jax.Array, z: jax.Array) -> LeakCurves:
    """`state_leak` along a trajectory: `W` `(n, d, K)`, `z` `(n, M_c)`; every curve `(n,)`."""
    return jax.vmap(lambda weights, logits: state_leak(joint, invariant, weights, logits))(W, z)
