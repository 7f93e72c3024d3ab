"""Settings declared once: a config field's type, default, check and help, and the one reader of text.

A config is a frozen dataclass whose fields are made with `setting(...)`: the field's annotation is
its type, and `Settings.__post_init__` checks every field against its type, its `choices` and its
`check`, whatever built the config (Python, the command line, `--set`, a sweep grid). A field whose
type is itself a dataclass (the solver's `SolverOptions`) is nested: its own fields are reached by
their names, as if they were the config's (`flat_fields`, `build`). `text_to_value` reads a value
written as text by its field's type, for command-line options, `--set FIELD=VALUE` and sweep axes.
"""

import dataclasses
import functools
import numbers
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ._errors import InvalidChoiceError, OutOfRangeError, check_choice


def setting(default: Any, help: str, *, choices: Iterable | None = None,
            check: Callable[[str, Any], None] | None = None, expose: tuple[str, ...] | None = None) -> Any:
    """A config field, declared once.

    **Arguments:**

    - `default`: its default value.
    - `help`: what it sets, for `--help`.
    - `choices`: the allowed values (a registry's keys, say), if the field names one of a set.
    - `check`: `check(name, value)` raising a `JomasimError` that names a value out of bounds.
    - `expose`: for a nested dataclass field, the fields of it that the config offers (default all).

    **Returns:**

    A `dataclasses.field`.
    """
    metadata = {"help": help, "choices": choices, "check": check, "expose": expose}
    return dataclasses.field(default=default, metadata=metadata)


def optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    """`check` for an optional field: `None` passes."""
    def check_unless_none(name: str, value: Any) -> None:
        if value is not None:
            check(name, value)

    return check_unless_none


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")

_NAMES = {int: ("an integer", "integer", "integers"), float: ("a number", "number", "numbers"),
          bool: ("true or false", "boolean", "booleans"), str: ("text", "text", "texts")}
"""Per scalar type: how to name one value, one value inside a tuple, and several values."""


def _optional(kind) -> tuple[Any, bool]:
    """`(inner type, whether None is allowed)` of a type hint `X | None` (or `(kind, False)`)."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        inner = [argument for argument in typing.get_args(kind) if argument is not type(None)]
        if len(inner) == 1:
            return inner[0], True
    return kind, False


def _is_list(kind) -> bool:
    arguments = typing.get_args(kind)
    return typing.get_origin(kind) is tuple and len(arguments) == 2 and arguments[1] is Ellipsis


def describe(kind, plural: bool = False) -> str:
    """What a value (or, `plural`, several values) of type `kind` looks like, for error messages."""
    inner, optional = _optional(kind)
    if optional:
        return describe(inner, plural) + " or none"
    if _is_list(kind):
        return f"a comma-separated list of {describe(typing.get_args(kind)[0], plural=True)}"
    if typing.get_origin(kind) is tuple:
        return ":".join(_NAMES[argument][1] for argument in typing.get_args(kind)) + (" tuples" if plural else " tuple")
    return _NAMES[kind][2 if plural else 0]


def _read(kind, text: str):
    """`text` as a value of type `kind`; `ValueError` when it is not one."""
    inner, optional = _optional(kind)
    if optional:
        return None if text.lower() == "none" else _read(inner, text)
    if _is_list(kind):
        if not text.strip():
            return ()
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise ValueError(text)
        return tuple(_read(typing.get_args(kind)[0], part) for part in parts)
    if typing.get_origin(kind) is tuple:
        parts = text.split(":")
        if len(parts) != len(typing.get_args(kind)):
            raise ValueError(text)
        return tuple(_read(argument, part.strip()) for argument, part in zip(typing.get_args(kind), parts))
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    if kind in (int, float) and "_" in text:
        raise ValueError(text)  # Python reads 1_0 as 10; a setting takes plain digits
    if kind in (int, float, str):
        return kind(text)
    raise TypeError(f"no text form for fields of type {kind}")


def text_to_value(name: str, kind, text: str):
    """A value of type `kind` written as `text`: integers, numbers, `true`/`false`, text, `none`
    for an optional field, comma-separated lists for `tuple[T, ...]` (`1,2,5`; an empty text is the
    empty tuple, an empty element is refused) and colon-separated fixed tuples (`10:20`).

    **Raises:**

    `OutOfRangeError` naming `name`, the text and what the type takes.
    """
    try:
        return _read(kind, text)
    except ValueError:
        raise OutOfRangeError(f"{name}={text!r} is not allowed; {name} takes {describe(kind)}") from None


def _matches(kind, value) -> bool:
    """Whether `value` is of the field type `kind` (an int is a number; a bool is neither)."""
    inner, optional = _optional(kind)
    if value is None:
        return optional
    kind = inner
    if _is_list(kind):
        return isinstance(value, tuple) and all(_matches(typing.get_args(kind)[0], item) for item in value)
    if typing.get_origin(kind) is tuple:
        arguments = typing.get_args(kind)
        return (isinstance(value, tuple) and len(value) == len(arguments)
                and all(_matches(argument, item) for argument, item in zip(arguments, value)))
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True


INTEGER_RANGE = (-(2**63), 2**63 - 1)
"""The integers a setting may hold: those JAX and NumPy represent (int64)."""


def _beyond(kind, value) -> str | None:
    """Why a value of the right type is still no value at all (a number that is not finite, an
    integer beyond `INTEGER_RANGE`), looking inside tuples; `None` if it is one."""
    inner, _ = _optional(kind)
    if value is None:
        return None
    if typing.get_origin(inner) is tuple:
        arguments = typing.get_args(inner)
        kinds = [arguments[0]] * len(value) if _is_list(inner) else arguments
        return next((reason for item_kind, item in zip(kinds, value) if (reason := _beyond(item_kind, item))), None)
    if inner is float and not np.isfinite(value):
        return "it must be finite"
    if inner is int and not INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
        return f"integers must lie in [{INTEGER_RANGE[0]}, {INTEGER_RANGE[1]}]"
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Settings:
    """A mixin for frozen config dataclasses whose fields are `setting`s: every field is checked
    when the config is made (type, `choices`, `check`), then `check_fields`, which a config
    overrides for checks that involve several fields."""

    def __post_init__(self):
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not _matches(hints[field.name], value):
                # a switch (true or false) is a choice; any other value of the wrong type is out of range
                error = InvalidChoiceError if _optional(hints[field.name])[0] is bool else OutOfRangeError
                raise error(f"{field.name}={value!r} is not allowed; it takes {describe(hints[field.name])}")
            if field.metadata.get("choices") is not None:
                check_choice(field.name, value, field.metadata["choices"])
            if field.metadata.get("check") is not None:
                field.metadata["check"](field.name, value)
            if (reason := _beyond(hints[field.name], value)) is not None:
                raise OutOfRangeError(f"{field.name}={value!r} is not allowed; {reason}")
        self.check_fields()

    def check_fields(self) -> None:
        """Checks that involve several fields (none by default)."""


@dataclasses.dataclass(frozen=True)
class FlatField:
    """A field as the command line and text see it: `name`, its `type`, default, help and choices,
    and `path`, the nested field it sits in (`None` at the top)."""

    name: str
    type: Any
    default: Any
    help: str
    choices: Iterable | None
    path: str | None


def flat_fields(cls: type) -> dict[str, FlatField]:
    """Every field a config offers, by name, nested dataclass fields expanded into theirs.

    **Arguments:**

    - `cls`: a config dataclass.

    **Returns:**

    Field name → `FlatField`, in declaration order.
    """
    flat = {}
    for field in dataclasses.fields(cls):
        kind = _hints(cls)[field.name]
        if dataclasses.is_dataclass(kind):
            exposed = field.metadata.get("expose")
            inner_defaults = field.default
            for inner in dataclasses.fields(kind):
                if exposed is None or inner.name in exposed:
                    flat[inner.name] = FlatField(inner.name, _hints(kind)[inner.name], getattr(inner_defaults, inner.name),
                                                 inner.metadata.get("help", ""), inner.metadata.get("choices"), field.name)
        else:
            flat[field.name] = FlatField(field.name, kind, field.default, field.metadata.get("help", ""),
                                         field.metadata.get("choices"), None)
    return flat


def build(cls: type, values: dict[str, Any], base: Any = None):
    """A config of type `cls` from values by flat field name (`flat_fields`), the rest from `base`
    (default: the config's defaults).

    **Raises:**

    `InvalidChoiceError` for a name the config does not offer; the config's own checks otherwise.
    """
    flat = flat_fields(cls)
    unknown = sorted(set(values) - set(flat))
    if unknown:
        raise InvalidChoiceError(f"unknown settings {unknown}; allowed: {sorted(flat)}")
    top = {name: value for name, value in values.items() if flat[name].path is None}
    for path in {flat[name].path for name in values} - {None}:
        nested = getattr(base, path) if base is not None else next(f for f in dataclasses.fields(cls) if f.name == path).default
        top[path] = dataclasses.replace(nested, **{name: value for name, value in values.items() if flat[name].path == path})
    return dataclasses.replace(base, **top) if base is not None else cls(**top)


def from_json(cls: type, record: dict[str, Any]):
    """A config of type `cls` from its `dataclasses.asdict` record read back from JSON: nested
    dataclass fields rebuilt, lists read back as the tuples the fields hold; checked as any config."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.name not in record:
            continue
        kind, value = _hints(cls)[field.name], record[field.name]
        if dataclasses.is_dataclass(kind):
            value = from_json(kind, value)
        elif isinstance(value, list):
            value = _tuples(value)
        values[field.name] = value
    return cls(**values)


def _tuples(value):
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value
