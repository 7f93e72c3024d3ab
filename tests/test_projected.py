"""The block flows in projected coordinates: the closed-form field against the autodiff field, and
solves in projected coordinates against solves in W."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.theory._simulate import _solve_one, _solve_solved

SAVES = jnp.linspace(0.0, 60.0, 7)


@pytest.mark.parametrize("attention, activation", list(itertools.product(js.ATTENTIONS, ("linear", "relu", "silu", "gelu"))))
def test_closed_form_field_is_the_autodiff_field_projected(attention, activation):
    """At random states (random embeddings, so that U is not a coordinate projection), every form
    and activation: Uᵀ Ẇ and ż of the autodiff field equal the closed form to 1e-12."""
    for seed in range(3):
        data = js.make_token_data(seed, embedding="random", n_distinct=5, n_common=4, n_classes=6, dim=13)
        joint = js.JointFlow(data, attention=attention, activation=activation, temperature=0.7, eta_w=0.3, eta_z=1.9)
        W, z = joint.initial_state(jax.random.key(seed), 0.8)
        W_rate, z_rate = joint(0.0, (W, z), None)
        P_rate, z_rate_projected = joint.projected_rate(0.0, joint.project((W, z)))
        np.testing.assert_allclose(P_rate, data.U.T @ W_rate, rtol=0, atol=1e-12)
        np.testing.assert_allclose(z_rate_projected, z_rate, rtol=0, atol=1e-12)
        # the part of Ẇ outside the span of U is zero: W's part there never moves
        np.testing.assert_allclose(W_rate - data.U @ (data.U.T @ W_rate), 0.0, atol=1e-14)


def _flows(embedding: str):
    data = js.make_token_data(4, embedding=embedding, n_distinct=5, n_common=4, n_classes=6, dim=13)
    joint = js.JointFlow(data, activation="silu", temperature=0.5, eta_z=2.0)
    y0 = joint.initial_state(jax.random.key(1), 0.3)
    return [(joint, y0), (js.ReducedFlow.from_joint(joint, y0), y0[0]), (js.TrackedMeanFlow.from_joint(joint), y0),
            (js.ScheduledReducedFlow(data, [2.0, 0.5], [30.0], activation="silu", temperature=0.5), y0)]


def _both(flow, y0, options):
    """The solve in W's coordinates (the field itself) and in projected ones."""
    in_W = jax.jit(lambda f, y: _solve_one(f, y, SAVES, 0.0, options, False))(flow, y0)
    projected = jax.jit(lambda f, y: _solve_solved(f, y, SAVES, 0.0, options, False))(flow, y0)
    return in_W, projected


@pytest.mark.slow
@pytest.mark.parametrize("embedding, options", [("identity", js.SolverOptions()),
                                                ("random", js.SolverOptions(solver="euler", dt0=0.5))])
def test_projected_solves_are_the_solves_in_W(embedding, options):
    """With a coordinate projection (identity embeddings) the adaptive controller sees the same
    errors and takes the same steps; with fixed steps any orthonormal embedding gives the same
    states. Either way the solves agree to rounding, and the part of W outside U is W(0)'s."""
    for flow, y0 in _flows(embedding):
        (ys_W, t_W, status_W, stats_W), (ys_P, t_P, status_P, stats_P) = _both(flow, y0, options)
        # the closed form rounds differently from autodiff; the scheduled ratio's jump at its knot
        # makes the adaptive controller amplify that rounding (to 1e-10 here), the smooth flows do not
        tolerance = 1e-9 if isinstance(flow, js.ScheduledReducedFlow) and options.solver != "euler" else 1e-12
        for a, b in zip(jax.tree_util.tree_leaves(ys_W), jax.tree_util.tree_leaves(ys_P)):
            np.testing.assert_allclose(b, a, rtol=0, atol=tolerance)
        assert int(stats_W[0]) == int(stats_P[0]) and int(status_W) == int(status_P) == js.Status.OK
        W = flow.weights(jax.tree_util.tree_map(lambda leaf: leaf[-1], ys_P))
        U = flow.data.U
        W0 = flow.weights(y0)
        np.testing.assert_allclose(W - U @ (U.T @ W), W0 - U @ (U.T @ W0), atol=1e-14)


@pytest.mark.slow
def test_projected_solves_with_any_embedding_agree_to_tolerance():
    """With random embeddings the controller's per-entry scaling is not rotation-invariant, so
    the adaptive steps differ; the states still agree to the tolerance."""
    for flow, y0 in _flows("random")[:2]:
        (ys_W, *_), (ys_P, *_) = _both(flow, y0, js.SolverOptions(rtol=1e-8, atol=1e-11))
        for a, b in zip(jax.tree_util.tree_leaves(ys_W), jax.tree_util.tree_leaves(ys_P)):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_batched_solves_lift_each_member_from_its_own_start():
    """`simulate` in both batch modes lifts every member with its own W(0)."""
    def member(key):
        joint = js.JointFlow(js.make_token_data(key, embedding="random", n_distinct=4, n_common=3, n_classes=5, dim=11),
                             temperature=0.5)
        return joint, joint.initial_state(key, 0.3)

    fields, y0s = jax.vmap(member)(jax.random.split(jax.random.key(5), 3))
    one_by_one = [js.simulate(jax.tree_util.tree_map(lambda leaf: leaf[i], fields),
                              jax.tree_util.tree_map(lambda leaf: leaf[i], y0s), SAVES) for i in range(3)]
    for mode in ("vmap", "ode"):
        batch = js.simulate(fields, y0s, SAVES, js.SolverOptions(batch=mode))
        for i, single in enumerate(one_by_one):
            np.testing.assert_allclose(batch.ys[0][i], single.ys[0], rtol=0, atol=1e-6 if mode == "ode" else 1e-12)
            np.testing.assert_allclose(batch.ys[0][i, 0], y0s[0][i], rtol=0, atol=0)
