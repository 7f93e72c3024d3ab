"""The `jomasim` command line."""

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ._errors import JomasimError
from .activation import ACTIVATIONS
from .attention import ATTENTION_KINDS
from .data import VARIANTS
from .experiments.block_theory import BlockSetting, BlockTheoryConfig, run_block_theory, summarize
from .experiments.compare import CompareConfig, compare
from .io import environment, run_directory, unique_run_name, write_json, write_npz
from .plots import plot_block_theory, plot_compare
from .theory._simulate import SOLVERS


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_block_options(parser: argparse.ArgumentParser, defaults: BlockSetting) -> None:
    """Options of every §3.5 block command: data, block, seeds, solver and output folder."""
    parser.add_argument("--attention", choices=ATTENTION_KINDS, default=defaults.attention)
    parser.add_argument("--activation", choices=tuple(ACTIVATIONS), default=defaults.activation)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=defaults.first_seed)
    parser.add_argument("--variant", choices=VARIANTS, default=defaults.variant, help="token-frequency model")
    parser.add_argument("--saliency", type=float, default=defaults.saliency, help="factor on the distinct tokens' frequencies")
    parser.add_argument("--solver", choices=tuple(SOLVERS), default=defaults.solver)
    parser.add_argument("--rtol", type=float, default=defaults.rtol)
    parser.add_argument("--atol", type=float, default=defaults.atol)
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="solver step budget per trajectory")
    parser.add_argument("--blowup", type=float, default=defaults.blowup,
                        help="stop a flow when a logit |z| reaches this value and report a blow-up (default: never)")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run folder")
    parser.add_argument("--name", default=None, help="run folder name (default: COMMAND-ATTENTION-ACTIVATION[-N])")


def _config_from(cls, args: argparse.Namespace):
    """The config dataclass `cls` built from the parsed options that name its fields."""
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in vars(args).items() if name in fields})


def _add_simulate(commands) -> None:
    parser = commands.add_parser(
        "simulate",
        help="integrate the joint and the reduced JoMA flows of the §3.5 block for several seeds",
        description="Integrate the joint (W, z) gradient flow and the reduced JoMA flow of the §3.5 block "
        "with Diffrax, vmapped over seeds, and check Theorem 1. Defaults: the paper's Fig. 2 setting.",
    )
    defaults = BlockTheoryConfig()
    _add_block_options(parser, defaults)
    parser.add_argument("--eta-w", type=float, default=defaults.eta_w, help="flow rate of the MLP weights W")
    parser.add_argument("--eta-z", type=float, default=defaults.eta_z, help="flow rate of the attention logits z")
    parser.add_argument("--t-end", type=float, default=defaults.t_end, help="end time (rates 1, t = 200: 2000 SGD steps at lr 0.1)")
    parser.add_argument("--saves", type=int, default=defaults.saves, help="number of save times")
    parser.set_defaults(handler=_simulate)


def _add_compare(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="train the §3.5 block with SGD and compare it step by step with the JoMA ODEs",
        description="Train the JoMA block (Flax NNX + optax SGD, vmapped over seeds) and integrate the joint and "
        "the reduced JoMA ODEs (Diffrax) from the same data and initial state; compare them with normalized "
        "correlation at every saved step. Defaults: the paper's Fig. 2 setting.",
    )
    defaults = CompareConfig()
    _add_block_options(parser, defaults)
    parser.add_argument("--eta-w", type=float, default=defaults.eta_w, help="SGD learning rate of the MLP weights W")
    parser.add_argument("--eta-z", type=float, default=defaults.eta_z, help="SGD learning rate of the attention logits z")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="number of SGD steps")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help="keep the parameters every N steps")
    parser.set_defaults(handler=_compare)


def _run(command: str, config, args, work: Callable, plot: Callable, figure: str, print_table: Callable) -> None:
    """Runs `work(config) -> (results, summary)` inside a fresh run folder and writes config.json,
    data.npz, summary.json and the figure; nothing is left behind if anything fails."""
    name = args.name or unique_run_name(args.out, f"{command}-{config.attention}-{config.activation}")
    with run_directory(args.out, name) as folder:
        results, summary = work(config)
        write_json(folder / "config.json", {"command": command, "config": dataclasses.asdict(config),
                                            "seeds": config.seed_list, "environment": environment()})
        write_npz(folder / "data.npz", **{k: v for k, v in results.items() if not k.startswith("messages_")})
        plot(results, folder / figure)
        write_json(folder / "summary.json", summary)
    print_table(summary)
    print(f"wrote {args.out / name}/ (config.json, data.npz, summary.json, {figure}) in {summary['wall_seconds']:.1f} s")


def _print_table(summary: dict, columns: tuple[str, ...], statuses: tuple[str, ...]) -> None:
    """One row per seed (and a mean row) of the chosen summary columns and what went wrong, if anything."""
    columns = [column for column in columns if column in summary]
    print("seed  " + "  ".join(f"{column:>14}" for column in columns) + "  status")
    for row, seed in enumerate(summary["seeds"]):
        values = "  ".join(f"{summary[column][row]:14.4f}" for column in columns)
        problems = [f"{status.removeprefix('status_')}: {summary[status][row]}" for status in statuses if summary[status][row] != "ok"]
        print(f"{seed:4d}  {values}  {'; '.join(problems) or 'ok'}")
    means = "  ".join(f"{sum(summary[column]) / len(summary[column]):14.4f}" for column in columns)
    print(f"mean  {means}")


def _simulate(args) -> None:
    def work(config):
        started = time.perf_counter()
        results = run_block_theory(config)
        summary = summarize(results)
        summary["wall_seconds"] = time.perf_counter() - started
        return results, summary

    columns = ("nc_zhat_z", "nc_zhat1_z", "nc_zhat2_z", "nc_reduced_z", "entropy_ode_final")
    _run("simulate", _config_from(BlockTheoryConfig, args), args, work, plot_block_theory, "theory.png",
         lambda summary: _print_table(summary, columns, ("status_ode", "status_reduced")))


def _compare(args) -> None:
    columns = ("nc_zhat_z", "nc_zhat1_z", "nc_zhat2_z", "nc_ode_z", "nc_reduced_z", "entropy_train_final")
    _run("compare", _config_from(CompareConfig, args), args, lambda config: compare(config, progress=True),
         plot_compare, "fig2.png",
         lambda summary: _print_table(summary, columns, ("status_train", "status_ode", "status_reduced")))


def build_parser() -> argparse.ArgumentParser:
    """The `jomasim` argument parser with all its sub-commands."""
    parser = _OneLineParser(prog="jomasim", description="Simulate JoMA training dynamics and check them against training.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    _add_compare(commands)
    _add_simulate(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the `jomasim` command; user mistakes print one line and return exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except JomasimError as error:
        print(f"jomasim: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
