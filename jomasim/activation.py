"""MLP activations φ with their derivatives φ' (JOMA_MATH §1.1, J2)."""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._errors import OutOfRangeError, check_choice


class Activation(NamedTuple):
    """An activation function and its derivative, both element-wise.

    **Fields:**

    - `name`: the name it is registered under.
    - `fn`: φ(x).
    - `derivative`: φ'(x).
    - `linear`: whether φ is the identity (the linear-activation theory applies).
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array]
    linear: bool


def _silu_derivative(x: jax.Array) -> jax.Array:
    sigma = jax.nn.sigmoid(x)
    return sigma * (1.0 + x * (1.0 - sigma))


def _gelu_derivative(x: jax.Array) -> jax.Array:
    cdf = 0.5 * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))
    pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", lambda x: x, jnp.ones_like, True),
    "relu": Activation("relu", jax.nn.relu, lambda x: (x > 0).astype(x.dtype), False),
    "silu": Activation("silu", jax.nn.silu, _silu_derivative, False),
    "gelu": Activation("gelu", lambda x: jax.nn.gelu(x, approximate=False), _gelu_derivative, False),
}


def check_activations(name: str, values) -> None:
    """Raises `OutOfRangeError` naming `name` unless every one of `values` names an activation of
    `ACTIVATIONS` (the `check` of a setting that lists activations)."""
    for value in values:
        if value not in ACTIVATIONS:
            raise OutOfRangeError(f"{name} contains {value!r}; each must be one of {', '.join(ACTIVATIONS)}")


def get_activation(name: str) -> Activation:
    """Looks up an activation by name.

    **Arguments:**

    - `name`: one of `"linear"`, `"relu"`, `"silu"`, `"gelu"` (exact, erf-based GELU).

    **Returns:**

    The `Activation`. Raises `InvalidChoiceError` for any other name.
    """
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]
