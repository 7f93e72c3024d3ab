"""`jomasim reproduce NAME`: the paper's results regenerated from the package alone.

Each reproduction is a config dataclass, a function `run(config)` returning the study's typed
result (`experiments.results.StudyResult`) and a figure of it; `reproduce` writes `NAME.png`,
`NAME.npz` (the result's arrays), `summary.json` (its summary: the numbers that carry the claim),
`NAME_table.csv` when the summary has a `table` (a list of rows) and `config.json` (settings and
environment) into `runs/reproduce-NAME/`, replacing an earlier run of the same name only once the
new one is complete.
"""

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import check_choice
from ..corpus import CORPUS_VARIABLE
from ..experiments.bounce import BounceConfig, run_bounce
from ..experiments.fig3 import Fig3Config, run_fig3
from ..experiments.fig4 import Fig4Config, run_fig4
from ..experiments.pretrained import PretrainedConfig, run_pretrained
from ..experiments.reach import ReachConfig, run_reach
from ..experiments.results import StudyResult
from ..experiments.scan_snap import ScanSnapConfig, run_scan_snap
from ..experiments.table1 import Table1Config, run_table1
from ..experiments.wikitext import WikitextConfig, run_wikitext
from ..io import non_finite_entries, run_directory, write_text
from ..report import ReportEntry, index_html
from ._writer import write_run
from .figures import plot_bounce, plot_fig3, plot_fig4, plot_pretrained, plot_reach, plot_scan_snap, plot_table1, plot_wikitext


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """One reproducible result: its config type, what computes it, its figure, and how the command
    line reaches it. Registering a reproduction in `REPRODUCTIONS` is all the command line needs.

    **Fields:**

    - `config`: the config dataclass; `--set FIELD=VALUE` reaches every field.
    - `run`: `run(config)`, the study's typed result.
    - `plot`: `plot(result, path)`, its figure.
    - `what`: one line on what it shows.
    - `options`: config fields that also get an option of their own (`--field-name`; its help is
      the field's).
    - `presets`: named configs (`--preset-name` flags), each a classmethod of the config that
      takes the other fields as keywords.
    - `missing`: why it cannot run given the fields the command line names (its input is
      missing), or `None`; `reproduce all` skips it then.
    - `shown`: the columns of the summary's table printed on the terminal (`None`: all); the CSV
      holds them all.
    - `run_time`: how long it runs, as measured for the documentation (2-core CPU), and what it needs.
    """

    config: type
    run: Callable[[Any], StudyResult]
    plot: Callable[[Any, Path], None]
    what: str
    options: tuple[str, ...] = ()
    presets: dict[str, tuple[Callable[..., Any], str]] = dataclasses.field(default_factory=dict)
    missing: Callable[[set[str]], str | None] = lambda named: None
    shown: tuple[str, ...] | None = None
    run_time: str = ""


def _missing_corpus(named: set[str]) -> str | None:
    if "corpus" in named or os.environ.get(CORPUS_VARIABLE):
        return None
    return f"no corpus: give --corpus or set {CORPUS_VARIABLE}"


def _missing_text_corpus(named: set[str]) -> str | None:
    if "text" in named:
        return None
    reason = _missing_corpus(named)
    return reason and f"{reason} (or --set text=false to leave out the WikiText settings)"


def _missing_checkpoints(named: set[str]) -> str | None:
    return None if "checkpoints" in named else "no checkpoints: give --checkpoints (and --text)"


REPRODUCTIONS = {
    "fig3": Reproduction(Fig3Config, run_fig3, plot_fig3, "linear activation: the most salient token wins, V low-rank",
                         options=("seed", "variant"), run_time="about 3 s"),
    "fig4": Reproduction(Fig4Config, run_fig4, plot_fig4, "nonlinear toy: attention sparse first, dense later",
                         options=("mu_seed", "mu"), run_time="about 4 s"),
    "scan-snap": Reproduction(ScanSnapConfig, run_scan_snap, plot_scan_snap,
                              "Scan&Snap's Fig. 6: a larger attention learning rate gives sparser attention",
                              options=("seeds", "panels"),
                              run_time="seconds for the default panel; about 2.6 min with --panels 1,3,5,10"),
    "table1": Reproduction(Table1Config, run_table1, plot_table1,
                           "hierarchical data: MLP hidden nodes of each layer match the latents of its level",
                           options=("seeds",), run_time="about 5.5 min; hours with --paper-sizes",
                           presets={"paper_sizes": (Table1Config.paper_sizes, "the paper's model and schedule (d 1024, "
                                                    "400 hidden, 10000 Adam steps, batch 128)")}),
    "wikitext": Reproduction(WikitextConfig, run_wikitext, plot_wikitext,
                             "Transformers on real text: per-layer attention entropy over training (Fig. 6, 8)",
                             options=("corpus",),
                             run_time="about 4 min with --small on WikiText-2's valid/test files; hours per depth at the "
                             "sizes of §6.2; needs a corpus (--corpus or $JOMASIM_WIKITEXT)",
                             presets={"small": (WikitextConfig.small, "a reduced run (2 depths, d 64, 1500 steps, one "
                                                "seed) instead of the sizes of §6.2")},
                             missing=_missing_corpus),
    "pretrained": Reproduction(PretrainedConfig, run_pretrained, plot_pretrained,
                               "checkpoints of one model: attention entropy and MLP stable rank per layer",
                               options=("checkpoints", "text"),
                               run_time="seconds per small checkpoint; needs checkpoints and the [pretrained] extra",
                               missing=_missing_checkpoints),
    "bounce": Reproduction(BounceConfig, run_bounce, plot_bounce,
                           "sparse, then dense again: from the nonlinearity, Adam, LayerNorm or dropout? Every setting "
                           "with a linear control, the paper's WikiText model among them", options=("seeds", "corpus"),
                           run_time="about 40 min on 2 CPU cores, most of it the WikiText settings, which need a corpus "
                           "(--corpus or $JOMASIM_WIKITEXT; --set text=false leaves them out)",
                           shown=("setting", "activation", "entropy_initial", "entropy_min", "entropy_min_step",
                                  "entropy_final", "rebound", "stable_rank_rebound", "runs", "censored"),
                           missing=_missing_text_corpus),
    "reach": Reproduction(ReachConfig, run_reach, plot_reach,
                          "JoMA against a one-layer Transformer, one idealisation dropped per rung: where the theory "
                          "stops describing training, in direction and size, at the stored rates and at matched "
                          "progress",
                          shown=("rung", "activation", "progress", "regime", "loss_end", "entropy_drop", "last_step", "nc_zhat_z",
                                 "size_zhat_z", "nc_zhatP_z", "size_zhatP_z", "nc_reduced_z", "size_reduced_z",
                                 "nc_preconditioned_z", "size_preconditioned_z"),
                          run_time="about 23 min with --set calibrate=true (the documented run)"),
}


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
    entry = REPRODUCTIONS[name]
    started = time.perf_counter()
    folder_name = f"reproduce-{name}"
    with run_directory(out, folder_name, replace=True) as folder:
        result = entry.run(config)
        summary = {**result.summary(), "wall_seconds": time.perf_counter() - started}
        if failures := non_finite_entries(summary):
            summary["failures"] = failures
        write_run(folder, ("config.json", {"reproduction": name, "config": dataclasses.asdict(config)}),
                  arrays=(f"{name}.npz", result.arrays()), figure=(f"{name}.png", lambda path: entry.plot(result, path)),
                  table=(f"{name}_table.csv", summary["table"]) if "table" in summary else None,
                  summary=("summary.json", summary))
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
