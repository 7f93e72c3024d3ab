"""The `jomasim` command line: a small real run, its files, and one-line errors."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jomasim.cli import main

SMALL_RUN = ["simulate", "--seeds", "2", "--t-end", "30", "--saves", "7", "--rtol", "1e-5", "--atol", "1e-8"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(SMALL_RUN + ["--out", str(out), "--name", "small"]) == 0
    return out / "small"


def test_simulate_writes_a_complete_run(run_folder, capsys):
    assert sorted(p.name for p in run_folder.iterdir()) == ["config.json", "data.npz", "summary.json", "theory.png"]
    config = json.loads((run_folder / "config.json").read_text())
    assert config["config"]["seeds"] == 2 and config["seeds"] == [0, 1]
    assert config["environment"]["packages"]["diffrax"]
    summary = json.loads((run_folder / "summary.json").read_text())
    assert len(summary["nc_zhat_z"]) == 2 and all(value > 0.97 for value in summary["nc_zhat_z"])
    assert summary["status_ode"] == ["ok", "ok"] and summary["wall_seconds"] > 0
    data = np.load(run_folder / "data.npz")
    assert data["z_ode"].shape == (2, 7, 20) and data["nc_zhat_z"].shape == (2, 7)
    assert not [p for p in run_folder.parent.iterdir() if p.name.startswith(".")], "no partial folders left"


def test_existing_run_folder_is_refused(run_folder, capsys):
    assert main(SMALL_RUN + ["--out", str(run_folder.parent), "--name", "small"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "already exists" in error


def _exit_code(arguments):
    """The exit code of `jomasim ARGUMENTS`, whether argparse exits or `main` returns."""
    try:
        return main(arguments)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["simulate", "--attention", "cosine"], "invalid choice: 'cosine'"),
        (["simulate", "--eta-w", "-0.1"], "eta_w=-0.1"),
        (["simulate", "--temperature", "0"], "temperature=0.0"),
        (["simulate", "--seeds", "0"], "seeds=0"),
        (["simulate", "--saves", "abc"], "invalid int value: 'abc'"),
        (["compare", "--attention", "cosine"], "invalid choice: 'cosine'"),
        (["compare", "--eta-w", "-0.1"], "eta_w=-0.1"),
        (["compare", "--eta-z", "nan"], "eta_z=nan"),
        (["compare", "--steps", "0"], "steps=0"),
        (["compare", "--save-every", "500", "--steps", "100"], "save_every=500"),
        (["compare", "--variant", "uniform"], "invalid choice: 'uniform'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(arguments, expected, capsys, tmp_path):
    out = ["--out", str(tmp_path)] if arguments[0] in ("simulate", "compare") else []
    assert _exit_code(arguments + out) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and expected in error
    assert not list(tmp_path.iterdir()), "nothing is written for a rejected command"


@pytest.mark.parametrize("command", [SMALL_RUN, ["compare", "--steps", "10", "--save-every", "5"]])
def test_output_folder_that_is_a_file(command, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    assert main(command + ["--out", str(target)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "is a file; give a folder" in error


@pytest.fixture(scope="module")
def compare_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["compare", "--seeds", "2", "--steps", "200", "--save-every", "50", "--out", str(out), "--name", "small"]) == 0
    return out / "small"


def test_compare_writes_a_complete_run(compare_folder):
    assert sorted(p.name for p in compare_folder.iterdir()) == ["config.json", "data.npz", "fig2.png", "summary.json"]
    config = json.loads((compare_folder / "config.json").read_text())
    assert config["command"] == "compare" and config["seeds"] == [0, 1]
    assert config["config"]["steps"] == 200 and config["environment"]["packages"]["flax"]
    summary = json.loads((compare_folder / "summary.json").read_text())
    assert summary["step"] == [200, 200] and len(summary["nc_ode_z"]) == 2
    data = np.load(compare_folder / "data.npz")
    assert data["steps"].tolist() == [0, 50, 100, 150, 200] and data["entropy_train"].shape == (2, 5)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".", ".."])
def test_run_names_must_be_one_folder(name, tmp_path, capsys):
    assert main(SMALL_RUN + ["--out", str(tmp_path), "--name", name]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"run name {name!r} is not allowed" in error
    assert not list(tmp_path.iterdir())


def test_full_disk_gives_one_line_and_leaves_no_run(tmp_path, capsys, monkeypatch):
    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert main(SMALL_RUN + ["--out", str(tmp_path), "--name", "full"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "No space left on device" in error and "cannot write" in error
    assert not list(tmp_path.iterdir()), "neither the run nor its partial folder is left"


def test_same_config_gives_bitwise_identical_results_in_a_fresh_process(run_folder, tmp_path):
    command = [sys.executable, "-m", "jomasim.cli", *SMALL_RUN, "--out", str(tmp_path), "--name", "again"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    first, again = np.load(run_folder / "data.npz"), np.load(tmp_path / "again" / "data.npz")
    assert sorted(first.files) == sorted(again.files)
    for name in first.files:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    recorded = json.loads((tmp_path / "again" / "config.json").read_text())
    environment = recorded["environment"]
    assert recorded["seeds"] == [0, 1] and recorded["config"]["seeds"] == 2
    assert {"jax", "diffrax", "flax", "optax"} <= set(environment["packages"]) and environment["devices"]
