"""Sweeps: one table whatever the devices, processes or interruptions; failures kept per point."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import jomasim as js
from jomasim.cli import main
from jomasim.experiments.block import MemberNumbers, run_members
from jomasim.experiments.block_sweep import BlockSweep
from jomasim.io import PAUSE_VARIABLE, process_owner
from jomasim.runs.figures.sweep import _sweep_title, plot_sweep
from jomasim.sweep import (
    Grid,
    computed_chunks,
    default_chunk_size,
    load_grid,
    local_mesh,
    parse_axis_values,
    recorded_digests,
    resolve_points,
    run_sweep,
)

GRID_TOML = """
[settings]
mode = "theory"
attention = "exp"
n_distinct = 3
n_common = 3
n_classes = 4
dim = 8
steps = 40
save_every = 10
max_steps = 2000

[axes]
eta_w = [0.1, 0.5]
temperature = [0.5, 0.002]
seed = [0, 1]
"""
CHUNK = 4
COMPARED = ("entropy_ode", "entropy_ode_min", "nc_zhat_z", "nc_reduced_z", "relerr_reduced_z", "parted_step_reduced",
            "invariant_leak", "t_final_ode", "status_ode", "status_reduced", "num_steps_ode")


def _task(grid: Grid) -> BlockSweep:
    return BlockSweep.from_settings(grid.settings)


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grid.toml"
    path.write_text(GRID_TOML)
    return path


@pytest.fixture(scope="module")
def reference(grid_file, tmp_path_factory):
    """The grid run in this process on one device, 4 points per chunk."""
    grid = load_grid(grid_file)
    return grid, run_sweep(_task(grid), grid, tmp_path_factory.mktemp("runs") / "reference", chunk_size=CHUNK, devices=1)


def _assert_same_table(table, expected, exact: bool = False):
    for name in COMPARED:
        if exact:
            np.testing.assert_array_equal(table[name], expected[name], err_msg=name)
        else:
            np.testing.assert_allclose(table[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(table["failures"], expected["failures"])


def _jomasim(*args, env=None):
    """The CLI in a fresh Python process."""
    return subprocess.Popen([sys.executable, "-m", "jomasim.cli", *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def test_grid_resolves_product_then_explicit_points():
    task = BlockSweep()
    grid = Grid({"eta_w": (0.1, 0.2), "eta_ratio": (1.0, 3.0)}, points=({"eta_w": 0.5, "seed": 4},))
    points = resolve_points(grid, task)
    assert len(points) == 5
    assert [(p["eta_w"], p["eta_z"]) for p in points[:4]] == [(0.1, 0.1), (0.1, 0.30000000000000004), (0.2, 0.2), (0.2, 0.6000000000000001)]
    assert points[4]["eta_w"] == 0.5 and points[4]["eta_z"] == task.base.eta_z and points[4]["seed"] == 4
    assert parse_axis_values("seed", "0:6:2", int) == (0, 2, 4)
    assert parse_axis_values("attention", "exp,softmax", str) == ("exp", "softmax")


@pytest.mark.slow
def test_sweep_matches_members_run_one_by_one(reference):
    grid, result = reference
    task = _task(grid)
    assert result.summary["points"] == 8 and result.summary["compiles_per_process"] == 1
    for row in (0, 5):
        point = {name: result.table[name][row] for name in task.numeric_names}
        members = run_members(task.base, MemberNumbers(**{k: np.asarray([v]) for k, v in point.items()}),
                              task.base.steps, task.base.save_steps, "theory").members
        last = members.last_index[0]
        np.testing.assert_allclose(result.table["entropy_ode"][row], members.joint.entropy[0, last], rtol=1e-9)
        np.testing.assert_allclose(result.table["nc_zhat_z"][row], members.joint.theorem1.nc_zhat_z[0, last], rtol=1e-9)
        assert result.table["status_ode"][row] == members.joint.outcome.status[0]


def test_failed_points_are_marked_and_leave_their_chunk_unharmed(reference, tmp_path):
    grid, result = reference
    table = result.table
    hard = table["temperature"] == 0.002
    np.testing.assert_array_equal(table["failed"], hard)
    assert all("max steps" in text for text in table["failures"][hard])
    assert np.isfinite(table["nc_zhat_z"][~hard]).all() and (table["nc_zhat_z"][~hard] > 0.99).all()
    assert set(result.summary["failed_points"]) == set(np.flatnonzero(hard).tolist())
    easy_points = tuple({name: table[name][row].item() for name in ("eta_w", "temperature", "seed")}
                        for row in np.flatnonzero(~hard))
    alone = run_sweep(_task(grid), Grid(points=easy_points, settings=grid.settings), tmp_path / "easy",
                      chunk_size=CHUNK, devices=1)
    for name in COMPARED:
        np.testing.assert_array_equal(alone.table[name], table[name][~hard], err_msg=name)


@pytest.mark.slow
def test_eight_devices_give_the_same_table(reference, grid_file, tmp_path):
    _, expected = reference
    process = _jomasim("sweep", "--grid", grid_file, "--out", tmp_path, "--name", "eight", "--chunk-size", 8,
                       env={"XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=8"})
    _finish(process)
    table = np.load(tmp_path / "eight" / "points.npz")
    assert json.loads((tmp_path / "eight" / "summary.json").read_text())["devices_per_process"] == 8
    _assert_same_table(table, expected.table)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_merge_into_the_same_table(reference, grid_file, tmp_path):
    _, expected = reference
    common = ["sweep", "--grid", grid_file, "--out", tmp_path, "--name", "two", "--chunk-size", CHUNK,
              "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", 2]
    processes = [_jomasim(*common, "--process-id", rank) for rank in (0, 1)]
    outputs = [_finish(process) for process in processes]
    assert "process 0 merges" in outputs[1]
    table = np.load(tmp_path / "two" / "points.npz")
    _assert_same_table(table, expected.table, exact=True)
    assert sorted(entry["process"] for entry in computed_chunks(tmp_path / "two")) == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_sweep_resumes_without_recomputing(kill, reference, grid_file, tmp_path):
    grid, expected = reference
    folder = tmp_path / "killed"
    moment = random.Random(int(kill))
    wait_for_chunks, extra_delay = moment.randint(1, 5), moment.uniform(0.0, 0.2)
    process = _jomasim("sweep", "--grid", grid_file, "--out", tmp_path, "--name", "killed", "--chunk-size", 1)
    deadline = time.monotonic() + 240
    while (len(list((folder / "chunks").glob("chunk-*.npz"))) < wait_for_chunks and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.02)
    time.sleep(extra_delay)
    process.send_signal(kill)
    process.wait()
    # a chunk counts as finished once its manifest line follows its file (a kill between the two
    # leaves a file that the resume recomputes)
    finished = {int(path.stem.split("-")[1]) for path in (folder / "chunks").glob("chunk-*.npz")} & set(recorded_digests(folder))
    assert wait_for_chunks <= len(finished) < 8, "killed after some chunks and before the end"
    before = len(computed_chunks(folder))
    result = run_sweep(_task(grid), grid, folder, chunk_size=1, devices=1)
    again = [entry["chunk"] for entry in computed_chunks(folder)[before:]]
    assert sorted(again) == sorted(set(range(8)) - finished), "every chunk computed exactly once"
    _assert_same_table(result.table, expected.table)


KILL_TARGETS = ("chunk-00000", "chunk-00000", *(f"chunk-{number:05d}" for number in range(1, 8)), "points.", "points.")
"""Where each killed sweep dies: in the write of each of the eight chunks (twice in the first, so a
sweep also meets the leftover of a write killed at the same place), then twice in the merged table."""


@pytest.mark.slow
def test_kills_while_writing_chunks_and_the_table_are_survived(reference, grid_file, tmp_path):
    """Sweeps killed (SIGKILL) in the middle of a write (`KILL_TARGETS`), each paused by the test
    hook after its temporary file is written and before the rename. The final run's table equals an
    uninterrupted run's in every row, and no kill left a file that looks written."""
    grid, expected = reference
    folder = tmp_path / "faults"
    marker = tmp_path / "paused"
    arguments = ("sweep", "--grid", grid_file, "--out", tmp_path, "--name", "faults", "--chunk-size", 1)
    for cycle, target in enumerate(KILL_TARGETS):
        marker.unlink(missing_ok=True)
        process = _jomasim(*arguments, env={PAUSE_VARIABLE: f"{target}:{marker}"})
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), f"cycle {cycle}: the sweep never reached the write of {target}: {process.communicate()[0]}"
        process.kill()
        process.wait()
        written = [path.name for path in folder.rglob(f"{target}*") if not path.name.startswith(".")]
        assert written == [], f"cycle {cycle}: the kill during {target} left {written}"
        assert list(folder.rglob(f".{target}*.tmp")), f"cycle {cycle}: no write of {target} was under way"
    _finish(_jomasim(*arguments))
    table = dict(np.load(folder / "points.npz"))
    _assert_same_table(table, expected.table)
    assert not list(folder.rglob("*.tmp")), "the temporary files of the killed writes are removed"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--eta-w", "0.1,-0.2"], "eta_w=-0.2 is not allowed"),
        (["--eta-w", ","], "eta_w=',' is not allowed; eta_w takes a comma-separated list of numbers"),
        (["--init-scale", "1,,2"], "init_scale='1,,2' is not allowed"),
        (["--seed", "0:x"], "is not a range"),
        (["--eta-z", "0.1", "--eta-ratio", "2"], "give one"),
        (["--attention", "cosine"], "attention='cosine' is not allowed"),
        (["--plot", "entropy_ode:dim"], "plot axis='dim' is not allowed"),
    ],
)
def test_bad_grids_fail_before_any_work(arguments, message, tmp_path, capsys):
    rates = [] if "--eta-w" in arguments else ["--eta-w", "0.1"]
    assert main(["sweep", "--mode", "theory", *rates, *arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not any(tmp_path.iterdir()), "nothing written"


def test_shape_settings_are_not_axes(tmp_path):
    grid_file = tmp_path / "grid.json"
    grid_file.write_text('{"axes": {"dim": [8, 10]}}')
    with pytest.raises(js.InvalidChoiceError, match="unknown axes \\['dim'\\].*cannot share a compiled chunk"):
        resolve_points(load_grid(grid_file), BlockSweep())
    with pytest.raises(js.InvalidChoiceError, match="unknown tables"):
        grid_file.write_text('{"axis": {}}')
        load_grid(grid_file)


def test_folder_of_another_sweep_is_refused(reference, tmp_path):
    grid, result = reference
    other = Grid({"eta_w": (0.3,)}, settings=grid.settings)
    with pytest.raises(js.InvalidPathError, match="holds another sweep"):
        run_sweep(_task(grid), other, result.folder, chunk_size=CHUNK, devices=1)


def test_resuming_with_another_chunk_size_names_the_saved_one(reference):
    grid, result = reference
    with pytest.raises(js.InvalidPathError, match=f"it was run with --chunk-size {CHUNK}"):
        run_sweep(_task(grid), grid, result.folder, chunk_size=CHUNK + 1, devices=1)


def test_default_chunk_is_sixteen_points_per_cpu_device():
    assert default_chunk_size(local_mesh(1)) == 16


def test_corrupt_chunk_is_recomputed(reference):
    grid, result = reference
    before = len(computed_chunks(result.folder))
    (result.folder / "chunks" / "chunk-00001.npz").write_bytes(b"half-written")
    again = run_sweep(_task(grid), grid, result.folder, chunk_size=CHUNK, devices=1)
    assert [entry["chunk"] for entry in computed_chunks(result.folder)[before:]] == [1]
    assert again.summary["chunks_rejected"] == 1
    _assert_same_table(again.table, result.table, exact=True)


def test_doctored_chunk_is_detected_and_recomputed(reference):
    """A chunk whose numbers were changed on disk (a valid npz with the right fields, fingerprint
    and points) no longer has the SHA-256 its manifest line records: the resume recomputes it,
    says so, and the table holds the computed numbers, not the doctored ones."""
    grid, result = reference
    path = result.folder / "chunks" / "chunk-00000.npz"
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["nc_zhat_z"] = arrays["nc_zhat_z"] * 0.5
    np.savez(path, **arrays)
    before = len(computed_chunks(result.folder))
    again = run_sweep(_task(grid), grid, result.folder, chunk_size=CHUNK, devices=1)
    assert [entry["chunk"] for entry in computed_chunks(result.folder)[before:]] == [0]
    assert again.summary["chunks_rejected"] == 1
    _assert_same_table(again.table, result.table, exact=True)
    assert all(len(entry["sha256"]) == 64 for entry in computed_chunks(result.folder))


def test_sweep_plots_count_the_points_without_a_value(tmp_path):
    table = {"eta_w": np.array([0.1, 0.1, 0.2, 0.2]), "seed": np.array([0, 1, 0, 1]),
             "parted_step_ode": np.array([np.nan, 300.0, np.nan, 5.0]), "failed": np.array([False, False, True, False])}
    assert _sweep_title(table, "parted_step_ode").endswith("\n(1 of 4 points have no value and are left out)")
    assert _sweep_title({**table, "parted_step_ode": np.arange(4.0)}, "parted_step_ode") == "parted_step_ode, mean over the other axes"
    plot_sweep(table, "parted_step_ode", "eta_w", None, tmp_path / "line.png")
    plot_sweep(table, "parted_step_ode", "eta_w", "seed", tmp_path / "map.png")
    assert (tmp_path / "line.png").stat().st_size > 0 and (tmp_path / "map.png").stat().st_size > 0


def test_a_torn_log_line_is_set_aside_and_a_single_process_never_waits(reference, tmp_path):
    """A last manifest line cut short (a kill or a full disk mid-append) and a chunk to recompute:
    the resume starts its record on a new line (both readable afterwards), and a single process
    merges from its own chunks at once (a merge that waited would fail its 1 ms timeout)."""
    grid, result = reference
    folder = tmp_path / "torn"
    shutil.copytree(result.folder, folder)
    (folder / "chunks" / "chunk-00001.npz").unlink()
    with open(folder / "chunks" / "log.jsonl", "a") as log:
        log.write('{"chunk": 1, "process": 0, "poi')
    before = len(computed_chunks(folder))
    again = run_sweep(_task(grid), grid, folder, chunk_size=CHUNK, devices=1, merge_timeout=1e-3)
    assert [entry["chunk"] for entry in computed_chunks(folder)[before:]] == [1]
    assert (folder / "chunks" / "log.jsonl").read_text().endswith("}\n")
    _assert_same_table(again.table, result.table, exact=True)


def test_a_running_sweep_holds_its_folder_and_a_killed_one_leaves_nothing_behind(reference, tmp_path, dead_owner):
    """A second run of the same sweep while one computes is refused in one line (its lock names
    a live process); a lock and temporary files whose process is gone are taken over and removed,
    a temporary file of a live process is left alone."""
    grid, result = reference
    folder = tmp_path / "locked"
    shutil.copytree(result.folder, folder)
    lock = folder / "chunks" / ".lock-0"
    lock.write_text(process_owner())
    with pytest.raises(js.InvalidPathError, match="is being computed by another run"):
        run_sweep(_task(grid), grid, folder, chunk_size=CHUNK, devices=1)
    dead = dead_owner
    lock.write_text(dead)
    leftovers = [folder / f".points.csv.{dead}.x1y2.tmp", folder / "chunks" / f".chunk-00002.npz.{dead}.abc.tmp"]
    live = folder / f".points.npz.{process_owner()}.zz9.tmp"
    for path in (*leftovers, live):
        path.write_text("half")
    again = run_sweep(_task(grid), grid, folder, chunk_size=CHUNK, devices=1)
    _assert_same_table(again.table, result.table, exact=True)
    assert not lock.exists() and not any(path.exists() for path in leftovers) and live.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"axes": 5}', "axes is 5; it must be a table"),
        ('{"settings": [1]}', "settings is [1]; it must be a table"),
        ("[1, 2]", "holds a list; it must be a table"),
        ('{"axes": {"eta_w": [[0.1]]}}', "axes: eta_w holds [0.1]; a value must be a number"),
        ('{"points": [1]}', "point 0 is 1; it must be a table"),
        ('{"points": [{"eta_w": [0.1, 0.2]}]}', "point 0: eta_w is [0.1, 0.2]; it must be a single value"),
        ('{"points": {"eta_w": 0.1}}', "points is {'eta_w': 0.1}; it must be a list"),
        ('{"settings": {"steps": -5}}', "steps=-5 is not allowed"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_grid_files_of_the_wrong_shape_are_one_line(content, message, tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(content)
    out = tmp_path / "runs"
    assert main(["sweep", "--grid", str(grid), "--steps", "20", "--save-every", "10", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error, error
    assert not out.exists()


@pytest.mark.slow
def test_a_sweep_stops_flows_at_the_blow_up_threshold_as_compare_does(tmp_path):
    """`--blowup` in a sweep (its event runs inside the compiled chunk): the blow-up steps of every
    point equal those of the same members run by `run_members`."""
    settings = {"mode": "theory", "attention": "exp", "n_distinct": 3, "n_common": 3, "n_classes": 4, "dim": 8,
                "steps": 40, "save_every": 10, "blowup": 0.3}
    grid = Grid({"eta_z": (0.5, 20.0), "seed": (0,)}, settings=settings)
    task = _task(grid)
    result = run_sweep(task, grid, tmp_path / "blowup", chunk_size=2, devices=1)
    for row, eta_z in enumerate((0.5, 20.0)):
        members = run_members(task.base, task.base.members(task.base.eta_w, eta_z), 40, task.base.save_steps, "theory")
        for name, out in (("joint", "ode"), ("reduced", "reduced")):
            run = getattr(members.members, name)
            expected = float(run.outcome.t_final[0]) if int(run.outcome.status[0]) == js.Status.BLOWUP else np.nan
            np.testing.assert_allclose(result.table[f"blowup_step_{out}"][row], expected, rtol=1e-9)
    assert np.isnan(result.table["blowup_step_reduced"][0]) and np.isfinite(result.table["blowup_step_reduced"][1])
