"""MLP activations φ with their derivatives φ' (JOMA_MATH §1.1, J2), as strategy objects.

Configs name an activation (`"relu"`); the flows, the block and the models hold the object
(`get_activation` resolves a name, and passes an object through), so the vector fields call it
rather than look a name up.
"""

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._errors import OutOfRangeError, check_choice


class AbstractActivation(eqx.Module):
    """An element-wise activation φ and its derivative φ'.

    **Class attributes:**

    - `name`: the name it is registered under in `ACTIVATIONS`.
    - `linear`: whether φ is the identity (the linear-activation theory applies).
    """

    name: ClassVar[str]
    linear: ClassVar[bool] = False

    @abc.abstractmethod
    def fn(self, x: jax.Array) -> jax.Array:
        """φ(x)."""

    @abc.abstractmethod
    def derivative(self, x: jax.Array) -> jax.Array:
        """φ'(x)."""


class Linear(AbstractActivation):
    """φ(x) = x."""

    name: ClassVar[str] = "linear"
    linear: ClassVar[bool] = True

    def fn(self, x):
        return x

    def derivative(self, x):
        return jnp.ones_like(x)


class ReLU(AbstractActivation):
    """φ(x) = max(x, 0), with φ'(0) = 0."""

    name: ClassVar[str] = "relu"

    def fn(self, x):
        return jax.nn.relu(x)

    def derivative(self, x):
        return (x > 0).astype(x.dtype)


class SiLU(AbstractActivation):
    """φ(x) = x σ(x)."""

    name: ClassVar[str] = "silu"

    def fn(self, x):
        return jax.nn.silu(x)

    def derivative(self, x):
        sigma = jax.nn.sigmoid(x)
        return sigma * (1.0 + x * (1.0 - sigma))


class GELU(AbstractActivation):
    """φ(x) = x Φ(x), the exact (erf-based) GELU."""

    name: ClassVar[str] = "gelu"

    def fn(self, x):
        return jax.nn.gelu(x, approximate=False)

    def derivative(self, x):
        cdf = 0.5 * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))
        pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return cdf + x * pdf


ACTIVATIONS: dict[str, AbstractActivation] = {form.name: form for form in (Linear(), ReLU(), SiLU(), GELU())}
"""The activations by name."""


def check_activations(name: str, values) -> None:
    """Raises `OutOfRangeError` naming `name` unless every one of `values` names an activation of
    `ACTIVATIONS` (the `check` of a setting that lists activations)."""
    for value in values:
        if value not in ACTIVATIONS:
            raise OutOfRangeError(f"{name} contains {value!r}; each must be one of {', '.join(ACTIVATIONS)}")


def get_activation(activation: "str | AbstractActivation") -> AbstractActivation:
    """An activation by name, or the activation itself.

    **Arguments:**

    - `activation`: one of `"linear"`, `"relu"`, `"silu"`, `"gelu"` (exact, erf-based GELU), or an
      `AbstractActivation`.

    **Returns:**

    The `AbstractActivation`. Raises `InvalidChoiceError` for any other name.
    """
    if isinstance(activation, AbstractActivation):
        return activation
    check_choice("activation", activation, ACTIVATIONS)
    return ACTIVATIONS[activation]
