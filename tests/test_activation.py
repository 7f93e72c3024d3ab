import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js

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
