"""Comparisons of trajectories given as arrays: Theorem 1 curves and agreement between two runs.

Nothing here integrates or trains; every function takes the arrays of one trajectory (time on the
leading axis) and returns curves over time.

Every prediction of the logits is judged in direction *and* size (JOMA_MATH §10.1): the normalized
correlation NC(ẑ, z) is scale-free and anchored (ẑ(0) = z(0)), so beside it stand the displacement
form NC(Δẑ, Δz), with Δ the change since the first save, and the size ratio ‖Δẑ‖ / ‖Δz‖, both
centred over tokens (softmax attention does not see a common shift of the logits). A prediction
8× too large scores NC 1 and size 8; a rotated one of the right size the reverse.
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from .attention import LogitInvariant
from .metrics import mean_attention_entropy, normalized_correlation


def logits_and_weights(flow, ys) -> tuple[jax.Array, jax.Array]:
    """The attention logits z `(n, M_c)` and projected weights V `(n, M_c, K)` along the saved
    states `ys` of a block flow (`JointFlow` or `ReducedFlow`)."""
    return jax.vmap(flow.logits)(ys), jax.vmap(flow.projected_weights)(ys)


def _centred_norm(a: jax.Array) -> jax.Array:
    """‖a − mean over tokens‖ along the last axis."""
    return jnp.linalg.norm(a - jnp.mean(a, axis=-1, keepdims=True), axis=-1)


def displacement(z: jax.Array, z_ref: jax.Array) -> tuple[jax.Array, jax.Array]:
    """How the change of one trajectory of logits since its first save compares with a
    reference's, at every save.

    **Arguments:**

    - `z`: the trajectory (a prediction or a run), `(n, M_c)`.
    - `z_ref`: the reference, `(n, M_c)`.

    **Returns:**

    `(nc, size)`, each `(n,)`: NC(Δz, Δz_ref) and the size ratio ‖Δz‖ / ‖Δz_ref‖ (centred over
    tokens). Both are NaN where the reference has not moved (at the first save): there is nothing
    to predict there.
    """
    moved, moved_ref = z - z[:1], z_ref - z_ref[:1]
    scale = _centred_norm(moved_ref)
    still = ~(scale > 0)
    size = _centred_norm(moved) / jnp.where(still, 1.0, scale)
    return (jnp.where(still, jnp.nan, normalized_correlation(moved, moved_ref)), jnp.where(still, jnp.nan, size))


class Prediction(NamedTuple):
    """One prediction ẑ of the logits along a trajectory, judged against the trajectory's z at
    every save (each curve `(n,)`; the first save of the displacement curves is NaN).

    **Fields:**

    - `z_hat`: the prediction, `(n, M_c)`.
    - `nc`: NC(ẑ, z); `nc_displacement`: NC(Δẑ, Δz); `size`: ‖Δẑ‖ / ‖Δz‖ (centred).
    - `entropy`: the attention entropy the prediction implies (mean over classes), to set beside
      the trajectory's own.
    """

    z_hat: jax.Array
    nc: jax.Array
    nc_displacement: jax.Array
    size: jax.Array
    entropy: jax.Array


def judge(z_hat: jax.Array, z: jax.Array, entropy_of: Callable[[jax.Array], jax.Array]) -> Prediction:
    """The `Prediction` of `z_hat` `(n, M_c)` against `z` `(n, M_c)`; `entropy_of` maps one vector
    of logits to its mean attention entropy."""
    return Prediction(z_hat, normalized_correlation(z_hat, z), *displacement(z_hat, z), jax.vmap(entropy_of)(z_hat))


def integrated_prediction(invariant: LogitInvariant, V: jax.Array, z: jax.Array, X: jax.Array, *,
                          track_mean: bool = False, preconditioner: jax.Array | None = None,
                          weights: jax.Array | None = None) -> jax.Array:
    """Theorem 1 in differential form along a saved path (JOMA_MATH §9.3, §10.2):
    z(t) = z(0) + ∫ P dẑ, summed over the intervals between saves by the trapezoid rule.

    **Arguments:**

    - `invariant`: the additive `LogitInvariant` (its constant does not enter: only increments do).
    - `V`, `z`: the path's projected weights `(n, M_c, K)` and logits `(n, M_c)`.
    - `X`: the token frequencies `(M_c, K)`.
    - `track_mean`: hold the mean attention b̄ of each interval at the path's own (the mean of
      b̄(z) at its two ends) instead of the invariant's b̄ (x̄ for softmax).
    - `preconditioner`: P at every save `(n, M_c, M_c)` (the chain rule of learned W_Q, W_K:
      ż = −η_z P ∂L/∂z); `None` for P = I.
    - `weights`: D_W at every save `(n, M_c, K)`, the per-coordinate weights of the MLP's move
      (Adam's: gradient flow's move is D_W ∘ dV, JOMA_MATH §10.4); `None` for 1.

    **Returns:**

    The prediction `(n, M_c)`, equal to z at the first save. With `track_mean=False`, P = I and
    no weights it is the closed form ẑ(V) (to rounding).
    """
    # each interval's increment of ẑ along its move, at its midpoint: exact for the additive
    # invariants, which are quadratic in V
    middle = lambda values: (values[1:] + values[:-1]) / 2  # noqa: E731
    moves = jnp.diff(V, axis=0) if weights is None else middle(weights) * jnp.diff(V, axis=0)
    if track_mean:
        form = invariant.attention
        means = jax.vmap(lambda logits: form.mean_attention(form.weights(logits, X, invariant.temperature)))(z)
        held = lambda b_bar: eqx.tree_at(lambda inv: inv.b_bar, invariant, b_bar)  # noqa: E731
    else:
        means = jnp.zeros(V.shape[0])
        held = lambda _: invariant  # noqa: E731
    increments = jax.vmap(lambda b_bar, point, move: jax.jvp(held(b_bar).predict, (point,), (move,))[1])(
        middle(means), middle(V), moves)
    if preconditioner is not None:
        increments = jnp.einsum("nij,nj->ni", middle(preconditioner), increments)
    return z[0] + jnp.concatenate([jnp.zeros_like(z[:1]), jnp.cumsum(increments, axis=0)])


class Theorem1Curves(NamedTuple):
    """Theorem 1 along one trajectory, at every save.

    **Fields:**

    - `closed`: the paper's closed form ẑ(V) (J9–J11; b̄ held at x̄ for softmax), a `Prediction`.
    - `tracked`: the differential form with the path's own mean attention b̄(t) (forms that hold a
      b̄ fixed; `None` for the others, where it is the closed form).
    - `preconditioned`, `preconditioned_tracked`: the differential form z(0) + ∫ P dẑ with the
      measured preconditioner P(t) of learned W_Q, W_K, b̄ held and tracked (`None` without a P).
    - `nc_zhat1_z`, `nc_zhat2_z`: NC of the closed form's parts ẑ₁ (salience) and ẑ₂ (the b̄ term)
      with z; `nc_dzhat1_dz`, `nc_dzhat2_dz`: the same in displacement form, which say which part
      the logits' change follows (`None` for a form without the split; ẑ₂ `None` where it is zero,
      exp attention).
    - `invariant_residual`: z − ẑ(V) (or the form's residual), `(n, M_c)`.
    """

    closed: Prediction
    tracked: Prediction | None
    preconditioned: Prediction | None
    preconditioned_tracked: Prediction | None
    nc_zhat1_z: jax.Array | None
    nc_zhat2_z: jax.Array | None
    nc_dzhat1_dz: jax.Array | None
    nc_dzhat2_dz: jax.Array | None
    invariant_residual: jax.Array

    @property
    def nc_zhat_z(self) -> jax.Array:
        """NC(ẑ, z) of the closed form, `(n,)`."""
        return self.closed.nc

    @property
    def z_hat(self) -> jax.Array:
        """The closed form's ẑ(V), `(n, M_c)`."""
        return self.closed.z_hat

    def predictions(self) -> dict[str, Prediction]:
        """The predictions made, by the tag their output names carry (`""` for the closed form:
        `nc_zhat_z`; `_tracked`: `nc_zhat_tracked_z`; `P`: `nc_zhatP_z`; `P_tracked`)."""
        tagged = {"": self.closed, "_tracked": self.tracked, "P": self.preconditioned,
                  "P_tracked": self.preconditioned_tracked}
        return {tag: prediction for tag, prediction in tagged.items() if prediction is not None}


def theorem1_curves(invariant: LogitInvariant, V: jax.Array, z: jax.Array, X: jax.Array,
                    preconditioner: jax.Array | None = None,
                    preconditioned_invariant: LogitInvariant | None = None,
                    weights: jax.Array | None = None) -> Theorem1Curves:
    """How well Theorem 1 predicts the logits along one trajectory (the Fig. 2 curves), in
    direction and size.

    **Arguments:**

    - `invariant`: the `LogitInvariant` fixed at the initial state.
    - `V`: projected MLP weights over time, `(n, M_c, K)`.
    - `z`: attention logits over time, `(n, M_c)`.
    - `X`: the token frequencies `(M_c, K)`, for the attention a prediction implies.
    - `preconditioner`: the measured P(t) `(n, M_c, M_c)` of learned W_Q, W_K, or `None`.
    - `preconditioned_invariant`: the invariant the P forms integrate (default `invariant`); its
      rate ratio is the optimizer's η_z/η_w, which P multiplies.
    - `weights`: the MLP's per-coordinate weights D_W of the P forms `(n, M_c, K)`
      (`integrated_prediction`), or `None`.

    **Returns:**

    The `Theorem1Curves`.
    """
    form = invariant.attention

    def entropy_of(logits):
        return mean_attention_entropy(form.distribution(logits, X, invariant.temperature))

    closed = judge(jax.vmap(invariant.predict)(V), z, entropy_of)
    parts = (None,) * 4
    if form.additive:
        zhat1, zhat2 = jax.vmap(invariant.terms)(V)
        part2 = form.holds_mean_attention
        parts = (normalized_correlation(zhat1, z), normalized_correlation(zhat2, z) if part2 else None,
                 displacement(zhat1, z)[0], displacement(zhat2, z)[0] if part2 else None)
    tracking = form.additive and form.holds_mean_attention

    def integrated(inv, track, rate, scale=None):
        return judge(integrated_prediction(inv, V, z, X, track_mean=track, preconditioner=rate, weights=scale), z,
                     entropy_of)

    tracked = integrated(invariant, True, None) if tracking else None
    preconditioned = preconditioned_tracked = None
    if preconditioner is not None and form.additive:
        inv = invariant if preconditioned_invariant is None else preconditioned_invariant
        preconditioned = integrated(inv, False, preconditioner, weights)
        preconditioned_tracked = integrated(inv, True, preconditioner, weights) if tracking else None
    return Theorem1Curves(closed, tracked, preconditioned, preconditioned_tracked, *parts,
                          jax.vmap(invariant.residual)(V, z))


def cumulative_trapezoid(rates: jax.Array, times: jax.Array) -> jax.Array:
    """∫ rate dt from the first time to each time, by the trapezoid rule between them: `rates`
    `(n, ...)` at `times` `(n,)`; the result has the shape of `rates` and starts at 0."""
    widths = jnp.reshape(jnp.diff(times), (-1,) + (1,) * (rates.ndim - 1))
    increments = (rates[1:] + rates[:-1]) / 2 * widths
    return jnp.concatenate([jnp.zeros_like(rates[:1]), jnp.cumsum(increments, axis=0)])


def carried_shares(z: jax.Array, rates: jax.Array, times: jax.Array) -> jax.Array:
    """How much of the logits' change since the start each part of their rate carries.

    **Arguments:**

    - `z`: the logits at the saves, `(n, M_c)`.
    - `rates`: each part's ż at the saves, `(n, P, M_c)` (e.g. −η_z P ∂L/∂z along each path of a
      LayerNorm).
    - `times`: the saves' times, `(n,)`.

    **Returns:**

    `(n, P)`: ⟨Δz_part, Δz⟩ / ‖Δz‖² with Δz_part the part's rate summed over the saves by the
    trapezoid rule, both centred over tokens; the shares add up to 1 where the parts are the whole
    rate and the saves resolve it; NaN at the first save.
    """
    carried = cumulative_trapezoid(rates, times)
    centre = lambda a: a - jnp.mean(a, axis=-1, keepdims=True)  # noqa: E731
    moved = centre(z - z[:1])
    scale = jnp.sum(moved**2, axis=-1)
    shares = jnp.sum(centre(carried) * moved[:, None, :], axis=-1) / jnp.where(scale > 0, scale, 1.0)[:, None]
    return jnp.where((scale > 0)[:, None], shares, jnp.nan)


class Agreement(NamedTuple):
    """One trajectory against a reference at every time: NC of z and of V (flattened), the
    relative errors ‖z − z_ref‖ / ‖z_ref‖ and ‖V − V_ref‖ / ‖V_ref‖ (Frobenius), the displacement
    NC(Δz, Δz_ref) and size ratio ‖Δz‖ / ‖Δz_ref‖ (`displacement`), each `(n,)`, and the index at
    which it parts from the reference (`parting_index`, −1 if never)."""

    nc_z: jax.Array
    nc_V: jax.Array
    relerr_z: jax.Array
    relerr_V: jax.Array
    nc_dz: jax.Array
    size_z: jax.Array
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
                     relative_error(flat(V), flat(V_ref)), *displacement(z, z_ref), parting_index(nc_z, last))


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
