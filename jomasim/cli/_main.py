"""The `jomasim` command line."""

import argparse
import contextlib
import dataclasses
import json
import sys
import textwrap
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from .._compile import CACHE_VARIABLE, compile_cache_folder, use_compile_cache
from .._errors import JomasimError, NonFiniteResultError, OutOfRangeError, at_least, check_choice, check_positive
from .._progress import showing_progress, working
from .._settings import build, flat_fields
from ..experiments import (
    COMPARE_MODELS,
    MODES,
    OUTPUT_NAMES,
    SWEEP_PER_POINT,
    BlockSweep,
    FitConfig,
    FittedRun,
    Mode,
    fit_run,
    read_run,
)
from ..io import check_folder_path, check_run_name, claim_run_name, run_directory, unique_run_name
from ..runs import COMMANDS, REPRODUCTIONS, Command, RunFiles, reproduce, reproduce_all, run_and_write, run_experiment
from ..runs.figures import plot_fit, plot_sweep
from ..sweep import MERGED_COLUMNS, Grid, initialize_processes, load_grid, parse_axis_values, resolve_points, run_sweep
from ..theory._options import FIXED_STEP_SOLVERS
from ._overrides import field_values, option_type, split_assignment
from ._print import format_rows, print_agreement, print_stops, print_table, print_theorem1, seed_numbers, without_lists


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 2, and which takes no
    abbreviated options (`--seed` is not `--seeds`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, refusing an option given twice (argparse would keep the last), except
        those meant to repeat (`--set`)."""
        seen = set()
        for token in sys.argv[1:] if args is None else args:
            if token == "--":
                break
            action = self._option_string_actions.get(token.split("=", 1)[0]) if token.startswith("--") else None
            if action is None or isinstance(action, argparse._AppendAction):
                continue
            if action.dest in seen:
                self.error(f"{token.split('=', 1)[0]} is given more than once; give it once")
            seen.add(action.dest)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_options(parser, cls: type, *, skip: tuple[str, ...] = (), defaults: bool = True,
                        prefix: str = "") -> None:
    """An option `--field-name` for every field the config `cls` offers (`flat_fields`), read by
    the field's type, with its help and choices; the parsed value lands in `PREFIX + field`.
    Without `defaults`, an option not given is None (the config's default, or a grid file's, stands)."""
    for field in flat_fields(cls).values():
        if field.name in skip:
            continue
        choices = tuple(field.choices) if field.choices is not None else None
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=prefix + field.name, metavar=field.name.upper(),
                            type=option_type(field.name, field.type), choices=choices,
                            default=field.default if defaults else None,
                            help=f"{field.help} (default {field.default}{'; one of ' + ', '.join(map(str, choices)) if choices else ''})")


def _folder(name: str) -> Callable[[str], Path]:
    """The argparse type of a folder option `name`: a path that can name a folder (`check_folder_path`)."""
    return lambda text: Path(option_type(name, str, check_folder_path)(text))


def _add_output_options(parser) -> None:
    parser.add_argument("--out", type=_folder("out"), default=Path("runs"), help="parent folder of the run folder")
    _add_process_options(parser)
    parser.add_argument("--name", default=None, help="run folder name (default: COMMAND-ATTENTION-ACTIVATION[-N])")


def _config_from(cls, args: argparse.Namespace):
    """The config `cls` built from the parsed options that name its fields."""
    return build(cls, {name: getattr(args, name) for name in flat_fields(cls)})


def _add_command(commands, name: str, command: Command) -> None:
    """A command of `COMMANDS` (`compare`, `simulate`): an option for every field of its config, and
    the output folder. With `models` (names to configs extending `config`), `--model` chooses one,
    and the options of the others' own fields are added with no default (`_model_config`)."""
    parser = commands.add_parser(name, help=command.what, description=command.description)
    _add_config_options(parser, command.config)
    if command.models is not None:
        default = command.config.model.name
        parser.add_argument("--model", choices=tuple(command.models), default=default,
                            help=f"the model trained against the flows (default {default})")
        for each in command.models.values():
            _add_config_options(parser.add_argument_group(f"--model {each.model.name}"), each,
                                skip=tuple(flat_fields(command.config)), defaults=False)
    _add_output_options(parser)
    parser.set_defaults(handler=_command)


def _model_config(args: argparse.Namespace, base: type, models: dict[str, type]):
    """The config of the model `--model` names: the options of `base`'s fields as parsed, and those
    of the model's own fields that were given; an option of another model's own field is refused."""
    chosen = models[args.model]
    shared = set(flat_fields(base))
    for name, each in models.items():
        for field in set(flat_fields(each)) - set(flat_fields(chosen)):
            if getattr(args, field) is not None:
                raise OutOfRangeError(f"--{field.replace('_', '-')} is not an option of --model {args.model}; it is one of "
                                      f"--model {name}")
    return build(chosen, {field: getattr(args, field) for field in flat_fields(chosen)
                          if field in shared or getattr(args, field) is not None})


def _add_sweep(commands) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run theory and/or training of the §3.5 block at every point of a grid",
        description="Sweep the §3.5 block (or, with --model transformer, the one-layer Transformer and its switches) "
        "over learning rates, saliency, temperature, attention, activation, data variant and seeds. Each axis takes "
        "a comma-separated list (0.05,0.1) or an integer range (0:8); every "
        "combination is a point. Points run in chunks, one compiled vmapped call each, sharded over all local "
        "devices; finished chunks are kept, so rerunning with the same --name resumes. Writes points.csv, "
        "points.npz, summary.json and plots into OUT/NAME.",
    )
    task = BlockSweep(COMPARE_MODELS["transformer"](seeds=1))  # every axis of every model
    parser.add_argument("--grid", type=Path, default=None, help="TOML or JSON file with tables axes, points, settings")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="theory (joint, reduced and tracked-b̄ ODE), train (SGD) or both (default)")
    parser.add_argument("--model", choices=tuple(COMPARE_MODELS), default=None,
                        help="the model trained: block (default) or transformer (whose switches are axes too)")
    axes = parser.add_argument_group("axes (comma-separated lists or START:STOP ranges)")
    for name, text in task.axis_help.items():
        axes.add_argument(f"--{name.replace('_', '-')}", dest=f"axis_{name}", metavar="VALUES", default=None, help=text)
    _add_config_options(parser.add_argument_group("fixed settings"), type(task.base), skip=(*task.axes, *SWEEP_PER_POINT),
                        defaults=False, prefix="setting_")
    run = parser.add_argument_group("running")
    run.add_argument("--chunk-size", type=option_type("chunk_size", int, at_least(1)), default=None,
                     help="points per compiled call (default: 16 per CPU device, 256 per GPU/TPU)")
    run.add_argument("--devices", type=option_type("devices", int, at_least(1)), default=None,
                     help="local devices to shard over (default: all)")
    run.add_argument("--plot", action="append", default=None, metavar="VALUE:X[:Y]",
                     help="a heat map of result VALUE over axes X and Y (a line over X without Y); repeatable")
    run.add_argument("--out", type=_folder("out"), default=Path("runs"), help="parent folder of the sweep folder")
    _add_process_options(run)
    run.add_argument("--name", default=None, help="sweep folder name; an existing sweep of that name is resumed")
    run.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="join JAX's multi-process runtime")
    run.add_argument("--num-processes", type=option_type("num_processes", int, at_least(1)), default=1,
                     help="processes of a multi-process sweep")
    run.add_argument("--process-id", type=option_type("process_id", int, at_least(0)), default=0,
                     help="this process's number, below --num-processes")
    run.add_argument("--merge-timeout", type=option_type("merge_timeout", float, check_positive), default=3600.0,
                     help="seconds process 0 waits for the others")
    parser.set_defaults(handler=_sweep)


def _sweep_grid(args) -> tuple[Grid, BlockSweep]:
    """The grid (file, then options) and the task it runs; every setting checked."""
    grid = load_grid(args.grid) if args.grid else Grid()
    BlockSweep.from_settings(grid.settings)  # the file's own settings, checked even where options replace them
    task = BlockSweep(COMPARE_MODELS["transformer"](seeds=1))  # reads every model's axes
    axes = {name.removeprefix("axis_"): parse_axis_values(name.removeprefix("axis_"), text,
                                                          task.axis_types[name.removeprefix("axis_")])
            for name, text in vars(args).items() if name.startswith("axis_") and text is not None}
    settings = {name.removeprefix("setting_"): value for name, value in vars(args).items()
                if name.startswith("setting_") and value is not None}
    for name in ("mode", "model"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    grid = grid.with_axes(axes, settings)
    return grid, BlockSweep.from_settings(grid.settings)


def _plot_specs(args, task: BlockSweep, grid: Grid) -> list[tuple[str, str, str | None]]:
    """The plots asked for, or by default, over the first two varied axes, what a sweep of rates is
    for: each flow's final NC of z with the reference run, the reference's final attention entropy,
    and where the reduced flow parts from it."""
    if args.plot is None:
        varied = [name for name, values in grid.axes.items() if len(values) > 1 and name != "seed"]
        if not varied:
            return []
        runs = [OUTPUT_NAMES[run] for run in Mode(task.mode).runs]
        values = [f"nc_{out}_z" for out in runs[1:]] + [f"entropy_{runs[0]}"] + (
            ["parted_step_reduced"] if "reduced" in runs[1:] else [])
        return [(value, varied[0], varied[1] if len(varied) > 1 else None) for value in values]
    specs = []
    for text in args.plot:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise OutOfRangeError(f"--plot {text!r} is not allowed; write VALUE:X or VALUE:X:Y")
        for axis in parts[1:]:
            check_choice("plot axis", axis, task.axes)
        specs.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    # every point returns the same results, so one traced point names them before any work
    first = resolve_points(grid, task)[0]
    values = (*task.result_names(task.static_key(first)), *(name for name in MERGED_COLUMNS if name != "failures"))
    for value, _, _ in specs:
        check_choice("plot value", value, values)
    return specs


def _sweep(args) -> None:
    if args.process_id >= args.num_processes:
        raise OutOfRangeError(f"process_id={args.process_id} is not allowed; it must be below num_processes="
                              f"{args.num_processes}")
    if args.coordinator is None and args.num_processes > 1:
        raise OutOfRangeError(f"num_processes={args.num_processes} is not allowed without --coordinator HOST:PORT (the "
                              "processes find each other through it)")
    if args.coordinator is not None:
        if args.name is None:
            raise OutOfRangeError("a multi-process sweep needs --name (every process writes into the same folder)")
        initialize_processes(args.coordinator, args.num_processes, args.process_id)
    grid, task = _sweep_grid(args)
    specs = _plot_specs(args, task, grid)
    name = args.name if args.name is not None else unique_run_name(args.out, f"sweep-{task.mode}")
    check_run_name(name)

    def plot(table, folder):
        for value, x, y in specs:
            plot_sweep(table, value, x, y, folder / f"{value}-{x}{'-' + y if y else ''}.png")

    result = run_sweep(task, grid, args.out / name, chunk_size=args.chunk_size, devices=args.devices,
                       merge_timeout=args.merge_timeout, finish=plot)
    if result is None:
        print(f"process {args.process_id}: chunks written to {args.out / name}/chunks; process 0 merges")
        return
    summary = result.summary
    print(f"{summary['points']} points in {summary['chunks']} chunks, {summary['failed']} failed, "
          f"{summary['points_per_second']:.2f} points/s of compute (compiling took {summary['compile_seconds']:.1f} s "
          "more)")
    if summary["chunks_rejected"]:
        print(f"recomputed {summary['chunks_rejected']} stored chunks whose contents did not match the SHA-256 "
              "recorded when they were written (or that were cut short)")
    for row, text in list(summary["failed_points"].items())[:10]:
        print(f"  point {row}: {text}")
    print(f"wrote {result.folder}/ (grid.json, points.csv, points.npz, summary.json"
          f"{', ' + str(len(specs)) + ' plots' if specs else ''})")


def _reproduction_options() -> dict[str, tuple[str, ...]]:
    """Every option of `jomasim reproduce` (a config field or a preset of a registered
    reproduction) and the reproductions it applies to."""
    applies: dict[str, tuple[str, ...]] = {}
    for name, entry in REPRODUCTIONS.items():
        for option in (*entry.options, *entry.presets):
            applies[option] = (*applies.get(option, ()), name)
    return applies


class _ReproductionHelp(argparse.Action):
    """`-h`/`--help` of `jomasim reproduce`: after a reproduction's name, that reproduction's help
    (`reproduction_help`); alone, the command's."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        name = getattr(namespace, "reproduction", None)
        if name in REPRODUCTIONS:
            sys.stdout.write(reproduction_help(name))
        else:
            parser.print_help()
        parser.exit()


def reproduction_help(name: str) -> str:
    """What `jomasim reproduce NAME --help` prints: what it shows, how long it runs and what it
    needs, its options and presets, and every field of its config with its default and help."""
    entry = REPRODUCTIONS[name]
    paragraphs = [f"{name}: {entry.what}." + (f" Run time and needs: {entry.run_time}." if entry.run_time else "")]
    options = [f"--{field.replace('_', '-')}" for field in entry.options] + [
        f"--{preset.replace('_', '-')} ({text})" for preset, (_, text) in entry.presets.items()]
    if options:
        paragraphs.append(f"Options of its own: {', '.join(options)}.")
    lines = [f"usage: jomasim reproduce {name} [options] [--set FIELD=VALUE ...]", ""]
    lines += [textwrap.fill(paragraph, HELP_WIDTH) for paragraph in paragraphs]
    lines += ["", "fields (--set FIELD=VALUE; lists comma-separated):"]
    fields = flat_fields(entry.config)
    width = max(map(len, fields)) + 4
    for field in fields.values():
        choices = f"; one of {', '.join(map(str, field.choices))}" if field.choices is not None else ""
        lines.append(textwrap.fill(f"{field.help} (default {field.default}{choices})", HELP_WIDTH,
                                   initial_indent=f"  {field.name:<{width - 2}}", subsequent_indent=" " * width))
    return "\n".join(lines) + "\n"


HELP_WIDTH = 100
"""Characters per line of a reproduction's help."""


def _add_reproduce(commands) -> None:
    lines = "; ".join(f"{name}: {entry.what}" for name, entry in REPRODUCTIONS.items())
    parser = commands.add_parser(
        "reproduce", add_help=False,
        help="regenerate one of the paper's results (figure, data, summary) into runs/reproduce-NAME/",
        description=f"Regenerate a published result from the package alone ({lines}). Writes NAME.png, NAME.npz "
        "(the plotted data), summary.json (the numbers behind the claim) and config.json.",
    )
    parser.add_argument("-h", "--help", action=_ReproductionHelp,
                        help="show this help, or after a reproduction's name its fields, defaults and run time")
    parser.add_argument("reproduction", choices=(*REPRODUCTIONS, "all"),
                        help="one reproduction, or all of them in sequence and an index.html over them")
    applies = _reproduction_options()
    added = set()
    for name, entry in REPRODUCTIONS.items():
        for field in entry.options:
            if field not in added:
                # each reproduction's own help of the field, as its config declares it
                text = "; ".join(f"{each}: {flat_fields(REPRODUCTIONS[each].config)[field].help}" for each in applies[field])
                parser.add_argument(f"--{field.replace('_', '-')}", type=option_type(field, flat_fields(entry.config)[field].type),
                                    default=None, help=text)
        for preset, (_, text) in entry.presets.items():
            parser.add_argument(f"--{preset.replace('_', '-')}", action="store_const", const=True, default=None,
                                help=f"{name}: {text}")
        added.update(entry.options)
    parser.add_argument("--set", action="append", default=[], metavar="[NAME.]FIELD=VALUE", dest="assignments",
                        help="any field of the reproduction's config, after the options above (repeatable; lists "
                        "comma-separated, e.g. --set depths=1,2,5; with 'all' prefix the reproduction: "
                        "--set wikitext.steps=3000)")
    parser.add_argument("--out", type=_folder("out"), default=Path("runs"), help="parent folder of reproduce-NAME/")
    _add_process_options(parser)
    parser.set_defaults(handler=_reproduce)


def _config_for(name: str, given: dict, assignments: list[str]):
    """The config of reproduction `name`: its preset if one was given, the options given that are
    its fields, then the `--set` assignments for it."""
    entry = REPRODUCTIONS[name]
    presets = [preset for preset in entry.presets if given.get(preset)]
    fields = {option: value for option, value in given.items() if option in entry.options}
    fields.update(field_values(entry.config, name, assignments))
    make = entry.presets[presets[0]][0] if presets else entry.config
    return make(**fields)


def _check_assignments(name: str, assignments: list[str]) -> None:
    """Raises unless every `--set` names a reproduction that runs (a prefix is required with `all`)."""
    for text in assignments:
        target, field, _ = split_assignment(text)
        if name == "all" and target is None:
            raise OutOfRangeError(f"--set {text!r} needs the reproduction it is for with 'all': NAME.{field}=...")
        if target is not None:
            check_choice("--set reproduction", target, REPRODUCTIONS if name == "all" else (name,))


def _not_runnable(name: str, given: dict, assignments: list[str]) -> str | None:
    """Why `reproduce all` cannot run `name` with these options and `--set` assignments (the
    registry's `missing`), or None."""
    named = given.keys() | {field for target, field, _ in map(split_assignment, assignments) if target == name}
    return REPRODUCTIONS[name].missing(named)


def _reproduce(args) -> None:
    name = args.reproduction
    applies = _reproduction_options()
    given = {option: getattr(args, option) for option in applies if getattr(args, option) is not None}
    for option in given:
        if name != "all" and name not in applies[option]:
            raise OutOfRangeError(f"--{option.replace('_', '-')} does not apply to {name}; it applies to "
                                  f"{', '.join(applies[option])}")
    _check_assignments(name, args.assignments)
    if name == "all":
        skipped = {each: reason for each in REPRODUCTIONS if (reason := _not_runnable(each, given, args.assignments))}
        configs = {each: _config_for(each, given, args.assignments) for each in REPRODUCTIONS if each not in skipped}
        folder, entries = reproduce_all(configs, args.out, skipped)
        for entry in entries:
            done = f"{entry.summary['wall_seconds']:.1f} s" if entry.summary else f"not run: {entry.skipped}"
            print(f"{entry.name:11s} {done}")
        print(f"wrote {folder}/index.html (every figure and headline number, readable offline)")
        failed = [entry.name for entry in entries if entry.summary and entry.summary.get("failures")]
        if failed:
            raise NonFiniteResultError(f"{', '.join(failed)} computed numbers that are not finite (see their summary.json's "
                                       "'failures')")
        return
    folder, summary = reproduce(name, _config_for(name, given, args.assignments), args.out)
    print(json.dumps(without_lists({key: value for key, value in summary.items() if key != "layout"}), indent=2,
                     default=str))
    if "layout" in summary:
        print(summary["layout"])
    if "table" in summary:
        shown = REPRODUCTIONS[name].shown
        print(format_rows([{key: row[key] for key in shown} if shown else row for row in summary["table"]]))
    files = sorted(path.name for path in folder.iterdir())
    print(f"wrote {folder}/ ({', '.join(files)}) in {summary['wall_seconds']:.1f} s")
    _raise_failures(name, summary, folder / REPRODUCTIONS[name].files(name).summary)


def _command(args) -> None:
    """Runs a command of `COMMANDS` inside a fresh run folder (nothing is left behind if anything
    fails), then prints what it found (`_REPORTS`)."""
    command = COMMANDS[args.command]
    config = (_model_config(args, command.config, command.models) if command.models is not None
              else _config_from(command.config, args))
    name = args.name if args.name is not None else claim_run_name(args.out, command.folder_stem(args.command, config))
    with run_directory(args.out, name, claimed=args.name is None) as folder:
        _, summary = run_experiment(args.command, command, config, folder)
    if args.command in _REPORTS:
        _REPORTS[args.command](config, summary)
    if _crawled_at_relu_kinks(config, summary):
        print("note: with ReLU the flows are not smooth and adaptive solvers crawl where hidden units cross zero; "
              "use --activation silu or gelu, or --solver euler --dt0 with a small step (compare: --dt0 1 is SGD)")
    files = command.files(args.command)
    print(f"wrote {args.out / name}/ ({files.record}, {files.arrays}, {files.summary}, {files.figure}) in "
          f"{summary['wall_seconds']:.1f} s ({summary['compile_seconds']:.1f} s of it compiling)")
    _raise_failures(args.command, summary, args.out / name / files.summary)


def _raise_failures(what: str, summary: dict, written: Path) -> None:
    """Raises `NonFiniteResultError` when the summary (written to `written`) names numbers that are
    not finite (`run_and_write`'s `failures`)."""
    if failures := summary.get("failures"):
        named = ", ".join(failures[:5]) + (f" and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise NonFiniteResultError(f"{what} computed numbers that are not finite ({named}): the run diverged or "
                                   f"overflowed; they are named in {written} under 'failures'")


def _crawled_at_relu_kinks(config, summary: dict) -> bool:
    """Whether an adaptive solve of a ReLU block ran out of steps (the kinks make it crawl)."""
    out_of_steps = any(message.startswith("max steps") for side in ("ode", "reduced", "tracked")
                       for message in summary.get(f"status_{side}", []))
    return config.activation == "relu" and config.solve.solver not in FIXED_STEP_SOLVERS and out_of_steps


def _report_simulate(config, summary: dict) -> None:
    columns = ("nc_zhat_z", "nc_dzhat_dz", "size_zhat_z", "size_zhat_tracked_z", "entropy_zhat", "entropy_ode",
               "nc_reduced_z", "size_reduced_z", "nc_tracked_z", "size_tracked_z")
    print_table(summary, columns, ("status_ode", "status_reduced", "status_tracked"))
    print_stops(summary, "t")
    print_theorem1(summary, "ode")
    print_agreement(summary, "ode", "t")


def _report_compare(config, summary: dict) -> None:
    columns = ("nc_zhat_z", "nc_dzhat_dz", "size_zhat_z", "size_zhat_tracked_z", "nc_zhatP_z", "size_zhatP_z",
               "entropy_zhat", "entropy_train", "nc_ode_z", "nc_reduced_z", "size_reduced_z", "nc_tracked_z",
               "size_tracked_z", "nc_preconditioned_z", "size_preconditioned_z", "nc_zhat_z_worst_query")
    print_table(summary, columns, ("status_train", "status_ode", "status_reduced", "status_tracked",
                                   "status_preconditioned"))
    print_stops(summary, "step")
    print_theorem1(summary, "train")
    print_agreement(summary, "train", "step", config.model.name)
    clocks = seed_numbers(summary, "adam_clock_w")
    if clocks:
        print(f"the flows ran on Adam's clock: {config.steps} Adam steps moved the MLP's weights as far as "
              f"{min(clocks):.3g}–{max(clocks):.3g} SGD steps at the same rate would, per unit of gradient")


_REPORTS = {"compare": _report_compare, "simulate": _report_simulate}
"""What a command of `COMMANDS` prints of its summary beyond where it wrote it (by name; a command
without an entry prints only that)."""


def _add_fit(commands) -> None:
    parser = commands.add_parser(
        "fit",
        help="fit the reduced JoMA flow's rate ratio (and time scale) to a compare run, per seed",
        description="Fit the reduced JoMA flow to the trained logits of a jomasim compare run: the rate ratio "
        "rho = eta_z / eta_w, and with --clock fitted (or on an Adam run) a time scale of the flow's clock, from the "
        "neutral start rho = 1, scale 1, by Levenberg-Marquardt through Diffrax, on the first saves; the rest are "
        "held out. On an SGD run the steps are the flow's clock, so by default the time scale is held. Writes "
        "RUN/fit/ (fit.json, fit.npz, fit.png).",
    )
    parser.add_argument("run", type=_folder("run"), help="a run folder of jomasim compare")
    _add_process_options(parser)
    _add_config_options(parser, FitConfig)
    parser.set_defaults(handler=_fit)


def _fit(args) -> None:
    config = _config_from(FitConfig, args)
    run = read_run(args.run)
    seeds = len(run.seeds)

    def work() -> FittedRun:
        with working(f"fitting the reduced flow to {seeds} seed{'s' if seeds != 1 else ''} (compiling, then "
                     f"at most {config.iterations} Levenberg-Marquardt steps)"):
            return FittedRun(run, fit_run(run, config))

    with run_directory(args.run, "fit", replace=True) as folder:
        # the fit's summary is its record: one file with the numbers, the settings and the environment
        fitted, summary = run_and_write(folder, work, plot_fit, _FIT_FILES,
                                        lambda: {"config": dataclasses.asdict(config)})
    results = fitted.fit
    print(f"trained with rho = eta_z / eta_w = {summary['trained_lr_ratio']:.4g}; fitted on steps "
          f"{summary['fitted_steps'][0]:g}-{summary['fitted_steps'][1]:g}, held out "
          f"{summary['held_out_steps'][0]:g}-{summary['held_out_steps'][1]:g}")
    # one rho per seed is a column; rho(t) on several pieces is a line per seed; the time scale and
    # its correlation with rho only where it was fitted
    pieces = results.lr_ratio.shape[1] > 1
    scale = ("fitted_time_scale", "correlation_lr_ratio_time_scale") if results.time_scale_fitted else ()
    columns = (*scale, "nc_before", "nc_after", "nc_held_out", "size_held_out")
    print_table(summary, columns if pieces else ("fitted_lr_ratio", *columns), ("status",), ok="converged")
    if not results.time_scale_fitted:
        print(f"the flow runs on the run's clock (time scale held at {config.time_scale:g}; --clock fitted fits it too)")
    elif np.any(np.abs(results.correlation) > 0.9):
        print("rho and the time scale trade off against each other (|correlation| above 0.9: the saves cannot tell them "
              "apart); where the run's clock is the flow's (SGD), --clock fixed fits rho alone")
    stuck = int(np.sum(results.status != 0))
    if stuck:
        print(f"{stuck} of {len(results.status)} seeds did not converge within {config.iterations} Levenberg-Marquardt "
              "steps: raise --iterations, or loosen --rtol/--atol")
    if pieces:
        print(f"rho(t) on the pieces between steps {', '.join(f'{knot:g}' for knot in results.knots)}:")
        for seed, ratios in zip(summary["seeds"], results.lr_ratio):
            print(f"{seed:4d}  " + "  ".join(f"{ratio:.4f}" for ratio in ratios))
    print(f"wrote {args.run / 'fit'}/ ({_FIT_FILES.record}, {_FIT_FILES.arrays}, {_FIT_FILES.figure}) in "
          f"{summary['wall_seconds']:.1f} s")
    _raise_failures("fit", summary, args.run / "fit" / _FIT_FILES.record)


_FIT_FILES = RunFiles("fit.json", "fit.npz", "fit.png", summary=None)
"""A fit's files, in `RUN/fit/`: its summary is its record."""


def _add_process_options(parser) -> None:
    """The options of how the command's process runs: its progress display and its compile cache."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (it is drawn on standard error only when that is a terminal)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help=f"compile every program anew instead of keeping compiled programs for the next run (also "
                        f"{CACHE_VARIABLE}=off; by default under $JOMASIM_CACHE or ~/.cache/jomasim, as "
                        f"{CACHE_VARIABLE}=FOLDER moves them)")


def build_parser() -> argparse.ArgumentParser:
    """The `jomasim` argument parser with all its sub-commands."""
    parser = _OneLineParser(prog="jomasim", description="Simulate JoMA training dynamics and check them against training.")
    parser.add_argument("--version", action="version", version=f"jomasim {metadata.version('jomasim')}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for name, command in COMMANDS.items():
        _add_command(commands, name, command)
    _add_sweep(commands)
    _add_reproduce(commands)
    _add_fit(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the `jomasim` command; user mistakes print one line and return exit code 2.

    The command computes in float64 (JAX's `jax_enable_x64`), which it turns on for its own process,
    and keeps compiled programs for the next run (`jomasim._compile.use_compile_cache`) unless
    told not to.
    """
    args = build_parser().parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    cache = compile_cache_folder()
    if cache is not None and not args.no_compile_cache:
        use_compile_cache(cache)
    out = getattr(args, "out", None)
    new_out = out is not None and not out.exists()
    try:
        with showing_progress(sys.stderr.isatty() and not getattr(args, "quiet", False)):
            args.handler(args)
    except NonFiniteResultError as failure:
        print(f"jomasim: failed: {failure}", file=sys.stderr)
        return 1
    except (JomasimError, OSError) as error:
        if isinstance(error, OSError):  # a path the operating system refuses (too long, no permission, ...)
            error = f"cannot use {str(error.filename)!r}: {error.strerror or error}"
        if new_out:  # a refused run leaves no output folder it created (one only removed while empty)
            with contextlib.suppress(OSError):
                out.rmdir()
        print(f"jomasim: error: {error}", file=sys.stderr)
        return 2
    return 0
