"""Running a sweep: chunks of points, one compiled vmapped call each, sharded over local devices,
split over processes, resumable, merged into one table."""

import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .._errors import InvalidPathError, JomasimError, OutOfRangeError, check_integer
from .._memory import check_fits
from .._progress import progress_shown
from ..io import environment, write_json
from ._grid import Grid, resolve_points
from ._store import (
    CHUNK_FIELDS,
    chunk_path,
    computed_chunks,
    fingerprint,
    prepare_folder,
    read_chunk,
    recorded_digests,
    sweep_lock,
    write_chunk,
    write_table,
)
from ._task import SweepTask


class Chunk(NamedTuple):
    """A group of points that run in one compiled call: their static key and point numbers."""

    number: int
    key: Hashable
    index: np.ndarray


class SweepResult(NamedTuple):
    """The merged sweep: `table` (column → array, one row per point, in grid order), `columns`
    (the CSV order), `summary` (what `summary.json` holds) and the sweep `folder`."""

    table: dict[str, np.ndarray]
    columns: list[str]
    summary: dict[str, Any]
    folder: Path


def initialize_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins JAX's multi-process runtime (`jax.distributed.initialize`); call before any other JAX
    work. Every process then runs `run_sweep` on the same grid and folder.

    **Arguments:**

    - `coordinator`: `host:port` of process 0.
    - `num_processes`: how many processes take part (≥ 1).
    - `process_id`: this process's number, in [0, num_processes).
    """
    check_integer("num_processes", num_processes, least=1)
    check_integer("process_id", process_id, least=0)
    if process_id >= num_processes:
        raise OutOfRangeError(f"process_id={process_id} is not allowed; it must be < num_processes={num_processes}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise OutOfRangeError(f"coordinator={coordinator!r} is not allowed; write HOST:PORT, e.g. 127.0.0.1:12345")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def local_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh (`"points"`) over the first `devices` local devices (all when `None`)."""
    available = jax.local_devices()
    if devices is None:
        devices = len(available)
    check_integer("devices", devices, least=1)
    if devices > len(available):
        raise OutOfRangeError(f"devices={devices} is not allowed; this process has {len(available)} local devices")
    return Mesh(np.asarray(available[:devices]), ("points",))


CPU_POINTS_PER_DEVICE = 16
ACCELERATOR_POINTS_PER_DEVICE = 256
"""Default points per device in a chunk. A vmapped adaptive solve waits for the slowest point of
its chunk; on a CPU a wider batch buys little parallelism to pay for that, on a GPU width is nearly
free (the chunk sizes `benchmarks/sweep_throughput.py` measured best: benchmarks/README.md)."""


def default_chunk_size(mesh: Mesh) -> int:
    """Points per chunk when none is given: `CPU_POINTS_PER_DEVICE` or `ACCELERATOR_POINTS_PER_DEVICE`
    (by the mesh's platform) times its device count."""
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    return (CPU_POINTS_PER_DEVICE if on_cpu else ACCELERATOR_POINTS_PER_DEVICE) * mesh.devices.size


def plan_chunks(task: SweepTask, points: list[dict], chunk_size: int) -> list[Chunk]:
    """Groups points by static key (first appearance order) and cuts each group into chunks of at
    most `chunk_size` points, numbered in that order."""
    groups: dict[Hashable, list[int]] = {}
    for number, point in enumerate(points):
        groups.setdefault(task.static_key(point), []).append(number)
    chunks = []
    for key, members in groups.items():
        for start in range(0, len(members), chunk_size):
            chunks.append(Chunk(len(chunks), key, np.asarray(members[start:start + chunk_size])))
    return chunks


_COMPILED: dict = {}


def _compiled(task: SweepTask, key: Hashable, mesh: Mesh, numbers: dict[str, np.ndarray]):
    """The compiled `vmap(point_function)` of one static key over the mesh's devices for chunks
    shaped as `numbers`, and the seconds compiling it took now (0 when it was compiled before): a
    `shard_map`, so that each device runs its own vmapped solve and an adaptive solve only waits
    for the slowest point on its own device; on one device, or for a task that is not
    `shardable`, a plain jit whose batch is partitioned from the input sharding."""
    cache_key = (task, key, tuple(mesh.devices.flat), len(next(iter(numbers.values()))))
    if cache_key in _COMPILED:
        return _COMPILED[cache_key], 0.0
    started = time.perf_counter()
    spec = PartitionSpec("points")
    sharding = NamedSharding(mesh, spec)
    batched = jax.vmap(task.point_function(key))
    options = task.compiler_options(mesh.devices.flat[0].platform)
    if mesh.devices.size > 1 and task.shardable():
        batched = jax.shard_map(batched, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    jitted = jax.jit(batched, in_shardings=sharding, out_shardings=sharding, compiler_options=options)
    _COMPILED[cache_key] = jitted.lower(numbers).compile()
    return _COMPILED[cache_key], time.perf_counter() - started


def _run_chunk(task: SweepTask, chunk: Chunk, points: list[dict], mesh: Mesh,
               padded_size: int) -> tuple[dict[str, np.ndarray], float]:
    """One chunk's results (the chunk is padded to `padded_size` by repeating its last point) and
    the seconds spent compiling for it (0 when its program was compiled before)."""
    rows = list(chunk.index) + [chunk.index[-1]] * (padded_size - len(chunk.index))
    numbers = {name: np.asarray([points[row][name] for row in rows]) for name in task.numeric_names}
    executable, compile_seconds = _compiled(task, chunk.key, mesh, numbers)
    results = executable(numbers)
    return {name: np.asarray(value)[: len(chunk.index)] for name, value in results.items()}, compile_seconds


def _wait_for_chunks(folder: Path, chunks: list[Chunk], sweep_fingerprint: str, timeout: float,
                     known: dict[int, dict]) -> list[dict]:
    """Every chunk's stored results (those in `known`, by chunk number, are not read again),
    waiting up to `timeout` seconds for other processes."""
    deadline = time.monotonic() + timeout
    stored = [known.get(chunk.number) for chunk in chunks]
    while True:
        digests = recorded_digests(folder)
        for chunk in chunks:
            if stored[chunk.number] is None:
                stored[chunk.number] = read_chunk(folder, chunk.number, chunk.index, sweep_fingerprint,
                                                  digests.get(chunk.number))
        missing = [chunk.number for chunk in chunks if stored[chunk.number] is None]
        if not missing:
            return stored
        if time.monotonic() > deadline:
            raise JomasimError(
                f"chunks {missing[:10]}{' ...' if len(missing) > 10 else ''} of {len(chunks)} are not in "
                f"{str(folder)!r} after {timeout:.0f} s; the finished ones are kept: rerun the sweep to compute the rest"
            )
        time.sleep(0.2)


MERGED_COLUMNS = ("failures", "failed", "chunk", "seconds_per_point")
"""The columns the merge adds to every sweep's results (what went wrong, whether it did, which
chunk computed the point, and its share of the chunk's time)."""


def _merge(task: SweepTask, points: list[dict], chunks: list[Chunk], stored: list[dict]) -> tuple[dict, list[str]]:
    """The table in grid order: axis values (and any values the task derives for a point), results,
    `failures`, `failed`, `chunk`, `seconds_per_point`."""
    size = len(points)
    results: dict[str, np.ndarray] = {}
    chunk_of = np.zeros(size, dtype=int)
    seconds = np.zeros(size)
    for chunk, arrays in zip(chunks, stored):
        for name, values in arrays.items():
            if name in CHUNK_FIELDS:
                continue
            if name not in results:
                results[name] = np.full(size, np.nan if np.issubdtype(values.dtype, np.floating) else 0, dtype=values.dtype)
            results[name][chunk.index] = values
        chunk_of[chunk.index] = chunk.number
        seconds[chunk.index] = float(arrays["seconds"]) / len(chunk.index)
    described = list(task.axes) + [name for name in points[0] if name not in task.axes]
    table = {name: np.asarray([point[name] for point in points]) for name in described}
    table.update(sorted(results.items()))
    failures = [task.failures({name: values[row] for name, values in table.items()}) for row in range(size)]
    table.update(zip(MERGED_COLUMNS, (np.asarray(failures), np.asarray([text != "ok" for text in failures]), chunk_of,
                                      seconds)))
    return table, list(table)


def run_sweep(
    task: SweepTask,
    grid: Grid,
    folder: Path,
    *,
    chunk_size: int | None = None,
    devices: int | None = None,
    progress: bool | None = None,
    merge_timeout: float = 3600.0,
    finish: Callable[[dict[str, np.ndarray], Path], None] | None = None,
) -> SweepResult | None:
    """Runs `task` at every point of `grid`, in chunks, and merges the results into one table.

    Points are grouped by static key; a group is cut into chunks of `chunk_size` points (the last
    one padded), and every chunk is one compiled `shard_map` of a `vmap` over this process's local
    devices, so points that differ only in numbers share one compile. With several JAX processes
    (`initialize_processes`), process p computes the chunks numbered p, p + P, p + 2P, ...; each
    finished chunk is written atomically to `folder/chunks/` and recorded, with the SHA-256 of its
    contents, in the manifest `chunks/log.jsonl`; chunks already there (from an interrupted run)
    whose contents match their recorded SHA-256 are not computed again, the others are recomputed
    and counted in the summary's `chunks_rejected`. Process 0 then waits for every chunk and writes
    `points.csv`, `points.npz` and `summary.json`. A chunk's recorded time is its run; compiling
    (once per static key) is timed apart, as the summary's `compile_seconds` of this process.

    **Arguments:**

    - `task`: the experiment (`SweepTask`).
    - `grid`: the axes and explicit points; all are checked before any work starts.
    - `folder`: the sweep folder (created; an existing one must hold the same sweep).
    - `chunk_size`: points per compiled call (≥ 1; rounded up to a multiple of the device count);
      `None` picks `default_chunk_size` (16 points per CPU device, 256 per GPU/TPU). It is part of
      the sweep's identity: resume with the same value.
    - `devices`: local devices to shard over (all when `None`).
    - `progress`: show a progress bar over chunks with points per second (`None`: as
      `showing_progress` says, off by default).
    - `merge_timeout`: seconds process 0 waits for the chunks of other processes.
    - `finish`: called on process 0 with the merged table and the folder before `summary.json` is
      written (e.g. to draw plots): `summary.json` comes last, so a sweep that has it is complete.

    **Returns:**

    A `SweepResult` on process 0; `None` on the other processes.
    """
    points = resolve_points(grid, task)
    mesh = local_mesh(devices)
    if chunk_size is None:
        chunk_size = default_chunk_size(mesh)
    check_integer("chunk_size", chunk_size, least=1)
    device_count = mesh.devices.size
    padded_size = -(-chunk_size // device_count) * device_count
    check_fits(padded_size * task.point_bytes(), f"a chunk of {padded_size} points", task.memory_levers)
    chunks = plan_chunks(task, points, padded_size)
    identity = {"task": task.describe(), "points": points, "chunk_size": padded_size}
    sweep_fingerprint = fingerprint(identity)
    folder = Path(folder)
    prepare_folder(folder, identity)

    process, processes = jax.process_index(), jax.process_count()
    mine = [chunk for chunk in chunks if chunk.number % processes == process]
    with sweep_lock(folder, process):
        digests = recorded_digests(folder)
        finished = {chunk.number: read_chunk(folder, chunk.number, chunk.index, sweep_fingerprint,
                                             digests.get(chunk.number)) for chunk in mine}
        finished = {number: arrays for number, arrays in finished.items() if arrays is not None}
        todo = [chunk for chunk in mine if chunk.number not in finished]
        # chunk files on disk that failed the check (unreadable, doctored, or never recorded) are recomputed
        rejected = sum(chunk_path(folder, chunk.number).exists() for chunk in todo)
        started = time.perf_counter()
        shown = progress_shown() if progress is None else progress
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="sweep", unit="chunk", disable=not shown)
        computed_points, compile_seconds = 0, 0.0
        for chunk in todo:
            chunk_started = time.perf_counter()
            results, compiling = _run_chunk(task, chunk, points, mesh, padded_size)
            compile_seconds += compiling
            seconds = time.perf_counter() - chunk_started - compiling  # a chunk's time is its run
            try:
                finished[chunk.number] = write_chunk(folder, chunk.number, chunk.index, results, seconds,
                                                     sweep_fingerprint, process)
            except OSError as error:
                raise InvalidPathError(f"cannot write chunk {chunk.number} to {str(folder)!r}: {error.strerror}") from None
            computed_points += len(chunk.index)
            bar.update()
            bar.set_postfix_str(f"{computed_points / (time.perf_counter() - started):.1f} points/s")
        bar.close()
    if process != 0:
        return None

    # this process's chunks are in hand; only other processes' are waited for
    stored = _wait_for_chunks(folder, chunks, sweep_fingerprint, merge_timeout, finished)
    table, columns = _merge(task, points, chunks, stored)
    write_table(folder, table, columns)
    log = computed_chunks(folder)
    compute_seconds = sum(float(arrays["seconds"]) for arrays in stored)
    summary = {
        "points": len(points),
        "chunks": len(chunks),
        "chunk_size": padded_size,
        "compiles_per_process": len({chunk.key for chunk in chunks}),
        "devices_per_process": device_count,
        "processes": processes,
        "compute_seconds": compute_seconds,
        "points_per_second": len(points) / compute_seconds if compute_seconds > 0 else None,
        "compile_seconds": compile_seconds,
        "failed": int(table["failed"].sum()),
        "failed_points": {int(row): str(table["failures"][row]) for row in np.flatnonzero(table["failed"])},
        "chunks_computed": [{k: entry[k] for k in ("chunk", "process", "seconds")} for entry in log],
        "chunks_rejected": rejected,
        "task": task.describe(),
        "environment": environment(),
    }
    if finish is not None:
        finish(table, folder)
    write_json(folder / "summary.json", summary)
    return SweepResult(table, columns, summary, folder)
