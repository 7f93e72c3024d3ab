"""CLI fuzzing: random and hostile argument lists end in exit 0 or one clean error line.

The jobs themselves are replaced by stubs that stop once the command has checked its input (the
config is built, the sweep's points resolved and its devices chosen), so several hundred argument
lists run in seconds and none can start a long job or a multi-process runtime.
"""

import argparse
import random

import pytest

from jomasim.cli import _main as cli
from jomasim.sweep import local_mesh
from jomasim.sweep._grid import resolve_points

CASES = 400


class _Reached(Exception):
    """Raised by a stub: the command accepted its input and got as far as the job."""


def _reached(*args, **kwargs):
    raise _Reached


def _checked_sweep(task, grid, folder, *, devices=None, **kwargs):
    resolve_points(grid, task)
    local_mesh(devices)
    raise _Reached


def _options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every sub-command with its option strings, read from the real parser."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {name: [flag for action in sub._actions for flag in action.option_strings]
            for name, sub in commands.choices.items()}


def _values(tmp_path) -> list[str]:
    grid = tmp_path / "grid.toml"
    grid.write_text('[axes]\neta_w = [0.1, 0.2]\n[settings]\nsteps = 10\nmode = "train"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("[axes\neta_w = ")
    afile = tmp_path / "a-file"
    afile.write_text("x")
    return ["", " ", "0", "1", "-1", "2", "3", "7", "0.1", "1e-12", "1e309", "-1e309", "nan", "inf", "-inf", "abc",
            "0:8", "8:0", "0:8:0", "0:x", "1,2", "1,,2", ",", "0.1,-0.2", "linear", "softmax", "exp", "relu", "gelu",
            "gaussian", "random", "tsit5", "kvaerno5", "euler", "theory", "train", "both", "fig3", "fig4", "scan-snap",
            "bounce", "None", "True", "💥", "\x00", "-", "--", "x" * 300, "1.27,1.4,2.2", "entropy_final_train:eta_w",
            "a:b:c:d", str(grid), str(broken), str(afile), str(tmp_path / "missing.toml"), str(tmp_path / "out"),
            "/dev/null", "127.0.0.1:1", "runs"]


def _argument_list(rng: random.Random, options: dict[str, list[str]], values: list[str]) -> list[str]:
    command = rng.choice([*options, *options, *options, "", "bogus", "--help", "--version"])
    arguments = [command] if command else []
    flags = options.get(command, ["--out", "--seed"])
    for _ in range(rng.randint(0, 5)):
        draw = rng.random()
        if draw < 0.8:
            arguments.append(rng.choice(flags))
            if rng.random() < 0.9:
                arguments.append(rng.choice(values))
        elif draw < 0.9:
            arguments.append(rng.choice(["--no-such-option", "-x", "--out=", "--seeds=-3"]))
        else:
            arguments.append(rng.choice(values))
    return arguments


def test_random_and_hostile_arguments_end_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("run_experiment", "reproduce", "reproduce_all", "initialize_processes"):
        monkeypatch.setattr(cli, name, _reached)
    monkeypatch.setattr(cli, "run_sweep", _checked_sweep)
    options = _options(cli.build_parser())
    values = _values(tmp_path)
    rng = random.Random(20261122)
    outcomes = {"accepted": 0, "exit 0": 0, "exit 2": 0}
    for _ in range(CASES):
        arguments = _argument_list(rng, options, values)
        try:
            code = cli.main(arguments)
        except _Reached:
            outcomes["accepted"] += 1
            capsys.readouterr()
            continue
        except SystemExit as stop:
            code = stop.code
        except BaseException as error:  # noqa: BLE001 (the failure to report)
            pytest.fail(f"{arguments!r} raised {type(error).__name__}: {error}")
        captured = capsys.readouterr()
        assert code in (0, 2), f"{arguments!r} exited {code}"
        assert "Traceback" not in captured.err + captured.out, arguments
        if code == 2:
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("jomasim"), f"{arguments!r}: {captured.err!r}"
        outcomes[f"exit {code}"] += 1
    print(outcomes)
    assert outcomes["accepted"] >= 20 and outcomes["exit 2"] >= 100, outcomes
    leftovers = [path for path in tmp_path.rglob("*") if path.name.startswith(".")]
    assert not leftovers, f"partial outputs left behind: {leftovers}"
