"""Sweep grids: axes (a Cartesian product) plus explicit points, from options or a TOML/JSON file."""

import dataclasses
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from .._errors import InvalidChoiceError, InvalidPathError, OutOfRangeError, ShapeMismatchError
from .._memory import check_fits
from .._settings import text_to_value
from ._task import SweepTask

GRID_KEYS = ("axes", "points", "settings")
POINT_BYTES = 4096
"""About what one point takes before any work (its resolved values and its row of the table)."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """A sweep grid.

    **Fields:**

    - `axes`: axis name → values; every combination is a point (in the order given, the last
      axis varying fastest).
    - `points`: explicit extra points, each a dict of axis values (others take their defaults).
    - `settings`: the task's fixed settings (not axes), e.g. `steps` or `mode`.
    """

    axes: dict[str, tuple] = dataclasses.field(default_factory=dict)
    points: tuple[dict, ...] = ()
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def with_axes(self, axes: dict[str, tuple], settings: dict[str, Any]) -> "Grid":
        """This grid with `axes` and `settings` added, replacing those of the same name."""
        return Grid({**self.axes, **axes}, self.points, {**self.settings, **settings})


def parse_axis_values(name: str, text: str, kind: type) -> tuple:
    """Values of an axis written on the command line, read by the axis's type.

    `"0.05,0.1,0.2"` is a list (no empty elements); for an integer axis `"0:8"` (or `"0:8:2"`) is
    a range, stop excluded, as Python's `range`; names stay strings (`"linear,softmax"`).

    **Arguments:**

    - `name`: the axis, for messages.
    - `text`: the values as written.
    - `kind`: the type of one value (`int`, `float`, `str`).

    **Returns:**

    The values as a tuple.
    """
    if kind is int and ":" in text:
        parts = text.split(":")
        try:
            bounds = [int(part) for part in parts]
        except ValueError:
            bounds = None
        if bounds is None or len(bounds) not in (2, 3) or (len(bounds) == 3 and bounds[2] == 0):
            raise OutOfRangeError(f"{name}={text!r} is not a range; write START:STOP or START:STOP:STEP with integers")
        values = range(*bounds)
        check_fits(len(values) * POINT_BYTES, f"{name}={text!r} ({len(values)} values)", f"the range of {name}")
        return tuple(values)
    return text_to_value(name, tuple[kind, ...], text)


def load_grid(path: Path) -> Grid:
    """Reads a grid file: TOML (`.toml`) or JSON (`.json`) with tables `axes`, `points`, `settings`.

    ```toml
    [settings]
    mode = "theory"
    steps = 500
    [axes]
    eta_w = [0.05, 0.1]
    seed = [0, 1, 2]
    [[points]]
    eta_w = 0.3
    ```

    **Returns:**

    A `Grid`.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidPathError(f"grid file {str(path)!r} does not exist or is not a file")
    if path.suffix not in (".toml", ".json"):
        raise InvalidPathError(f"grid file {str(path)!r} must end in .toml or .json")
    try:
        text = path.read_text()
        content = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise InvalidPathError(f"cannot read grid file {str(path)!r}: {reason}") from None
    where = f"grid file {str(path)!r}"
    if not isinstance(content, dict):
        raise ShapeMismatchError(f"{where} holds a {type(content).__name__}; it must be a table with tables "
                                 f"{list(GRID_KEYS)}")
    unknown = sorted(set(content) - set(GRID_KEYS))
    if unknown:
        raise InvalidChoiceError(f"{where} has unknown tables {unknown}; allowed: {list(GRID_KEYS)}")
    axes = _table(content.get("axes", {}), f"{where}: axes", lists=True)
    points = content.get("points", [])
    if not isinstance(points, list):
        raise ShapeMismatchError(f"{where}: points is {points!r}; it must be a list of tables of axis values")
    points = [_table(point, f"{where}: point {number}", lists=False) for number, point in enumerate(points)]
    settings = _table(content.get("settings", {}), f"{where}: settings", lists=True)
    axes = {name: tuple(values) if isinstance(values, list) else (values,) for name, values in axes.items()}
    return Grid(axes, tuple(points), settings)


def _table(value: Any, where: str, lists: bool) -> dict:
    """`value` if it is a table (a dict) of names to plain values (`_check_values`), or with `lists`
    also to lists of them."""
    if not isinstance(value, dict):
        raise ShapeMismatchError(f"{where} is {value!r}; it must be a table of names to values")
    for name, item in value.items():
        if isinstance(item, list) and lists:
            _check_values(item, f"{where}: {name}")
        elif isinstance(item, (dict, list)):
            raise ShapeMismatchError(f"{where}: {name} is {item!r}; it must be a single value")
        else:
            _check_values([item], f"{where}: {name}")
    return value


def _check_values(values, where: str) -> None:
    """Raises unless every value is a number, a string or a boolean (no lists, no tables)."""
    for value in values:
        if not isinstance(value, (int, float, str, bool)):
            raise ShapeMismatchError(f"{where} holds {value!r}; a value must be a number, a string or true/false")


def _check_axis_names(names, task: SweepTask, where: str) -> None:
    unknown = sorted(set(names) - set(task.axes))
    if unknown:
        raise InvalidChoiceError(
            f"{where} names unknown axes {unknown}; the axes are {sorted(task.axes)} (sizes and step counts are fixed "
            "settings: points of different shapes cannot share a compiled chunk, so run one sweep per value)"
        )


def resolve_points(grid: Grid, task: SweepTask) -> list[dict[str, Any]]:
    """Every point of `grid`, complete and checked, before any work starts.

    **Arguments:**

    - `grid`: the axes and explicit points.
    - `task`: the experiment, which knows the axes, the defaults and the allowed values.

    **Returns:**

    The points: first the Cartesian product of the axes, then the explicit points.

    **Raises:**

    `InvalidChoiceError` for an unknown axis or value, `ShapeMismatchError` for an empty axis or
    grid, and the task's own errors for values out of range.
    """
    _check_axis_names(grid.axes, task, "the grid")
    for name, values in grid.axes.items():
        if len(values) == 0:
            raise ShapeMismatchError(f"axis {name!r} has no values; give at least one")
    for number, point in enumerate(grid.points):
        if not isinstance(point, dict):
            raise ShapeMismatchError(f"explicit point {number} is {point!r}; each point must be a table of axis values")
        _check_axis_names(point, task, f"explicit point {number}")
    names = list(grid.axes)
    count = math.prod(len(values) for values in grid.axes.values()) + len(grid.points)
    check_fits(count * POINT_BYTES, f"a grid of {count} points", "the axes' lengths (split the sweep)")
    combinations = [dict(zip(names, values)) for values in itertools.product(*grid.axes.values())] if names else []
    points = combinations + [dict(point) for point in grid.points]
    if not points:
        raise ShapeMismatchError("the grid has no points; give at least one axis or explicit point")
    return [task.complete(point) for point in points]
