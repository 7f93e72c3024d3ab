"""Config fields written as text: `jomasim reproduce NAME --set FIELD=VALUE` and the options that a
reproduction gives its fields (`option_type`).

A value is read by the type of its dataclass field: integers, numbers, `true`/`false`, text,
`none` for an optional field, comma-separated lists for `tuple[T, ...]` (`1,2,5,10`; an empty
value is the empty tuple) and colon-separated fixed tuples inside them (`10:20,20:30`).
"""

import argparse
import dataclasses
import types
import typing

from .._errors import OutOfRangeError, check_choice

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def split_assignment(text: str) -> tuple[str | None, str, str]:
    """Splits `[NAME.]FIELD=VALUE` into `(NAME or None, FIELD, VALUE)`.

    **Arguments:**

    - `text`: one assignment as written after `--set`.

    **Returns:**

    The reproduction it names (`None` when it names none), the field and the value text.
    """
    key, equals, value = text.partition("=")
    name, _, field = key.strip().rpartition(".")
    if not equals or not field:
        raise OutOfRangeError(f"--set {text!r} is not allowed; write FIELD=VALUE or NAME.FIELD=VALUE")
    return name or None, field, value.strip()


_NAMES = {int: ("an integer", "integer", "integers"), float: ("a number", "number", "numbers"),
          bool: ("true or false", "boolean", "booleans"), str: ("text", "text", "texts")}
"""Per scalar type: how to name one value, one value inside a tuple, and several values."""


def _describe(kind, plural: bool = False) -> str:
    """What a value (or, `plural`, several values) of type `kind` looks like, for error messages."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [argument for argument in arguments if argument is not type(None)]
        return " or ".join(_describe(argument, plural) for argument in inner) + " or none"
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        return f"a comma-separated list of {_describe(arguments[0], plural=True)}"
    if origin is tuple:
        return ":".join(_NAMES[argument][1] for argument in arguments) + (" tuples" if plural else " tuple")
    return _NAMES[kind][2 if plural else 0]


def _convert(kind, text: str):
    """`text` as a value of type `kind`; `ValueError` when it is not one."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if text.lower() == "none":
            return None
        (inner,) = [argument for argument in arguments if argument is not type(None)]
        return _convert(inner, text)
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        return tuple(_convert(arguments[0], part.strip()) for part in text.split(",") if part.strip())
    if origin is tuple:
        parts = text.split(":")
        if len(parts) != len(arguments):
            raise ValueError(text)
        return tuple(_convert(argument, part.strip()) for argument, part in zip(arguments, parts))
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is str:
        return text
    raise TypeError(f"no text form for fields of type {kind}")


def field_values(config_type: type, name: str, assignments: list[str]) -> dict:
    """The fields of `config_type` that the assignments for reproduction `name` set, typed.

    **Arguments:**

    - `config_type`: the reproduction's config dataclass.
    - `name`: the reproduction's name, as `NAME.` in an assignment.
    - `assignments`: `[NAME.]FIELD=VALUE` texts; those naming another reproduction are skipped.

    **Returns:**

    `{field: value}`, later assignments of a field replacing earlier ones.

    **Raises:**

    `InvalidChoiceError` for a field the config does not have, `OutOfRangeError` for a value not
    of the field's type.
    """
    hints = typing.get_type_hints(config_type)
    fields = [field.name for field in dataclasses.fields(config_type)]
    values = {}
    for text in assignments:
        target, field, value = split_assignment(text)
        if target not in (None, name):
            continue
        check_choice(f"--set field of {name}", field, fields)
        try:
            values[field] = _convert(hints[field], value)
        except ValueError:
            raise OutOfRangeError(f"--set {field}={value!r} is not allowed; {field} of {name} takes "
                                  f"{_describe(hints[field])}") from None
    return values


def option_type(config_type: type, field: str):
    """The argparse `type` of an option that sets `field` of `config_type`: the text read by the
    field's type as `--set` reads it, a usage error (one line, exit code 2) naming what it takes."""
    kind = typing.get_type_hints(config_type)[field]

    def convert(text: str):
        try:
            return _convert(kind, text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; it takes {_describe(kind)}") from None

    return convert
