"""The `jomasim` command line: a small real run, its files, and one-line errors."""

import errno
import io
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import jomasim as js
from jomasim.cli import main
from jomasim.cli._main import _crawled_at_relu_kinks
from jomasim.cli._print import print_agreement, print_stops, print_table, print_theorem1
from jomasim.experiments.compare import CompareConfig
from jomasim.io import claim_run_name, environment, process_owner, run_directory, source_revision

# the flows at rates (2, 1) up to t = 15: the flows at rates (0.1, 0.05) up to t = 300, which
# the SGD steps of `compare_folder` follow
SMALL_RUN = ["simulate", "--seeds", "2", "--eta-w", "2", "--eta-z", "1", "--t-end", "15", "--saves", "7", "--rtol", "1e-5",
             "--atol", "1e-8"]


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
    assert summary["status_ode"] == ["ok", "ok"] and 0 < summary["compile_seconds"] < summary["wall_seconds"]
    data = np.load(run_folder / "data.npz")
    assert data["z_ode"].shape == (2, 7, 20) and data["nc_zhat_z"].shape == (2, 7)
    assert not [p for p in run_folder.parent.iterdir() if p.name.startswith(".")], "no partial folders left"


@pytest.mark.parametrize("terminal", [True, False])
def test_a_run_says_what_it_is_doing_on_a_terminal_only(run_folder, tmp_path, monkeypatch, capsys, terminal):
    """On a terminal the compile and the compiled run each get a line; piped, standard error is
    empty; either way the last line says how much of the run was compiling."""
    stderr = io.StringIO()
    stderr.isatty = lambda: terminal
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(SMALL_RUN + ["--out", str(tmp_path)]) == 0
    shown = stderr.getvalue()
    assert ("compiling: " in shown and "integrating the flows (2 members): " in shown) == terminal
    assert terminal or shown == ""
    assert "s of it compiling)" in capsys.readouterr().out.splitlines()[-1]


def test_existing_run_folder_is_refused(run_folder, capsys):
    assert main(SMALL_RUN + ["--out", str(run_folder.parent), "--name", "small"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "already exists" in error


def test_a_run_claims_its_folder_so_a_second_run_of_that_name_cannot_overwrite_it(tmp_path):
    """While a run writes, its folder exists (empty): a second run of the same name is refused at its
    start instead of replacing the first at its end; default names claim the next free suffix."""
    with run_directory(tmp_path, "a") as first:
        assert (tmp_path / "a").is_dir() and not list((tmp_path / "a").iterdir())
        with pytest.raises(js.InvalidPathError, match="already exists"):
            with run_directory(tmp_path, "a"):
                pass
        (first / "summary.json").write_text("{}")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["summary.json"]
    assert [claim_run_name(tmp_path, "a") for _ in range(2)] == ["a-2", "a-3"]
    with pytest.raises(RuntimeError):
        with run_directory(tmp_path, "a-2", claimed=True):
            raise RuntimeError("the run fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a-3"], "a failed run gives up its claim"


@pytest.mark.slow
def test_two_runs_started_together_with_the_default_name_leave_two_complete_folders(tmp_path):
    command = [sys.executable, "-m", "jomasim.cli", *SMALL_RUN, "--out", str(tmp_path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert folders == ["simulate-softmax-linear", "simulate-softmax-linear-2"]
    for folder in folders:
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["config.json", "data.npz", "summary.json",
                                                                        "theory.png"]


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
        (["simulate", "--saves", "abc"], "saves='abc' is not allowed; saves takes an integer"),
        (["compare", "--attention", "cosine"], "invalid choice: 'cosine'"),
        (["compare", "--eta-w", "-0.1"], "eta_w=-0.1"),
        (["compare", "--eta-z", "nan"], "eta_z=nan"),
        (["compare", "--steps", "0"], "steps=0"),
        (["compare", "--save-every", "500", "--steps", "100"], "save_every=500"),
        (["compare", "--variant", "uniform"], "invalid choice: 'uniform'"),
        (["compare", "--solver", "euler"], "takes fixed steps; give dt0 > 0"),
        (["simulate", "--solver", "euler", "--dt0", "-1"], "dt0=-1.0"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["compare", "--seeds", "1", "--steps", "4", "--save-every", "2", "--first-seed", "18446744073709551616"],
         "first_seed=18446744073709551616 is not allowed; seeds must be integers in [0, 4294967295]"),
        (["compare", "--first-seed", "4294967295", "--seeds", "2"], "first_seed + seeds - 1=4294967296"),
        (["sweep", "--eta-w", "0.1", "--process-id", "-1"], "process_id=-1 is not allowed"),
        (["sweep", "--eta-w", "0.1", "--num-processes", "0"], "num_processes=0 is not allowed"),
        (["sweep", "--eta-w", "0.1", "--merge-timeout", "-1"], "merge_timeout=-1.0 is not allowed"),
        (["sweep", "--eta-w", "0.1", "--process-id", "2", "--num-processes", "2"], "process_id=2 is not allowed"),
        (["sweep", "--init-scale", "1,,2"], "init_scale='1,,2' is not allowed"),
        (["reproduce", "fig4", "--out", ""], "out='' is not allowed; give a folder"),
        (["compare", "--seeds", "1000000000"], "1000000000 seeds × 2000 steps with 101 saves needs about"),
        (["compare", "--steps", "1000000000000"], "is available; lower --seeds, --steps, the saves"),
        (["simulate", "--saves", "100000000000"], "8 seeds with 100000000000 saves needs about"),
        (["sweep", "--seed", "0:100000000000"], "(100000000000 values) needs about"),
        (["sweep", "--eta-w", "0.1", "--steps", "10000000000"], "points needs about"),
        (["compare", "--model", "transformer", "--sequence-length", "100000000", "--seeds", "1"],
         "lower --seeds, --steps, the saves (raise --save-every) or the sizes (--dim, --n-classes, --n-distinct, "
         "--n-common, --sequence-length"),
        (["compare", "--model", "transformer", "--eval-sequences", "100000000", "--seeds", "1"], "TiB of memory"),
        (["reproduce", "fig4", "--set", "components=100000000"], "fig4 with 100000000 components"),
        (["reproduce", "table1", "--set", "test_batch=100000000"], "table1 with 5 seeds side by side needs about"),
        (["reproduce", "scan-snap", "--set", "batch=1000000000"], "lower seeds, eta_z or eta_ratio"),
        (["sweep", "--eta-w", "0.1", "--num-processes", "2"], "num_processes=2 is not allowed without --coordinator"),
        (["compare", "--out", "x" * 300], "a folder name has at most 255 bytes"),
        (["compare", "--name", "x" * 201], "it must be at most 200 bytes"),
        (["sweep", "--eta-w", "0.1", "--plot", "bogus:eta_w"], "plot value='bogus' is not allowed"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(arguments, expected, capsys, tmp_path):
    out = ["--out", str(tmp_path)] if "--out" not in arguments else []
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
    """SGD at rates (0.1, 0.05) for 300 steps, its flows integrated by Euler with one SGD step."""
    out = tmp_path_factory.mktemp("runs")
    arguments = ["compare", "--seeds", "2", "--steps", "300", "--save-every", "50", "--eta-w", "0.1", "--eta-z", "0.05",
                 "--solver", "euler", "--dt0", "1"]
    assert main(arguments + ["--out", str(out), "--name", "small"]) == 0
    return out / "small"


def test_compare_writes_a_complete_run(compare_folder):
    assert sorted(p.name for p in compare_folder.iterdir()) == ["config.json", "data.npz", "fig2.png", "summary.json"]
    config = json.loads((compare_folder / "config.json").read_text())
    assert config["command"] == "compare" and config["seeds"] == [0, 1]
    assert config["config"]["steps"] == 300 and config["environment"]["packages"]["flax"]
    summary = json.loads((compare_folder / "summary.json").read_text())
    assert summary["last_step"] == [300, 300] and len(summary["nc_ode_z"]) == 2
    data = np.load(compare_folder / "data.npz")
    assert data["steps"].tolist() == [0, 50, 100, 150, 200, 250, 300] and data["entropy_train"].shape == (2, 7)


def test_euler_at_one_sgd_step_is_sgd(compare_folder):
    """The flows run at the training's rates with SGD steps as their clock: Euler with dt0 = 1 on
    the joint flow is SGD itself, to rounding."""
    data = np.load(compare_folder / "data.npz")
    np.testing.assert_allclose(data["z_ode"], data["z_train"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(data["V_ode"], data["V_train"], rtol=0, atol=1e-12)
    assert data["num_steps_ode"].tolist() == [300, 300]


def test_simulate_runs_the_flows_at_the_rates_given(run_folder, compare_folder):
    """`simulate` at rates (2, 1) up to t = 15 is the flow that SGD at rates (0.1, 0.05) follows for
    300 steps (time scales with the rates): the save times line up with the SGD steps, and SGD
    differs from its flow only by its first-order discretisation error."""
    flow, sgd = np.load(run_folder / "data.npz"), np.load(compare_folder / "data.npz")
    assert flow["steps"].tolist() == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]
    error = np.linalg.norm(flow["z_ode"] - sgd["z_train"], axis=-1) / np.linalg.norm(sgd["z_train"], axis=-1)
    assert error.max() < 1e-2


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


@pytest.mark.slow
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


def test_relu_flows_out_of_steps_get_a_note():
    out_of_steps = {"status_ode": ["ok", "max steps reached at t = 46.3"], "status_reduced": ["ok", "ok"]}
    relu = CompareConfig(activation="relu")
    assert _crawled_at_relu_kinks(relu, out_of_steps)
    assert not _crawled_at_relu_kinks(relu, {"status_ode": ["ok", "ok"], "status_reduced": ["ok", "blow-up at t = 9"]})
    assert not _crawled_at_relu_kinks(CompareConfig(activation="silu"), out_of_steps)
    assert not _crawled_at_relu_kinks(CompareConfig(activation="relu", solve=js.SolverOptions(solver="euler", dt0=1.0)), out_of_steps)


def test_the_table_prints_human_headers_a_dash_for_missing_numbers_and_a_legend(capsys):
    summary = {"seeds": [0, 1], "nc_zhat_z": [0.99, 0.98], "size_zhat_z": [8.0, None], "status_train": ["ok", "ok"]}
    print_table(summary, ("nc_zhat_z", "size_zhat_z", "nc_reduced_z"), ("status_train", "status_ode"))
    header, first, second, mean, legend = capsys.readouterr().out.splitlines()
    assert header.split() == ["seed", "NC(ẑ,z)", "size", "ẑ", "status"]
    assert second.split() == ["1", "0.9800", "–", "ok"] and mean.split() == ["mean", "0.9850", "8.0000"]
    assert legend.startswith("(NC(ẑ,z): Theorem 1's direction") and "size ẑ: Theorem 1's size" in legend


def test_theorem1_lines_give_direction_beside_size(capsys):
    summary = {"seeds": [0, 1], "nc_zhat_z": [0.99, 0.97], "size_zhat_z": [8.0, 9.0], "nc_zhat_tracked_z": [-0.2, 0.9],
               "size_zhat_tracked_z": [1.1, 1.4], "entropy_zhat": [0.0, 0.3], "entropy_train": [0.7, 0.7]}
    print_theorem1(summary, "train")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "  closed form (the paper's), b̄ held at x̄: direction NC(ẑ, z) 0.970–0.990, size ‖Δẑ‖/‖Δz‖ 8.00–9.00"
    assert lines[2] == "  differential form, b̄ tracked: direction NC(ẑ, z) -0.200 to 0.900, size ‖Δẑ‖/‖Δz‖ 1.10–1.40"
    assert lines[3].endswith("entropy 0.00–0.30 nats against 0.70 for training")


def test_a_run_that_stopped_early_never_agrees_at_every_save(capsys):
    """The conclusions follow the status: a seed whose flow stopped is read at the last save every
    run reached, and said so; no run agrees "at every save" on it."""
    summary = {"seeds": [0, 1], "last_step": [20.0, 100.0], "parted_step_reduced": [None, None],
               "nc_reduced_z": [1.0, 0.999], "status_reduced": ["max steps reached at step = 23.5", "ok"],
               "status_train": ["ok", "ok"]}
    print_stops(summary, "step")
    print_agreement(summary, "train", "step")
    stop, reduced = capsys.readouterr().out.splitlines()
    assert stop == ("seed 0: every number is read at step 20, the last save every run reached (the reduced JoMA ODE: "
                    "max steps reached at step = 23.5)")
    assert "at every save on 1 of 2 seeds; on 1 only up to where a run stopped early" in reduced
    summary["status_train"] = ["ok", "non-finite loss at step 50"]
    print_agreement(summary, "train", "step")
    assert "but on no seed to the end" in capsys.readouterr().out


def test_with_nothing_compared_after_the_start_no_run_agrees_and_theorem1_tests_nothing(capsys):
    """Every run stopped at the start (NC there is "–"): the conclusions say there is nothing to
    compare, never that a flow agrees, and Theorem 1's entropies (equal at the start) are not shown."""
    summary = {"seeds": [0, 1], "last_step": [0.0, 0.0], "parted_step_reduced": [None, None], "nc_reduced_z": [None, None],
               "size_reduced_z": [None, None], "nc_zhat_z": [None, None], "size_zhat_z": [None, None],
               "entropy_zhat": [2.7, 2.7], "entropy_train": [2.7, 2.7], "status_reduced": ["blow-up at step = 0"] * 2,
               "status_train": ["ok", "ok"]}
    print_theorem1(summary, "train")
    print_agreement(summary, "train", "step")
    out = capsys.readouterr().out
    assert "agrees" not in out and "entropy" not in out
    assert "  – on every seed: nothing to test" in out
    assert "the reduced JoMA ODE: no NC of z with training on any seed" in out


def test_agreement_lines_say_where_each_run_parts(capsys):
    summary = {"seeds": [0, 1], "parted_step_ode": [800, None], "nc_ode_z": [-0.1, 0.999], "parted_step_reduced": [None, None],
               "nc_reduced_z": [1.0, 1.0]}
    print_agreement(summary, "train", "step")
    ode, hint, reduced = capsys.readouterr().out.splitlines()
    assert ode.startswith("the joint ODE parts from training") and "1 of 2 seeds: seed 0 at step 800;" in ode
    assert "0 of them end at or above 0.99 again" in ode and "learning rate is too large" in hint
    assert reduced == "the reduced JoMA ODE agrees in direction with training (NC of z at least 0.99) at every save on all 2 seeds"
    sized = {**summary, "size_reduced_z": [9.5, 10.6], "size_ode_z": [None, 1.0]}
    print_agreement(sized, "train", "step")
    ode, _, reduced = capsys.readouterr().out.splitlines()
    assert reduced.endswith("on all 2 seeds; the size of its change is 9.50–10.60× training's (1: the right size)")
    assert ode.endswith("again; the size of its change is 1.00× training's (1: the right size)")
    print_agreement({"seeds": [3], "parted_step_reduced": [12.5], "nc_reduced_z": [0.995]}, "ode", "t")
    assert "seed 3 at t = 12.5; 1 of them end at or above 0.99 again" in capsys.readouterr().out
    drifted = {"seeds": [3, 4, 5], "parted_step_reduced": [12.5, None, 9.0], "nc_reduced_z": [0.995, 1.0, 0.9],
               "bbar_drift_parted_reduced": [0.404, None, 0.097]}
    print_agreement(drifted, "ode", "t")
    assert "b̄ of the joint ODE has drifted 10–40 % from the x̄" in capsys.readouterr().out.splitlines()[1]
    print_agreement({**drifted, "bbar_drift_parted_reduced": [0.404, None, 0.398]}, "ode", "t")
    assert "has drifted 40 % from" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_record_names_the_commit_and_the_settings_that_change_results(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    with jax.default_matmul_precision("highest"):
        record = environment()
    assert record["xla_flags"] == "--xla_backend_optimization_level=0"
    assert record["jax_default_matmul_precision"] == "highest"
    assert source_revision(tmp_path) is None, "no checkout, no commit"
    git = lambda *arguments: subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True,  # noqa: E731
                                            capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "module.py").write_text("x = 1\n")
    git("add", "module.py")
    git("-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-q", "-m", "one")
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert source_revision(tmp_path) == {"commit": git("rev-parse", "HEAD"), "modified": False}
    (tmp_path / "module.py").write_text("x = 2\n")
    assert source_revision(tmp_path)["modified"] is True


@pytest.mark.parametrize("arguments, message", [
    (["compare", "--seed", "3"], "unrecognized arguments: --seed 3"),
    (["compare", "--seeds", "2", "--seeds", "3"], "--seeds is given more than once"),
    (["compare", "--seeds=2", "--seeds", "3"], "--seeds is given more than once"),
    (["compare", "--seeds", "1_0"], "seeds='1_0' is not allowed; seeds takes an integer"),
    (["compare", "--eta-w", "1_0.5"], "eta_w='1_0.5' is not allowed"),
    (["compare", "--out", "runs\x1b[31m"], "give a folder (no control characters)"),
])
def test_options_parse_without_surprises(arguments, message, tmp_path, capsys, monkeypatch):
    """No abbreviations, no repeated option, plain digits, no control characters in folders: one
    line and exit code 2, before anything is written."""
    monkeypatch.chdir(tmp_path)
    assert _exit_code(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error
    assert not list(tmp_path.iterdir())


def test_run_names_with_control_characters_are_refused(tmp_path, capsys):
    assert main(SMALL_RUN + ["--out", str(tmp_path), "--name", "a\nb"]) == 2
    assert "no control characters" in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_flow_that_starts_past_the_blow_up_threshold_blows_up_at_the_start_and_nothing_is_compared(tmp_path, capsys):
    """A threshold below |z(0)| (the event can never change sign) is a blow-up at step 0 on every
    seed, not "ok"; then no NC exists after the start, and the conclusions say so instead of
    agreeing."""
    arguments = ["compare", "--seeds", "2", "--steps", "10", "--save-every", "5", "--blowup", "1e-9",
                 "--n-distinct", "4", "--n-common", "3", "--n-classes", "5", "--dim", "10", "--out", str(tmp_path),
                 "--name", "past", "--quiet"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "past" / "summary.json").read_text())
    for side in ("ode", "reduced", "tracked"):
        assert summary[f"status_{side}"] == ["blow-up at step = 0"] * 2
        assert summary[f"nc_{side}_z"] == [None, None]
    assert "agrees" not in out
    assert "  – on every seed: nothing to test" in out
    assert "the reduced JoMA ODE: no NC of z with training on any seed" in out


def test_what_killed_runs_left_is_removed_by_the_next_run_there(tmp_path, dead_owner):
    """Partial folders and temporary files of runs whose process is gone (named by their owner,
    host and process id) are removed when the next run writes into that folder; those of a live
    run are not touched."""
    dead = dead_owner
    left = [tmp_path / f".compare-softmax-linear.partial-{dead}.k2j3", tmp_path / f".x.earlier-{dead}.q1"]
    for folder in left:
        (folder / "inner").mkdir(parents=True)
    stale_file = tmp_path / f".summary.json.{dead}.ab_1.tmp"
    live = tmp_path / f".compare-softmax-linear.partial-{process_owner()}.zz"
    stale_file.write_text("half")
    live.mkdir()
    with run_directory(tmp_path, "next") as folder:
        (folder / "a").write_text("a")
    assert not any(path.exists() for path in (*left, stale_file)) and live.exists()
    assert (tmp_path / "next" / "a").exists()


@pytest.mark.slow
def test_a_second_run_reuses_the_compiled_programs_and_gives_the_same_numbers(tmp_path):
    """The command line's compilation cache: the first run in a fresh process fills it, the
    second reads it, and both give the numbers of a run without it (Equinox's checks as NaN change
    nothing: every solve reports its own status). Its time is measured in the benchmarks."""
    arguments = ["compare", "--seeds", "2", "--steps", "40", "--save-every", "10", "--n-distinct", "4", "--n-common", "3",
                 "--n-classes", "5", "--dim", "10", "--out", str(tmp_path), "--quiet"]
    cache = tmp_path / "compiled"
    env = {**os.environ, "JOMASIM_COMPILE_CACHE": str(cache)}
    for name, extra in (("cold", []), ("warm", []), ("uncached", ["--no-compile-cache"])):
        subprocess.run([sys.executable, "-m", "jomasim.cli", *arguments, "--name", name, *extra], env=env, check=True,
                       capture_output=True)
        if name == "cold":
            entries = set(cache.iterdir())
            assert entries, "the first run stored its programs"
    assert set(cache.iterdir()) == entries, "the second run compiled nothing new"
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("cold", "warm", "uncached")]
    timings = ("wall_seconds", "compile_seconds")
    for summary in summaries[1:]:
        assert {key: value for key, value in summary.items() if key not in timings} == {
            key: value for key, value in summaries[0].items() if key not in timings}
    assert summaries[1]["compile_seconds"] < summaries[0]["compile_seconds"], "the warm run compiled less"
