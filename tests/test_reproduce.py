"""`jomasim reproduce`: each reproduction's claim, checked on its output."""

import dataclasses
import json
from typing import NamedTuple

import numpy as np
import pytest

from jomasim._errors import at_least
from jomasim._settings import Settings, flat_fields, setting
from jomasim.cli import main
from jomasim.cli._main import _not_runnable
from jomasim.cli._overrides import field_values
from jomasim.corpus import CORPUS_VARIABLE
from jomasim.experiments.fig3 import Fig3Config, run_fig3
from jomasim.experiments.fig4 import Fig4Config, run_fig4
from jomasim.experiments.scan_snap import ScanSnapConfig
from jomasim.experiments.table1 import Table1Config
from jomasim.experiments.wikitext import WikitextConfig
from jomasim.io import non_finite_entries
from jomasim.runs import REPRODUCTIONS, Reproduction, reproduce_all


@pytest.fixture(scope="module")
def fig4():
    result = run_fig4(Fig4Config())
    return result.arrays(), result.summary()


def test_fig4_discrete_update_gets_sparse_then_dense(fig4):
    data, summary = fig4
    discrete = summary["discrete"]
    assert discrete["entropy_initial"] == pytest.approx(np.log(10))
    assert 0 < discrete["entropy_min_step"] < len(data["discrete_entropy"]) - 1, "interior minimum"
    assert discrete["entropy_min"] < discrete["entropy_final"] - 0.2, "rebounds"
    assert discrete["entropy_final"] < discrete["entropy_limit"], "still below the limit after 5000 steps"
    assert data["discrete_v"].shape == (50, 10) and np.all(np.diff(data["mu"]) > 0)


def test_fig4_ode_dips_and_converges_salient_first(fig4):
    _, summary = fig4
    ode = summary["ode"]
    assert ode["status"] == "ok" and 0 < ode["entropy_min_time"] < 1.0
    assert ode["entropy_min"] < ode["entropy_final"] - 0.5
    assert ode["entropy_final"] == pytest.approx(ode["entropy_limit"], abs=1e-4)
    predicted, measured = np.asarray(ode["convergence_time_predicted"]), np.asarray(ode["convergence_time_measured"])
    assert np.all(np.diff(measured) <= 0), "larger targets converge first"
    np.testing.assert_allclose(measured, predicted, atol=0.011)  # save spacing 0.005 + J24 quadrature


def test_fig3_most_salient_token_wins_and_V_is_low_rank():
    result = run_fig3(Fig3Config())
    summary = result.summary()
    assert result.status_train == "ok"
    assert result.winner[0] == result.predicted_winner[0] == int(np.argmax(result.delta[:, 0]))
    assert summary["winner_in_salient"] >= 0.9
    assert result.sigma_ratio == summary["sigma_ratio"] >= 5.0
    assert summary["entropy_final"] < summary["entropy_initial"] - 1.5, "attention gets sparse"


@pytest.mark.slow
def test_cli_writes_and_replaces_a_reproduction(tmp_path, capsys):
    arguments = ["reproduce", "fig4", "--mu", "1.5,2.5,3.5", "--out", str(tmp_path)]
    assert main(arguments) == 0
    folder = tmp_path / "reproduce-fig4"
    assert {path.name for path in folder.iterdir()} == {"fig4.png", "fig4.npz", "summary.json", "config.json"}
    assert json.loads((folder / "summary.json").read_text())["mu"] == [1.5, 2.5, 3.5]
    assert main(["reproduce", "fig4", "--mu-seed", "3", "--set", "iterations=3000", "--set", "fig4.converged=0.02",
                 "--out", str(tmp_path)]) == 0
    config = json.loads((folder / "config.json").read_text())["config"]
    assert (config["mu_seed"], config["iterations"], config["converged"]) == (3, 3000, 0.02)
    assert np.load(folder / "fig4.npz")["discrete_entropy"].shape == (3000,), "the run used the setting"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")], "no partial folders left"
    capsys.readouterr()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["fig3", "--mu", "1,2"], "--mu does not apply to fig3"),
        (["fig4", "--mu", "1,x"], "--mu: mu='1,x' is not allowed; mu takes a comma-separated list of numbers"),
        (["fig4", "--mu", "0.04,2"], "every target must exceed"),
        (["fig4", "--mu-seed", "-1"], "mu_seed=-1 is not allowed"),
        (["fig3", "--set", "seed=99999999999999999999"], "seed=99999999999999999999 is not allowed"),
        (["fig4", "--set", "iterations=abc"], "iterations of fig4 takes an integer"),
        (["fig4", "--set", "iterations=0"], "iterations=0 is not allowed"),
        (["fig4", "--set", "nope=1"], "--set field of fig4='nope' is not allowed"),
        (["fig4", "--set", "iterations"], "write FIELD=VALUE or NAME.FIELD=VALUE"),
        (["fig4", "--set", "table1.seeds=1"], "--set reproduction='table1' is not allowed"),
        (["all", "--set", "seeds=1"], "needs the reproduction it is for with 'all'"),
        (["table1", "--set", "latents=10:20:30"], "a comma-separated list of integer:integer tuples"),
    ],
)
def test_bad_reproduction_options_are_one_line(arguments, message, tmp_path, capsys):
    """Exit code 2 and one line, whether the parser refuses the text (a usage error) or the
    config refuses the value."""
    try:
        code = main(["reproduce", *arguments, "--out", str(tmp_path)])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not any(tmp_path.iterdir()), "nothing written"


def test_unknown_reproduction_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "fig2000"])
    assert exit_info.value.code == 2 and "invalid choice: 'fig2000'" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduce_all_writes_one_offline_page(tmp_path):
    scan_snap = ScanSnapConfig(panels=(1,), eta_z=(1.0, 3.0), eta_ratio=(2.0,), seeds=1, steps=20, batch=16, length=24, eval_batch=32)
    folder, entries = reproduce_all({"fig4": Fig4Config(mu=(1.5, 2.5, 3.5)), "scan-snap": scan_snap}, tmp_path,
                                    skipped={"wikitext": "no corpus: give --corpus"})
    assert [entry.name for entry in entries] == ["fig4", "scan-snap", "wikitext"]
    page = (folder / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2, "both figures embedded"
    assert "discrete.entropy_min" in page and "all_decreasing_in_eta_z" in page and "eta_ratio" in page
    assert "not run:</b> no corpus: give --corpus" in page
    assert "src='http" not in page and "href=" not in page, "nothing outside the page"
    assert {path.name for path in tmp_path.iterdir()} == {"reproduce-all", "reproduce-fig4", "reproduce-scan-snap"}


def _as_text(value) -> str:
    """A config value written as `--set` takes it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, item)) if isinstance(item, tuple) else _as_text(item) for item in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_every_config_field_can_be_set_from_text(name):
    config_type = REPRODUCTIONS[name].config
    for field in dataclasses.fields(config_type):
        assert field_values(config_type, name, [f"{field.name}={_as_text(field.default)}"]) == {field.name: field.default}
    assert field_values(config_type, name, ["other.x=1"]) == {}, "assignments for other reproductions are skipped"


def test_set_lists_and_an_input_folder_for_reproduce_all(monkeypatch):
    assert field_values(WikitextConfig, "wikitext", ["depths=1, 2,5", "ablation_lrs=", "eval_windows=none"]) == {
        "depths": (1, 2, 5), "ablation_lrs": (), "eval_windows": None}
    assert field_values(Table1Config, "table1", ["latents=10:20,20:30", "latents=5:6"]) == {"latents": ((5, 6),)}
    monkeypatch.delenv(CORPUS_VARIABLE, raising=False)
    assert "no corpus" in _not_runnable("wikitext", {}, ["table1.corpus=x"])
    assert _not_runnable("wikitext", {}, ["wikitext.corpus=/data/wikitext-2"]) is None


def test_non_finite_numbers_are_found_wherever_they_sit():
    summary = {"a": 1.0, "runs": [{"x": [0.5, float("nan")]}, {"x": np.array([np.inf, 1.0])}], "name": "ok", "n": 3}
    assert non_finite_entries(summary) == ["runs.0.x.1", "runs.1.x.0"]
    assert non_finite_entries({"a": [1.0, None, "text"], "b": np.float64(2.0), "c": ("linear", ("silu",))}) == []
    assert non_finite_entries({"d": np.array(np.nan), "e": (1.0, np.array([2.0, np.nan]))}) == ["d", "e.1.1"]


@pytest.mark.slow
def test_a_reproduction_that_overflows_is_a_failure_not_a_result(tmp_path, capsys):
    """fig4 with an absurd step overflows: the run is written with the places named, exit code 1."""
    assert main(["reproduce", "fig4", "--set", "step=1e308", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "not finite" in error and "discrete.entropy_final" in error
    summary = json.loads((tmp_path / "reproduce-fig4" / "summary.json").read_text())
    assert "discrete.entropy_final" in summary["failures"]


@pytest.mark.parametrize("name", list(REPRODUCTIONS))
def test_each_reproduction_has_its_own_help_listing_every_field(name, capsys):
    """`jomasim reproduce NAME --help`: what it shows, its run time, and every field of its config
    with a help text (each field declared once, with its help, in its config), its default."""
    with pytest.raises(SystemExit) as stop:
        main(["reproduce", name, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # as one line: the help wraps
    assert text.startswith(f"usage: jomasim reproduce {name}") and REPRODUCTIONS[name].run_time.split(";")[0] in text
    for field in flat_fields(REPRODUCTIONS[name].config).values():
        assert field.help, f"{name}: field {field.name} has no help"
        assert f" {field.name} {' '.join(field.help.split()[:3])}" in text and f"(default {field.default}" in text
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    assert "fields (--set" not in capsys.readouterr().out


@dataclasses.dataclass(frozen=True)
class _ToyConfig(Settings):
    """A study defined here: `size` numbers 0, 1, … times `scale`."""

    size: int = setting(3, "how many numbers", check=at_least(1))
    scale: float = setting(1.0, "what they are multiplied by")


class _ToyResult(NamedTuple):
    values: np.ndarray

    def arrays(self) -> dict:
        return {"values": self.values}

    def summary(self) -> dict:
        return {"total": float(self.values.sum()),
                "table": [{"index": index, "value": float(value)} for index, value in enumerate(self.values)]}


def _toy_figure(result: _ToyResult, path) -> None:
    path.write_text(f"{len(result.values)} values")


def test_a_study_registered_in_one_line_runs_from_the_command_line(tmp_path, monkeypatch, capsys):
    """A new reproduction is its config, its typed result, its figure and one registry entry: the
    command line then gives it its options and `--set`, and the writer its files, its time and its
    failures."""
    monkeypatch.setitem(REPRODUCTIONS, "toy", Reproduction(
        _ToyConfig, lambda config: _ToyResult(np.arange(config.size) * config.scale), _toy_figure, "numbers",
        options=("size",)))
    assert main(["reproduce", "toy", "--size", "4", "--set", "scale=2", "--out", str(tmp_path), "--quiet"]) == 0
    folder = tmp_path / "reproduce-toy"
    assert {path.name for path in folder.iterdir()} == {"toy.png", "toy.npz", "toy_table.csv", "summary.json", "config.json"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["total"] == 12.0 and summary["wall_seconds"] >= 0 and "failures" not in summary
    np.testing.assert_array_equal(np.load(folder / "toy.npz")["values"], [0.0, 2.0, 4.0, 6.0])
    record = json.loads((folder / "config.json").read_text())
    assert record["reproduction"] == "toy" and record["config"] == {"size": 4, "scale": 2.0} and "environment" in record
    assert (folder / "toy_table.csv").read_text().splitlines()[1:] == ["0,0.0", "1,2.0", "2,4.0", "3,6.0"]
    capsys.readouterr()
    # a number that is not finite is named, the run kept, and the command fails
    with np.errstate(over="ignore"):
        assert main(["reproduce", "toy", "--set", "scale=1e308", "--out", str(tmp_path), "--quiet"]) == 1
    assert "toy computed numbers that are not finite (total" in capsys.readouterr().err
    assert json.loads((folder / "summary.json").read_text())["failures"] == ["total", "table.2.value"]
