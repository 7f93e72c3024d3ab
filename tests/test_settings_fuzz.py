"""Bad values for every declared setting, generated from the configs' own fields (`flat_fields`):
through the options of `compare` and `simulate`, a sweep's fixed settings, and `--set` of every
reproduction. Each must end with exit code 2 and one line that names the field and the value,
no traceback, and nothing written that looks like a finished run."""

import contextlib
import io
import typing

import pytest

from jomasim._settings import _is_list, _optional, flat_fields
from jomasim.cli import _main as cli
from jomasim.experiments import block_theory, compare
from jomasim.experiments.block_sweep import SWEEP_PER_POINT, BlockSweep
from jomasim.experiments.fit import FitConfig
from jomasim.experiments.transformer import TransformerCompareConfig
from jomasim.runs import REPRODUCTIONS

ALLOWED = {
    ("fig4", "v0", "-1"): "any finite initial value is one (the targets must exceed it, checked with them)",
    ("wikitext", "corpus", "no-such-folder"): "a folder's existence is checked when the run reads it",
    ("bounce", "corpus", "no-such-folder"): "a folder's existence is checked when the run reads it",
}
"""Generated values that are values after all, and why."""


def bad_values(kind) -> list[str]:
    """Text that no field of type `kind` takes: wrong types, NaN, infinities, empty, huge, and -1
    (out of bounds for every count, size, rate and tolerance)."""
    inner, _ = _optional(kind)
    if _is_list(inner):
        return [",", "1,,2", "x,y"] if typing.get_args(inner)[0] is not str else [",", "a,,b"]
    if typing.get_origin(inner) is tuple:
        return ["x", "1:2:3:4"]
    if inner is bool:
        return ["maybe", ""]
    if inner is int:
        return ["abc", "1.5", "", "nan", "inf", "-1", "99999999999999999999999999"]
    if inner is float:
        return ["abc", "", "nan", "inf", "-inf", "-1", "1e400"]
    return ["", "no-such-folder"]


class _Reached(Exception):
    """A command got past every check: the bad value was taken."""


def _reached(*args, **kwargs):
    raise _Reached


def _cases(out: str) -> list[tuple[str, str, str, list[str]]]:
    cases = []
    for command, config in (("compare", compare.CompareConfig), ("simulate", block_theory.BlockTheoryConfig)):
        for field in flat_fields(config).values():
            for value in bad_values(field.type):
                cases.append((command, field.name, value, [command, f"--{field.name.replace('_', '-')}={value}", "--out", out]))
    # the Transformer's own switches, under --model transformer
    own = set(flat_fields(TransformerCompareConfig)) - set(flat_fields(compare.CompareConfig))
    for field in (flat_fields(TransformerCompareConfig)[name] for name in sorted(own)):
        for value in bad_values(field.type):
            cases.append(("compare", field.name, value,
                          ["compare", "--model", "transformer", f"--{field.name.replace('_', '-')}={value}", "--out", out]))
    task = BlockSweep()
    for field in flat_fields(compare.CompareConfig).values():
        if field.name in (*task.axes, *SWEEP_PER_POINT):
            continue
        for value in bad_values(field.type):
            cases.append(("sweep", field.name, value, ["sweep", f"--{field.name.replace('_', '-')}={value}", "--out", out]))
    for field in flat_fields(FitConfig).values():
        for value in bad_values(field.type):
            cases.append(("fit", field.name, value, ["fit", out, f"--{field.name.replace('_', '-')}={value}"]))
    for name, entry in REPRODUCTIONS.items():
        # the input a reproduction needs, present, so that only the bad value can stop it
        needed = ["--checkpoints", out] if name == "pretrained" else []
        for field in flat_fields(entry.config).values():
            for value in bad_values(field.type):
                cases.append((name, field.name, value,
                              ["reproduce", name, *needed, "--set", f"{field.name}={value}", "--out", out]))
    return [case for case in cases if case[:3] not in ALLOWED]


def _names_value(message: str, value: str) -> bool:
    """Whether the message shows the value as given or as read (`1e400` is read as `inf`)."""
    try:
        read = repr(float(value))
    except ValueError:
        read = value
    return value in message or read in message


@pytest.mark.slow
def test_every_setting_refuses_bad_values_in_one_line(tmp_path, monkeypatch):
    # the work behind each command, past every check: reaching it means the value was taken
    monkeypatch.setattr(compare, "run_members", _reached)
    monkeypatch.setattr(block_theory, "run_members", _reached)
    for name in ("reproduce", "reproduce_all", "run_sweep"):
        monkeypatch.setattr(cli, name, _reached)
    out = tmp_path / "runs"
    out.mkdir()
    cases = _cases(str(out))
    assert len(cases) > 500 and {case[0] for case in cases} >= {"compare", "simulate", "sweep", "fit", *REPRODUCTIONS}
    problems = []
    for command, field, value, arguments in cases:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(arguments)
            except _Reached:
                code = "accepted"
            except SystemExit as stop:
                code = stop.code
        message = stderr.getvalue().strip()
        named = field in message or f"--{field.replace('_', '-')}" in message  # the field, or its option
        if code != 2 or message.count("\n") or "Traceback" in message or not named or not _names_value(message, value):
            problems.append(f"{command} {field}={value!r}: exit {code}: {message[:160]}")
    assert not problems, f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:20])
    finished = [path for path in out.rglob("*") if not path.name.startswith(".")] if out.exists() else []
    assert not finished, f"rejected commands left {finished}"


@pytest.mark.parametrize("value", ["-1", "1e400", "abc"])
def test_the_python_api_checks_through_the_same_fields(value):
    """A config built in Python refuses what the command line refuses (the checks live with the fields)."""
    from jomasim import JomasimError

    with pytest.raises(JomasimError, match="eta_w="):
        compare.CompareConfig(eta_w=float(value) if value != "abc" else value)
