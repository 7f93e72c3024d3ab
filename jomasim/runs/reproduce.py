"""`jomasim reproduce NAME`: the paper's results regenerated from the package alone, each into
`runs/reproduce-NAME/` (`Reproduction`: the files it writes), replacing an earlier run of the
same name only once the new one is complete; `reproduce all` runs them in sequence and writes one
offline page over them."""

from pathlib import Path
from typing import Any

from .._errors import check_choice
from ..io import run_directory, write_text
from ..report import ReportEntry, index_html
from .registry import REPRODUCTIONS, run_experiment


def reproduce(name: str, config: Any, out: Path) -> tuple[Path, dict]:
    """Runs reproduction `name` with `config` and writes its run folder.

    **Arguments:**

    - `name`: a key of `REPRODUCTIONS`.
    - `config`: an instance of its config type.
    - `out`: the parent folder; the run goes to `out/reproduce-NAME/`.

    **Returns:**

    `(folder, summary)`; the summary includes `wall_seconds`, and `failures` (the places that hold a
    number that is not finite, `io.non_finite_entries`) when there are any: the run is written
    either way, and the caller reports the failure.
    """
    check_choice("reproduction", name, REPRODUCTIONS)
    folder_name = f"reproduce-{name}"
    with run_directory(out, folder_name, replace=True) as folder:
        _, summary = run_experiment(name, REPRODUCTIONS[name], config, folder)
    return Path(out) / folder_name, summary


def reproduce_all(configs: dict[str, Any], out: Path, skipped: dict[str, str] | None = None) -> tuple[Path, list[ReportEntry]]:
    """Runs reproductions in sequence, then writes `out/reproduce-all/index.html`: one offline page
    with every figure and the headline numbers of every summary.

    **Arguments:**

    - `configs`: reproduction name → its config, run in this order (each into its own
      `out/reproduce-NAME/`, as `reproduce`).
    - `out`: the parent folder.
    - `skipped`: reproduction name → why it was not run (listed on the page).

    **Returns:**

    `(folder, entries)`: the `reproduce-all` folder and the page's entries.
    """
    entries = []
    for name, config in configs.items():
        folder, summary = reproduce(name, config, out)
        entries.append(ReportEntry(name, REPRODUCTIONS[name].what, summary, folder / f"{name}.png"))
    for name, reason in (skipped or {}).items():
        check_choice("reproduction", name, REPRODUCTIONS)
        entries.append(ReportEntry(name, REPRODUCTIONS[name].what, None, None, reason))
    with run_directory(out, "reproduce-all", replace=True) as folder:
        write_text(folder / "index.html", index_html(entries, "jomasim: the JoMA paper's results, reproduced"))
    return Path(out) / "reproduce-all", entries
