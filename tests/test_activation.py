import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.models import JoMABlock

POINTS = jnp.array([-2.3, -0.7, -0.05, 0.05, 0.4, 1.9, 3.1])


@pytest.mark.parametrize("name", ["linear", "relu", "silu", "gelu"])
def test_derivative_matches_autodiff_and_finite_differences(name):
    activation = js.get_activation(name)
    exact = activation.derivative(POINTS)
    autodiff = jax.vmap(jax.grad(activation.fn))(POINTS)
    step = 1e-6
    central = (activation.fn(POINTS + step) - activation.fn(POINTS - step)) / (2 * step)
    np.testing.assert_allclose(exact, autodiff, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(exact, central, rtol=1e-7, atol=1e-8)


def test_values():
    np.testing.assert_allclose(js.get_activation("relu").fn(POINTS), np.maximum(POINTS, 0.0))
    np.testing.assert_allclose(js.get_activation("linear").fn(POINTS), POINTS)
    assert js.get_activation("linear").linear and not js.get_activation("gelu").linear


def test_unknown_activation_is_named():
    with pytest.raises(js.InvalidChoiceError, match="tanhh"):
        js.get_activation("tanhh")


class _Softplus(js.AbstractActivation):
    """A fifth activation, defined here: the flows take it without a name or a registry entry."""

    name = "softplus"

    def fn(self, x):
        return jax.nn.softplus(x)

    def derivative(self, x):
        return jax.nn.sigmoid(x)


def test_an_activation_defined_outside_the_package_drives_the_flows():
    """The closed-form projected field with a new activation equals the autodiff field projected,
    and the block's training model takes the same object."""
    data = js.make_token_data(1, embedding="random", n_distinct=4, n_common=3, n_classes=5, dim=11)
    joint = js.JointFlow(data, activation=_Softplus(), temperature=0.7, eta_w=0.3, eta_z=1.9)
    W, z = joint.initial_state(jax.random.key(2), 0.8)
    W_rate, z_rate = joint(0.0, (W, z), None)
    P_rate, z_rate_projected = joint.projected_rate(0.0, joint.project((W, z)))
    np.testing.assert_allclose(P_rate, data.U.T @ W_rate, rtol=0, atol=1e-12)
    np.testing.assert_allclose(z_rate_projected, z_rate, rtol=0, atol=1e-12)
    model = JoMABlock(data, W, z, attention="softmax", activation=_Softplus(), temperature=0.7)
    np.testing.assert_allclose(model(), joint.loss(W, z), rtol=1e-14)
