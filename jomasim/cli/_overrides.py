"""Config fields written as text: `jomasim reproduce NAME --set FIELD=VALUE` and the options that a
reproduction gives its fields (`option_type`).

A value is read by the type of its dataclass field (`jomasim._settings.text_to_value`): integers,
numbers, `true`/`false`, text, `none` for an optional field, comma-separated lists for
`tuple[T, ...]` (`1,2,5,10`; an empty value is the empty tuple) and colon-separated fixed tuples
inside them (`10:20,20:30`).
"""

import argparse
from collections.abc import Callable
from typing import Any

from .._errors import JomasimError, OutOfRangeError, check_choice
from .._settings import describe, flat_fields, text_to_value


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
    fields = flat_fields(config_type)
    values = {}
    for text in assignments:
        target, field, value = split_assignment(text)
        if target not in (None, name):
            continue
        check_choice(f"--set field of {name}", field, fields)
        try:
            values[field] = text_to_value(field, fields[field].type, value)
        except OutOfRangeError:
            raise OutOfRangeError(f"--set {field}={value!r} is not allowed; {field} of {name} takes "
                                  f"{describe(fields[field].type)}") from None
    return values


def option_type(name: str, kind, check: Callable[[str, Any], None] | None = None):
    """The argparse `type` of an option that sets `name` of type `kind` (a config field's, or an
    option's own): the text read as `--set` reads it (`jomasim._settings.text_to_value`) and
    checked by `check(name, value)`, a usage error (one line, exit code 2) naming the value."""

    def convert(text: str):
        try:
            value = text_to_value(name, kind, text)
            if check is not None:
                check(name, value)
            return value
        except JomasimError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert
