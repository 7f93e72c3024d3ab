"""Comparisons of trajectories given as arrays: Theorem 1 curves and agreement between two runs.

Nothing here integrates or trains; every function takes the arrays of one trajectory (time on the
leading axis) and returns curves over time.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .attention import LogitInvariant
from .metrics import normalized_correlation


def logits_and_weights(flow, ys) -> tuple[jax.Array, jax.Array]:
    """The attention logits z `(n, M_c)` and projected weights V `(n, M_c, K)` along the saved
    states `ys` of a block flow (`JointFlow` or `ReducedFlow`)."""
    return jax.vmap(flow.logits)(ys), jax.vmap(flow.projected_weights)(ys)


def theorem1_curves(invariant: LogitInvariant, V: jax.Array, z: jax.Array) -> dict[str, jax.Array]:
    """How well Theorem 1 predicts the logits along one trajectory (the Fig. 2 curves).

    **Arguments:**

    - `invariant`: the `LogitInvariant` fixed at the initial state.
    - `V`: projected MLP weights over time, `(n, M_c, K)`.
    - `z`: attention logits over time, `(n, M_c)`.

    **Returns:**

    `nc_zhat_z` = NC(ẑ, z), `invariant_residual` (`(n, M_c)`), `z_hat`, and for exp/softmax
    attention also `nc_zhat1_z`, `nc_zhat2_z` (the two parts of ẑ against z).
    """
    z_hat = jax.vmap(invariant.predict)(V)
    curves = {
        "z_hat": z_hat,
        "nc_zhat_z": normalized_correlation(z_hat, z),
        "invariant_residual": jax.vmap(invariant.residual)(V, z),
    }
    if invariant.attention.additive:
        zhat1, zhat2 = jax.vmap(invariant.terms)(V)
        curves["nc_zhat1_z"] = normalized_correlation(zhat1, z)
        curves["nc_zhat2_z"] = normalized_correlation(zhat2, z)
    return curves


def agreement_curves(name: str, z: jax.Array, V: jax.Array, z_ref: jax.Array, V_ref: jax.Array) -> dict[str, jax.Array]:
    """How closely one trajectory of (z, V) follows a reference trajectory, at every time.

    **Arguments:**

    - `name`: suffix of the returned keys (e.g. `"ode"` or `"reduced"`).
    - `z`, `V`: the trajectory, `(n, M_c)` and `(n, M_c, K)`.
    - `z_ref`, `V_ref`: the reference (e.g. the trained model), same shapes.

    **Returns:**

    `nc_{name}_z` and `nc_{name}_V` (normalized correlation, V flattened), and `relerr_{name}_z`
    = ‖z − z_ref‖ / ‖z_ref‖, each `(n,)`.
    """
    flat = lambda a: jnp.reshape(a, (a.shape[0], -1))  # noqa: E731
    error = jnp.linalg.norm(z - z_ref, axis=-1)
    scale = jnp.linalg.norm(z_ref, axis=-1)
    return {
        f"nc_{name}_z": normalized_correlation(z, z_ref),
        f"nc_{name}_V": normalized_correlation(flat(V), flat(V_ref)),
        f"relerr_{name}_z": error / jnp.where(scale > 0, scale, 1.0),
    }


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


def final_values(results: dict, last: np.ndarray, prefixes: tuple[str, ...] = ("nc_", "relerr_")) -> dict[str, list]:
    """Per seed, the value of every curve whose name starts with one of `prefixes` at index `last`.

    **Arguments:**

    - `results`: arrays `(S, n)` keyed by name (other entries are ignored).
    - `last`: `(S,)` the save index to read for each seed (the last one it reached).

    **Returns:**

    A dict of lists, one value per seed.
    """
    rows = np.arange(len(last))
    return {
        name: np.asarray(values)[rows, last].tolist()
        for name, values in sorted(results.items())
        if name.startswith(prefixes) and np.ndim(values) == 2
    }
