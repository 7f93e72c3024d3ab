"""The `jomasim` command line."""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ._errors import JomasimError
from .activation import ACTIVATIONS
from .attention import ATTENTION_KINDS
from .data import VARIANTS
from .experiments.block_theory import BlockTheoryConfig, run_block_theory, summarize
from .io import environment, run_directory, unique_run_name, write_json, write_npz
from .plots import plot_block_theory
from .theory._simulate import SOLVERS


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_simulate(commands) -> None:
    parser = commands.add_parser(
        "simulate",
        help="integrate the joint and the reduced JoMA flows of the §3.5 block for several seeds",
        description="Integrate the joint (W, z) gradient flow and the reduced JoMA flow of the §3.5 block "
        "with Diffrax, vmapped over seeds, and check Theorem 1. Defaults: the paper's Fig. 2 setting.",
    )
    defaults = BlockTheoryConfig()
    parser.add_argument("--attention", choices=ATTENTION_KINDS, default=defaults.attention)
    parser.add_argument("--activation", choices=tuple(ACTIVATIONS), default=defaults.activation)
    parser.add_argument("--eta-w", type=float, default=defaults.eta_w, help="rate of the MLP weights W")
    parser.add_argument("--eta-z", type=float, default=defaults.eta_z, help="rate of the attention logits z")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--t-end", type=float, default=defaults.t_end, help="end time (rates 1, t = 200: 2000 SGD steps at lr 0.1)")
    parser.add_argument("--saves", type=int, default=defaults.saves, help="number of save times")
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=defaults.first_seed)
    parser.add_argument("--variant", choices=VARIANTS, default=defaults.variant, help="token-frequency model")
    parser.add_argument("--saliency", type=float, default=defaults.saliency, help="factor on the distinct tokens' frequencies")
    parser.add_argument("--solver", choices=tuple(SOLVERS), default=defaults.solver)
    parser.add_argument("--rtol", type=float, default=defaults.rtol)
    parser.add_argument("--atol", type=float, default=defaults.atol)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run folder")
    parser.add_argument("--name", default=None, help="run folder name (default: simulate-ATTENTION-ACTIVATION[-N])")
    parser.set_defaults(handler=_simulate)


def _simulate(args) -> None:
    fields = {field.name for field in dataclasses.fields(BlockTheoryConfig)}
    config = BlockTheoryConfig(**{name: value for name, value in vars(args).items() if name in fields})
    name = args.name or unique_run_name(args.out, f"simulate-{config.attention}-{config.activation}")
    started = time.perf_counter()
    with run_directory(args.out, name) as folder:
        results = run_block_theory(config)
        summary = summarize(results)
        summary["wall_seconds"] = time.perf_counter() - started
        write_json(folder / "config.json", {"command": "simulate", "config": dataclasses.asdict(config),
                                            "seeds": config.seed_list, "environment": environment()})
        write_npz(folder / "data.npz", **{k: v for k, v in results.items() if not k.startswith("messages_")})
        plot_block_theory(results, folder / "theory.png")
        write_json(folder / "summary.json", summary)
    _print_summary(summary, args.out / name)


def _print_summary(summary: dict, folder: Path) -> None:
    columns = [key for key in ("nc_zhat_z", "nc_zhat1_z", "nc_zhat2_z", "nc_reduced_z", "entropy_joint_final") if key in summary]
    print("seed  " + "  ".join(f"{column:>19}" for column in columns) + "  status")
    for row, seed in enumerate(summary["seeds"]):
        values = "  ".join(f"{summary[column][row]:19.4f}" for column in columns)
        status = summary["status_joint"][row]
        if summary["status_reduced"][row] != "ok":
            status += f" / reduced: {summary['status_reduced'][row]}"
        print(f"{seed:4d}  {values}  {status}")
    print(f"wrote {folder}/ (config.json, data.npz, summary.json, theory.png) in {summary['wall_seconds']:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    """The `jomasim` argument parser with all its sub-commands."""
    parser = _OneLineParser(prog="jomasim", description="Simulate JoMA training dynamics and check them against training.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
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
