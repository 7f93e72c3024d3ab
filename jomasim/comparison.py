"""Comparisons of trajectories given as arrays: Theorem 1 curves and agreement between two runs.

Nothing here integrates or trains; every function takes the arrays of one trajectory (time on the
leading axis) and returns curves over time.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .attention import LogitInvariant
from .metrics import normalized_correlation


def logits_and_weights(flow, ys) -> tuple[jax.Array, jax.Array]:
    """The attention logits z `(n, M_c)` and projected weights V `(n, M_c, K)` along the saved
    states `ys` of a block flow (`JointFlow` or `ReducedFlow`)."""
    return jax.vmap(flow.logits)(ys), jax.vmap(flow.projected_weights)(ys)


class Theorem1Curves(NamedTuple):
    """Theorem 1 along one trajectory, at every time: NC(ẑ, z), NC of its two parts ẑ₁ and ẑ₂
    with z for an additive form (`None` for linear attention), the residual `(n, M_c)` and the
    prediction ẑ `(n, M_c)`."""

    nc_zhat_z: jax.Array
    nc_zhat1_z: jax.Array | None
    nc_zhat2_z: jax.Array | None
    invariant_residual: jax.Array
    z_hat: jax.Array


def theorem1_curves(invariant: LogitInvariant, V: jax.Array, z: jax.Array) -> Theorem1Curves:
    """How well Theorem 1 predicts the logits along one trajectory (the Fig. 2 curves).

    **Arguments:**

    - `invariant`: the `LogitInvariant` fixed at the initial state.
    - `V`: projected MLP weights over time, `(n, M_c, K)`.
    - `z`: attention logits over time, `(n, M_c)`.

    **Returns:**

    The `Theorem1Curves`.
    """
    z_hat = jax.vmap(invariant.predict)(V)
    parts = (None, None)
    if invariant.attention.additive:
        zhat1, zhat2 = jax.vmap(invariant.terms)(V)
        parts = normalized_correlation(zhat1, z), normalized_correlation(zhat2, z)
    return Theorem1Curves(normalized_correlation(z_hat, z), *parts, jax.vmap(invariant.residual)(V, z), z_hat)


class Agreement(NamedTuple):
    """One trajectory against a reference at every time: NC of z and of V (flattened), the
    relative errors ‖z − z_ref‖ / ‖z_ref‖ and ‖V − V_ref‖ / ‖V_ref‖ (Frobenius), each `(n,)`, and
    the index at which it parts from the reference (`parting_index`, −1 if never)."""

    nc_z: jax.Array
    nc_V: jax.Array
    relerr_z: jax.Array
    relerr_V: jax.Array
    parted_index: jax.Array


def agreement(z: jax.Array, V: jax.Array, z_ref: jax.Array, V_ref: jax.Array, last: jax.Array) -> Agreement:
    """How closely one trajectory of (z, V) follows a reference trajectory, at every time.

    **Arguments:**

    - `z`, `V`: the trajectory, `(n, M_c)` and `(n, M_c, K)`.
    - `z_ref`, `V_ref`: the reference (e.g. the trained model), same shapes.
    - `last`: the last index both reached (the parting is looked for up to it).

    **Returns:**

    The `Agreement`.
    """
    flat = lambda a: jnp.reshape(a, (a.shape[0], -1))  # noqa: E731

    def relative_error(a, reference):
        scale = jnp.linalg.norm(reference, axis=-1)
        return jnp.linalg.norm(a - reference, axis=-1) / jnp.where(scale > 0, scale, 1.0)

    nc_z = normalized_correlation(z, z_ref)
    return Agreement(nc_z, normalized_correlation(flat(V), flat(V_ref)), relative_error(z, z_ref),
                     relative_error(flat(V), flat(V_ref)), parting_index(nc_z, last))


AGREEMENT = 0.99
"""Normalized correlation of the logits z at or above which a run agrees with its reference."""


def parting_index(nc: jax.Array, last: jax.Array) -> jax.Array:
    """Where a run parts from its reference: the first save, up to `last`, at which its
    normalized correlation `nc` is below `AGREEMENT` (or not finite).

    **Arguments:**

    - `nc`: a curve over the saves, `(n,)`, or one per seed, `(S, n)`.
    - `last`: the last save reached, a scalar or `(S,)`.

    **Returns:**

    The save index, −1 where the run agrees at every save up to `last`; shape of `last`.
    """
    index = jnp.arange(jnp.shape(nc)[-1])
    below = ~(jnp.asarray(nc) >= AGREEMENT) & (index <= jnp.expand_dims(jnp.asarray(last), -1))
    return jnp.where(jnp.any(below, axis=-1), jnp.argmax(below, axis=-1), -1)
