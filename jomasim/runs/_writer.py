"""The one writer of a run folder's files, which is also the one place a run is timed."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..experiments.results import StudyResult
from ..io import environment, non_finite_entries, write_json, write_npz, write_rows_csv


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
    """Runs a study and writes its run folder (made by `io.run_directory`, which removes every
    file if any step fails): the record of its settings with the environment it ran in
    (`io.environment`: versions, commit, device), its arrays, its figure, its table and its
    summary, in that order. The one place a run is timed.

    **Arguments:**

    - `folder`: the run folder.
    - `work`: computes the study's typed result.
    - `figure`: `figure(result, path)` draws it.
    - `files`: the folder's file names.
    - `record`: gives the settings that made the run (the config, the command, the seeds), asked
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
    settings = record() if files.summary is not None else {**summary, **record()}
    write_json(folder / files.record, {**settings, "environment": environment()})
    write_npz(folder / files.arrays, **result.arrays())
    figure(result, folder / files.figure)
    if files.table is not None and "table" in summary:
        write_rows_csv(folder / files.table, summary["table"])
    if files.summary is not None:
        write_json(folder / files.summary, summary)
    return result, summary
