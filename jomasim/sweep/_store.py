"""A sweep's folder: the saved grid, one file per finished chunk, and the merged table.

    runs/<name>/grid.json            the task's settings and every resolved point (the sweep's identity)
    runs/<name>/chunks/chunk-00012.npz   the results of one chunk, written atomically when it finishes
    runs/<name>/chunks/log.jsonl     the manifest: one line per chunk computed (which process, when, how
                                     long, and the SHA-256 of its contents, written after the chunk)
    runs/<name>/points.csv|.npz      the merged table, one row per point
"""

import contextlib
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InvalidPathError
from ..io import arrays_digest, owner_alive, process_owner, remove_leftovers, write_json, write_npz, write_rows_csv

CHUNK_FIELDS = ("index", "seconds", "fingerprint")


def fingerprint(identity: dict[str, Any]) -> str:
    """A short hash of a sweep's identity (task settings and points): chunk files carry it."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_folder(folder: Path, identity: dict[str, Any]) -> None:
    """Creates the sweep folder, or checks that an existing one holds the same sweep.

    **Raises:**

    `InvalidPathError` if `folder` is a file, cannot be written, or holds another sweep.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidPathError(f"sweep folder {str(folder)!r} is a file; give a folder")
    grid_file = folder / "grid.json"
    try:
        (folder / "chunks").mkdir(parents=True, exist_ok=True)
        for each in (folder, folder / "chunks"):
            remove_leftovers(each)
        if grid_file.exists():
            saved = json.loads(grid_file.read_text())
            if saved.get("fingerprint") != fingerprint(identity):
                raise InvalidPathError(
                    f"sweep folder {str(folder)!r} holds another sweep (different grid, settings or chunk size; "
                    f"it was run with --chunk-size {saved.get('chunk_size')}); choose another --name, or rerun "
                    "with the grid and chunk size saved in its grid.json"
                )
        else:
            write_json(grid_file, {"fingerprint": fingerprint(identity), **identity})
    except OSError as error:
        raise InvalidPathError(f"cannot write to sweep folder {str(folder)!r}: {error.strerror}") from None
    except json.JSONDecodeError:
        raise InvalidPathError(f"{str(grid_file)!r} is not valid JSON; remove it or choose another --name") from None


def chunk_path(folder: Path, chunk: int) -> Path:
    """Where chunk number `chunk` is stored."""
    return Path(folder) / "chunks" / f"chunk-{chunk:05d}.npz"


def write_chunk(folder: Path, chunk: int, index: np.ndarray, results: dict[str, np.ndarray], seconds: float,
                sweep_fingerprint: str, process: int) -> dict[str, np.ndarray]:
    """Stores a finished chunk atomically, then records it in the manifest with its contents' SHA-256
    (a chunk without its line, e.g. after a kill between the two, is recomputed on resume).

    **Arguments:**

    - `folder`, `chunk`: the sweep folder and chunk number.
    - `index`: the chunk's point numbers, `(C,)`.
    - `results`: result name → `(C,)` values.
    - `seconds`: wall time of the chunk's computation.
    - `sweep_fingerprint`: the sweep's `fingerprint`.
    - `process`: the JAX process index that computed it.

    **Returns:**

    The chunk's arrays as `read_chunk` returns them.
    """
    arrays = {name: np.asarray(value) for name, value in
              {"index": index, "seconds": seconds, "fingerprint": sweep_fingerprint, **results}.items()}
    write_npz(chunk_path(folder, chunk), **arrays)
    line = json.dumps({"chunk": chunk, "process": process, "points": len(index), "seconds": seconds, "time": time.time(),
                       "sha256": arrays_digest(arrays)})
    log = Path(folder) / "chunks" / "log.jsonl"
    # a last line torn by a kill or a full disk is ended first, so this record is a line of its own
    torn = log.exists() and log.stat().st_size > 0 and _last_byte(log) != b"\n"
    with open(log, "a") as stream:
        stream.write(("\n" if torn else "") + line + "\n")
    return arrays


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(-1, 2)
        return stream.read(1)


@contextlib.contextmanager
def sweep_lock(folder: Path, process: int) -> Iterator[None]:
    """Holds `chunks/.lock-PROCESS` while this process computes chunks of the sweep in `folder`:
    a second run of the same sweep and process number is refused instead of computing every
    chunk again beside it. A lock whose process no longer exists on this host is taken over.

    **Raises:**

    `InvalidPathError` naming the folder and the process holding it.
    """
    lock = Path(folder) / "chunks" / f".lock-{process}"
    owner = process_owner()
    for _ in range(2):
        try:
            with open(lock, "x") as stream:
                stream.write(owner)
            break
        except FileExistsError:
            holder = lock.read_text().strip() if lock.exists() else ""
            if owner_alive(holder):
                raise InvalidPathError(
                    f"sweep {str(folder)!r} is being computed by another run (process {holder or 'unknown'}); wait "
                    f"for it to finish, or choose another --name (if no such run exists, delete {str(lock)!r})"
                ) from None
            # a killed run's lock: set it aside under a name of our own (one taker wins), then retry
            stale = lock.with_name(f"{lock.name}.stale-{owner}")
            with contextlib.suppress(OSError):
                os.replace(lock, stale)
                os.unlink(stale)
    else:
        raise InvalidPathError(f"cannot take the lock {str(lock)!r} of sweep {str(folder)!r}; another run took it")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


def read_chunk(folder: Path, chunk: int, index: np.ndarray, sweep_fingerprint: str,
               digest: str | None) -> dict[str, np.ndarray] | None:
    """A finished chunk's arrays, or `None` if it is missing, unreadable, from another sweep, not
    for exactly the points `index`, or its contents do not have the SHA-256 `digest` that the
    manifest recorded (`None`: none recorded); then it is recomputed."""
    path = chunk_path(folder, chunk)
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    if any(field not in arrays for field in CHUNK_FIELDS) or str(arrays["fingerprint"]) != sweep_fingerprint:
        return None
    if arrays["index"].shape != index.shape or not np.array_equal(arrays["index"], index):
        return None
    if any(np.shape(value) != index.shape for name, value in arrays.items() if name not in CHUNK_FIELDS):
        return None
    if digest is None or arrays_digest(arrays) != digest:
        return None
    return arrays


def computed_chunks(folder: Path) -> list[dict[str, Any]]:
    """Every complete line of the manifest: which chunk was computed, by which process, when, and
    its contents' SHA-256 (a line cut short by a kill is skipped)."""
    log = Path(folder) / "chunks" / "log.jsonl"
    if not log.exists():
        return []
    entries = []
    for line in log.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def recorded_digests(folder: Path) -> dict[int, str]:
    """The SHA-256 the manifest records for each chunk number (the latest line of each)."""
    return {entry["chunk"]: entry["sha256"] for entry in computed_chunks(folder) if "sha256" in entry}


def write_table(folder: Path, table: dict[str, np.ndarray], columns: list[str]) -> None:
    """Writes the merged table as `points.csv` (one row per point; empty cells for NaN) and
    `points.npz`, both atomically."""
    folder = Path(folder)
    rows = len(next(iter(table.values())))
    write_npz(folder / "points.npz", **table)
    write_rows_csv(folder / "points.csv", [{column: _cell(table[column][row]) for column in columns} for row in range(rows)])


def _cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else repr(float(value))
    if isinstance(value, np.generic):
        return value.item()
    return value

