"""`jomasim reproduce NAME`: the paper's results regenerated from the package alone.

Each reproduction is a config dataclass, a function `run(config) -> (data, summary)` and a plot;
`reproduce` writes `NAME.png`, `NAME.npz` (the plotted data), `summary.json` (the numbers that
carry the claim), `NAME_table.csv` when the summary has a `table` (a list of rows) and
`config.json` (settings and environment) into `runs/reproduce-NAME/`,
replacing an earlier run of the same name only once the new one is complete.
"""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import check_choice
from ..io import environment, run_directory, write_json, write_npz, write_rows_csv, write_text
from ..plots import plot_fig3, plot_fig4, plot_pretrained, plot_scan_snap, plot_table1, plot_wikitext
from ..report import ReportEntry, index_html
from .fig3 import Fig3Config, run_fig3
from .fig4 import Fig4Config, run_fig4
from .pretrained import PretrainedConfig, run_pretrained
from .scan_snap import ScanSnapConfig, run_scan_snap
from .table1 import Table1Config, run_table1
from .wikitext import WikitextConfig, run_wikitext


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """One reproducible result: its config type, what computes it, and its figure."""

    config: type
    run: Callable[[Any], tuple[dict, dict]]
    plot: Callable[[dict, dict, Path], None]
    what: str


REPRODUCTIONS = {
    "fig3": Reproduction(Fig3Config, run_fig3, plot_fig3, "linear activation: the most salient token wins, V low-rank"),
    "fig4": Reproduction(Fig4Config, run_fig4, plot_fig4, "nonlinear toy: attention sparse first, dense later"),
    "scan-snap": Reproduction(ScanSnapConfig, run_scan_snap, plot_scan_snap,
                              "Scan&Snap model: a larger attention learning rate gives sparser attention"),
    "table1": Reproduction(Table1Config, run_table1, plot_table1,
                           "hierarchical data: MLP hidden nodes of each layer match the latents of its level"),
    "wikitext": Reproduction(WikitextConfig, run_wikitext, plot_wikitext,
                             "Transformers on real text: per-layer attention entropy over training (Fig. 6, 8)"),
    "pretrained": Reproduction(PretrainedConfig, run_pretrained, plot_pretrained,
                               "checkpoints of one model: attention entropy and MLP stable rank per layer"),
}


def reproduce(name: str, config: Any, out: Path) -> tuple[Path, dict]:
    """Runs reproduction `name` with `config` and writes its run folder.

    **Arguments:**

    - `name`: a key of `REPRODUCTIONS`.
    - `config`: an instance of its config type.
    - `out`: the parent folder; the run goes to `out/reproduce-NAME/`.

    **Returns:**

    `(folder, summary)`; the summary includes `wall_seconds`.
    """
    check_choice("reproduction", name, REPRODUCTIONS)
    entry = REPRODUCTIONS[name]
    started = time.perf_counter()
    folder_name = f"reproduce-{name}"
    with run_directory(out, folder_name, replace=True) as folder:
        data, summary = entry.run(config)
        summary = {**summary, "wall_seconds": time.perf_counter() - started}
        write_json(folder / "config.json", {"reproduction": name, "config": dataclasses.asdict(config),
                                            "environment": environment()})
        write_npz(folder / f"{name}.npz", **data)
        entry.plot(data, summary, folder / f"{name}.png")
        if "table" in summary:
            write_rows_csv(folder / f"{name}_table.csv", summary["table"])
        write_json(folder / "summary.json", summary)
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
