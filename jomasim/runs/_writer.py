"""The one writer of a run folder's files."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import environment, write_json, write_npz, write_rows_csv


def write_run(folder: Path, record: tuple[str, dict[str, Any]], *, arrays: tuple[str, dict[str, Any]],
              figure: tuple[str, Callable[[Path], None]], table: tuple[str, list[dict[str, Any]]] | None = None,
              summary: tuple[str, dict[str, Any]] | None = None) -> None:
    """Writes a run's files into `folder` (made by `io.run_directory`, which removes them all if any
    step fails): the record of its settings with the environment it ran in, its arrays, its figure,
    its table and its summary, in that order. Each file is given as `(file name, contents)`.

    **Arguments:**

    - `folder`: the run folder.
    - `record`: the settings that made the run (the config, the command, the seeds); the writer adds
      `environment` (`io.environment`: versions, commit, device), so every run records it.
    - `arrays`: the arrays, written as one `.npz`.
    - `figure`: a function that draws the figure into the path it is given.
    - `table`: rows written as a CSV, or `None`.
    - `summary`: the headline numbers as JSON, or `None` where the record holds them.
    """
    name, settings = record
    write_json(folder / name, {**settings, "environment": environment()})
    name, values = arrays
    write_npz(folder / name, **values)
    name, draw = figure
    draw(folder / name)
    if table is not None:
        write_rows_csv(folder / table[0], table[1])
    if summary is not None:
        write_json(folder / summary[0], summary[1])
