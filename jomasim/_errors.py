"""Error types and the input checks that raise them.

Every check names the offending value and says what is allowed. Checks only look at concrete
values: inside `jax.jit` / `jax.vmap` the values are tracers and the checks pass silently (the
caller validated them before tracing, or they are derived from validated values).
"""

import functools
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


class JomasimError(Exception):
    """Base class of every error jomasim raises on purpose."""


class InvalidChoiceError(JomasimError, ValueError):
    """A name (attention kind, activation, solver, batch mode, ...) is not one of the allowed ones."""


class NonFiniteResultError(JomasimError):
    """A computation gave numbers that are not finite (it diverged or overflowed); what it computed
    was written, with those numbers named. The command line exits with code 1 (a failed run), not 2
    (a refused input)."""


class OutOfRangeError(JomasimError, ValueError):
    """A number lies outside its allowed range (learning rate <= 0, temperature <= 0, ...)."""


class ShapeMismatchError(JomasimError, ValueError):
    """An array does not have the shape the computation needs."""


class NonFiniteError(JomasimError, ValueError):
    """An input array holds NaN or infinity."""


class InvalidPathError(JomasimError, ValueError):
    """A file or folder is missing, unreadable, unwritable, or already exists."""


def concrete(value: Any) -> np.ndarray | None:
    """Returns `value` as a NumPy array, or `None` when it is a JAX tracer (no concrete value)."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raises `InvalidChoiceError` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise InvalidChoiceError(f"{name}={value!r} is not allowed; choose one of {names}")


def _numbers(name: str, value: Any) -> np.ndarray | None:
    """`value` as a numeric NumPy array (`None` for a tracer); `OutOfRangeError` if it is not numbers."""
    array = concrete(value)
    if array is not None and (array.dtype == bool or not np.issubdtype(array.dtype, np.number)):
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must be a number")
    return array


def check_positive(name: str, value: Any) -> None:
    """Raises `OutOfRangeError` unless every entry of `value` is finite and > 0."""
    array = _numbers(name, value)
    if array is None:
        return
    allowed = np.isfinite(array) & (array > 0)
    if not np.all(allowed):
        raise OutOfRangeError(f"{name}={_show(array, allowed)} is not allowed; it must be finite and > 0")


def check_integer(name: str, value: Any, *, least: int) -> None:
    """Raises `OutOfRangeError` unless `value` is a whole number >= `least` (e.g. steps, seeds)."""
    try:
        whole = not isinstance(value, bool) and float(value).is_integer() and value >= least
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must be an integer >= {least}")


def each(check):
    """The check of a tuple setting whose every entry must pass `check(name, value)`."""
    def check_each(name: str, values) -> None:
        for value in values:
            check(name, value)
    return check_each


def check_fraction(name: str, value: float) -> None:
    """Raises `OutOfRangeError` unless `value` lies strictly between 0 and 1."""
    if not 0 < value < 1:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must lie strictly between 0 and 1")


def at_least(least: int):
    """The check of an integer setting's lower bound: `check(name, value)` (`check_integer`)."""
    return functools.partial(check_integer, least=least)


SEED_RANGE = (0, 2**32 - 1)
"""The seeds a member may have: `jax.random.key` takes any of them, with or without float64."""


def check_seed(name: str, value: int) -> None:
    """Raises `OutOfRangeError` unless `value` is an integer in `SEED_RANGE`."""
    check_integer(name, value, least=SEED_RANGE[0])
    if value > SEED_RANGE[1]:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; seeds must be integers in [0, {SEED_RANGE[1]}]")


def check_nonnegative(name: str, value: Any) -> None:
    """Raises `OutOfRangeError` unless every entry of `value` is finite and >= 0."""
    array = _numbers(name, value)
    if array is None:
        return
    allowed = np.isfinite(array) & (array >= 0)
    if not np.all(allowed):
        raise OutOfRangeError(f"{name}={_show(array, allowed)} is not allowed; it must be finite and >= 0")


def check_finite(name: str, value: Any) -> None:
    """Raises `NonFiniteError` if `value` holds NaN or infinity."""
    array = concrete(value)
    if array is None:
        return
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteError(f"{name} holds {bad} NaN/infinite entries; all entries must be finite")


def _show(array: np.ndarray, allowed: np.ndarray) -> str:
    """The offending value (a scalar, or the first bad entry of an array) for error messages."""
    if array.ndim == 0:
        return repr(array.item())
    index = tuple(int(i) for i in np.argwhere(~allowed)[0])
    return f"array with entry {array[index].item()!r} at index {index}"
