"""The one writer of a run folder's files, and the one place a run is timed."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..experiments.results import StudyResult
from ..io import environment, non_finite_entries, write_json, write_npz, write_rows_csv


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


class RunFiles(NamedTuple):
    """The names of a run folder's files.

    **Fields:**

    - `record`: the settings and the environment (JSON).
    - `arrays`: the result's arrays (`.npz`).
    - `figure`: its figure (`.png`).
    - `summary`: its summary (JSON), or `None` to put the summary into the record, before the
      settings (`fit.json`).
    - `table`: the summary's `table` as a CSV, where it has one (`None`: not written apart).
    """

    record: str
    arrays: str
    figure: str
    summary: str | None = "summary.json"
    table: str | None = None


def run_and_write(folder: Path, work: Callable[[], StudyResult], figure: Callable[[Any, Path], None], files: RunFiles,
                  record: Callable[[], dict[str, Any]]) -> tuple[StudyResult, dict[str, Any]]:
    """Runs a study and writes its run folder: the one place a run is timed.

    **Arguments:**

    - `folder`: the run folder (made by `io.run_directory`).
    - `work`: computes the study's typed result.
    - `figure`: `figure(result, path)` draws it.
    - `files`: the folder's file names.
    - `record`: gives the settings that made the run (`write_run` adds the environment), asked
      once the work is done (a config too large to run is refused by the work, before its record
      is made).

    **Returns:**

    `(result, summary)`: the summary is the result's with `wall_seconds` (the seconds `work`
    took) and, when some number in it is not finite, `failures` naming where
    (`io.non_finite_entries`): the run is written either way, and the caller reports the failure.
    """
    started = time.perf_counter()
    result = work()
    summary = {**result.summary(), "wall_seconds": time.perf_counter() - started}
    if failures := non_finite_entries(summary):
        summary["failures"] = failures
    table = (files.table, summary["table"]) if files.table is not None and "table" in summary else None
    settings = record()
    write_run(folder, (files.record, settings if files.summary is not None else {**summary, **settings}),
              arrays=(files.arrays, result.arrays()), figure=(files.figure, lambda path: figure(result, path)),
              table=table, summary=(files.summary, summary) if files.summary is not None else None)
    return result, summary
