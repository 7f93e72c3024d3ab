"""The flows whose logits follow Theorem 1's rate: one final flow composed of three strategies, and
the named closures as constructors of it."""

import jax
import jax.numpy as jnp
import numpy as np

import jomasim as js


def _data():
    return js.make_token_data(3, n_distinct=4, n_common=3, n_classes=5, dim=9)


def test_a_closure_is_its_strategies():
    data = _data()
    joint = js.JointFlow(data, activation="silu", eta_w=0.7, eta_z=1.4)
    tracked = js.TrackedMeanFlow.from_joint(joint)
    scheduled = js.ScheduledReducedFlow(data, [2.0, 0.5], [4.0])
    preconditioned = js.PreconditionedReducedFlow.from_joint(joint, jnp.stack([jnp.eye(7)] * 2), jnp.array([0.0, 1.0]))
    closures = (js.TrackedMeanFlow, js.ScheduledReducedFlow, js.PreconditionedReducedFlow)
    for flow, name in zip((tracked, scheduled, preconditioned), closures):
        assert type(flow) is js.InvariantRateFlow
        assert [isinstance(flow, closure) for closure in closures] == [closure is name for closure in closures]
    assert not isinstance(joint, js.TrackedMeanFlow)
    # built from the strategies directly, it is the closure they make
    direct = js.InvariantRateFlow(data, js.FlowRatio(), js.CurrentMean(), js.GradientDrive(), activation="silu", eta_w=0.7,
                                  eta_z=1.4)
    assert isinstance(direct, js.TrackedMeanFlow)
    assert preconditioned.preconditioner(0.5).shape == (7, 7) and tracked.preconditioner(0.5) is None


class _FixedRatio(js.AbstractRateRatio):
    """A rate ratio defined here: a constant held whatever the flow's rates."""

    value: float

    def __call__(self, flow, t):
        return jnp.asarray(self.value)


def test_a_new_rate_ratio_composes_with_the_other_strategies():
    """A strategy defined outside the package makes a flow with the others: a constant ratio with
    the frequencies' mean attention is the scheduled flow of one piece, in W and in projected
    coordinates."""
    data = _data()
    joint = js.JointFlow(data, activation="gelu", temperature=0.6, eta_w=0.7)
    y0 = joint.initial_state(jax.random.key(1), 0.3)
    mine = js.InvariantRateFlow(data, _FixedRatio(3.0), js.FrequencyMean(), js.GradientDrive(), activation="gelu",
                                temperature=0.6, eta_w=0.7)
    scheduled = js.ScheduledReducedFlow(data, [3.0], [], activation="gelu", temperature=0.6, eta_w=0.7)
    for a, b in zip(mine(0.0, y0, None), scheduled(0.0, y0, None)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)
    p0 = mine.project(y0)
    for a, b in zip(mine.projected_rate(0.0, p0), scheduled.projected_rate(0.0, p0)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)
