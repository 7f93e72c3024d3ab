"""What `jomasim` runs: the block's commands (`compare`, `simulate`) and every reproduction, each
a config type, a run function returning the study's typed result, its figure, and how the command
line reaches it; `run_experiment` runs one into its folder."""

import abc
import dataclasses
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..corpus import CORPUS_VARIABLE
from ..experiments import COMPARE_MODELS, BlockTheoryConfig, CompareConfig, run_block_theory, run_compare
from ..experiments.bounce import BounceConfig, run_bounce
from ..experiments.fig3 import Fig3Config, run_fig3
from ..experiments.fig4 import Fig4Config, run_fig4
from ..experiments.pretrained import PretrainedConfig, run_pretrained
from ..experiments.reach import ReachConfig, run_reach
from ..experiments.results import StudyResult
from ..experiments.scan_snap import ScanSnapConfig, run_scan_snap
from ..experiments.table1 import Table1Config, run_table1
from ..experiments.wikitext import WikitextConfig, run_wikitext
from ._writer import RunFiles, run_and_write
from .figures import (
    plot_block_theory,
    plot_bounce,
    plot_compare,
    plot_fig3,
    plot_fig4,
    plot_pretrained,
    plot_reach,
    plot_scan_snap,
    plot_table1,
    plot_wikitext,
)


class AbstractExperiment(abc.ABC):
    """Something `jomasim` runs into a run folder of its own: a config type (`config`), a function
    from a config to the study's typed result (`run`), its figure (`figure(result, path)`) and one
    line on what it shows (`what`); what its folder's files are called and what its record holds
    depend on how the command line reaches it (`Command`, `Reproduction`)."""

    config: type
    run: Callable[[Any], StudyResult]
    figure: Callable[[Any, Path], None]
    what: str

    @abc.abstractmethod
    def files(self, name: str) -> RunFiles:
        """The names of the run folder's files, for the experiment registered as `name`."""

    @abc.abstractmethod
    def record(self, name: str, config: Any) -> dict[str, Any]:
        """What `config.json` records of a run with `config` (the writer adds the environment)."""


@typing.final
@dataclasses.dataclass(frozen=True)
class Command(AbstractExperiment):
    """A command of its own (`jomasim NAME`) on the §3.5 block or a model trained against its
    flows: an option for every field of its config, and a run folder
    `NAME-[MODEL-]ATTENTION-ACTIVATION[-N]` holding `config.json`, `data.npz`, `summary.json` and
    its figure. Registering it in `COMMANDS` is all the command line needs to run it (what it prints
    beyond where it wrote is the command line's `_REPORTS`).

    **Fields:**

    - `config`: the config dataclass (for a command with `models`, the one they share).
    - `run`, `figure`, `what`: as `AbstractExperiment`'s; `what` is the command's one-line help.
    - `description`: the command's help paragraph.
    - `figure_file`: the figure's file name.
    - `models`: the models it can train, by name, to the config type of each (`--model` chooses
      one); `None` where it trains none.
    """

    config: type
    run: Callable[[Any], StudyResult]
    figure: Callable[[Any, Path], None]
    what: str
    description: str
    figure_file: str
    models: dict[str, type] | None = None

    def files(self, name: str) -> RunFiles:
        return RunFiles("config.json", "data.npz", self.figure_file)

    def record(self, name: str, config: Any) -> dict[str, Any]:
        return {"command": name, "model": config.model.name, "config": dataclasses.asdict(config),
                "seeds": config.seed_list}

    def folder_stem(self, name: str, config: Any) -> str:
        """The run folder's name before its number: `NAME-[MODEL-]ATTENTION-ACTIVATION` (the block
        unnamed)."""
        model = "" if config.model.name == "block" else f"{config.model.name}-"
        return f"{name}-{model}{config.attention}-{config.activation}"


COMMANDS = {
    "compare": Command(
        CompareConfig, run_compare, plot_compare,
        "train the §3.5 block (or a one-layer Transformer) and compare it step by step with the JoMA ODEs",
        "Train the JoMA block (Flax NNX + optax SGD, vmapped over seeds) and integrate the joint, the "
        "reduced and the tracked-b̄ JoMA ODEs (Diffrax) from the same data and initial state; compare them with "
        "normalized correlation at every saved step. Defaults: the paper's Fig. 2 setting. --model transformer "
        "trains a one-layer Transformer on sampled sequences instead, every JoMA idealisation a switch, and starts "
        "the ODEs from its probed initial state.", "fig2.png", models=COMPARE_MODELS),
    "simulate": Command(
        BlockTheoryConfig, run_block_theory, plot_block_theory,
        "integrate the joint, the reduced and the tracked-b̄ JoMA flows of the §3.5 block for several seeds",
        "Integrate the joint (W, z) gradient flow, the reduced JoMA flow and the tracked-b̄ flow of the "
        "§3.5 block with Diffrax, vmapped over seeds, and check Theorem 1. Defaults: the paper's Fig. 2 setting.",
        "theory.png"),
}
"""The block's commands, by name."""


@typing.final
@dataclasses.dataclass(frozen=True)
class Reproduction(AbstractExperiment):
    """One reproducible result, reached by `jomasim reproduce NAME`; it writes `NAME.npz`,
    `NAME.png`, `summary.json`, `NAME_table.csv` when the summary has a `table`, and `config.json`
    into `reproduce-NAME/`. Registering it in `REPRODUCTIONS` is all the command line needs.

    **Fields:**

    - `config`: the config dataclass; `--set FIELD=VALUE` reaches every field.
    - `run`: `run(config)`, the study's typed result.
    - `figure`: `figure(result, path)` draws it.
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
    figure: Callable[[Any, Path], None]
    what: str
    options: tuple[str, ...] = ()
    presets: dict[str, tuple[Callable[..., Any], str]] = dataclasses.field(default_factory=dict)
    missing: Callable[[set[str]], str | None] = lambda named: None
    shown: tuple[str, ...] | None = None
    run_time: str = ""

    def files(self, name: str) -> RunFiles:
        return RunFiles("config.json", f"{name}.npz", f"{name}.png", table=f"{name}_table.csv")

    def record(self, name: str, config: Any) -> dict[str, Any]:
        return {"reproduction": name, "config": dataclasses.asdict(config)}


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
"""The reproductions, by name (`jomasim reproduce NAME`)."""


def run_experiment(name: str, experiment: AbstractExperiment, config: Any, folder: Path) -> tuple[StudyResult, dict]:
    """Runs `experiment` (registered as `name`) with `config` and writes its files into `folder`
    (`run_and_write`: timed, the summary's failures named).

    **Returns:**

    `(result, summary)`.
    """
    return run_and_write(folder, lambda: experiment.run(config), experiment.figure, experiment.files(name),
                         lambda: experiment.record(name, config))
