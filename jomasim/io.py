"""Run directories: atomic writes, and the record of what produced a run."""

import contextlib
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._errors import InvalidPathError

PACKAGES = ("jomasim", "jax", "jaxlib", "diffrax", "equinox", "flax", "optax", "numpy", "matplotlib")


SOURCE_CHECKOUT = Path(__file__).resolve().parent.parent
"""The folder above the jomasim package: its git checkout when installed with `pip install -e`."""


def source_revision(checkout: Path = SOURCE_CHECKOUT) -> dict[str, Any] | None:
    """The git commit of a checkout and whether its tracked files differ from it.

    **Arguments:**

    - `checkout`: the checkout's top folder (default: the one jomasim runs from).

    **Returns:**

    `{"commit": hex, "modified": bool}`, or `None` where `checkout` is no git checkout (an
    installed copy) or git cannot tell.
    """
    if not (checkout / ".git").exists():
        return None

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *arguments], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "modified": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """What a run needs to be rerun: Python, platform, package versions, the jomasim commit
    (`source_revision`), devices, and the settings that change results: the float64 flag, JAX's
    default matmul precision (on GPUs the default rounds float32 products to TF32) and `XLA_FLAGS`."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "jomasim_source": source_revision(),
        "devices": [f"{device.platform}:{device.device_kind}" for device in jax.devices()],
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "xla_flags": os.environ.get("XLA_FLAGS"),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def non_finite_entries(value: Any, prefix: str = "") -> list[str]:
    """The places in a nested summary (dicts, lists, arrays) that hold a number that is not finite,
    as dotted paths (`runs.0.entropy_final.0`)."""
    if isinstance(value, dict):
        return [path for key, item in value.items() for path in non_finite_entries(item, f"{prefix}{key}.")]
    if isinstance(value, (np.ndarray, jax.Array)):
        value = np.asarray(value).tolist()
        if not isinstance(value, list):  # a 0-d array: one number
            return non_finite_entries(value, prefix)
    if isinstance(value, (list, tuple)):
        return [path for index, item in enumerate(value) for path in non_finite_entries(item, f"{prefix}{index}.")]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return [prefix.rstrip(".")]
    return []


def arrays_digest(arrays: dict[str, Any]) -> str:
    """The SHA-256 of named arrays: every array's name, dtype, shape and bytes, by name (written
    beside stored arrays, it tells a damaged or edited file from the one written)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _default_mode(directory: bool) -> int:
    """The permissions a plain `open` / `mkdir` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


PAUSE_VARIABLE = "JOMASIM_TEST_PAUSE"
"""A test hook, `PREFIX:MARKER`: a write of a file whose name starts with PREFIX stops after its
temporary file is written and synced, before it is renamed into place; it creates the file MARKER
and waits there, so a test can kill the process in the middle of the write."""


def _pause_for_tests(path: Path) -> None:
    prefix, _, marker = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if prefix and marker and path.name.startswith(prefix):
        Path(marker).touch()
        time.sleep(3600)


def process_owner() -> str:
    """This process as a writer of temporary files and folders: `HOST-PID` (the host's dots as
    underscores, so that the name splits cleanly)."""
    return f"{socket.gethostname().replace('.', '_').replace('-', '_')}-{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by `process_owner()`'s text may still run: on this host, whether it
    exists; on another host it cannot be known, so yes."""
    host, _, pid = owner.rpartition("-")
    if host != process_owner().rpartition("-")[0] or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_LEFTOVER = re.compile(r"^\..+\.(?:partial-|earlier-)?([^.\s]+-\d+)\.[^.]*(?:\.tmp)?$")
"""A hidden temporary file (`.NAME.OWNER.XXXX.tmp`) or folder (`.NAME.partial-OWNER.XXXX`,
`.NAME.earlier-OWNER.XXXX`) of a write or run, with its owner (`process_owner`)."""


def remove_leftovers(folder: Path) -> None:
    """Removes what killed writes and runs left in `folder`: temporary files and partial folders
    whose owner process no longer exists on this host."""
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            match = _LEFTOVER.match(path.name)
            if match is None or owner_alive(match.group(1)):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _atomic_write(path: Path, write) -> None:
    """Writes through a temporary file in the same folder, then renames it into place.

    **Raises:**

    `InvalidPathError` naming the file and the reason (a full disk, a folder that cannot be
    written) if the operating system refuses; nothing is left at `path` then.
    """
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{process_owner()}.", suffix=".tmp")
    except OSError as error:
        raise InvalidPathError(f"cannot write {str(path)!r}: {error.strerror}") from None
    try:
        os.chmod(temporary, _default_mode(directory=False))
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        _pause_for_tests(path)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise InvalidPathError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
        raise


def write_text(path: Path, text: str) -> None:
    """Writes `text` (UTF-8), atomically."""
    _atomic_write(Path(path), lambda stream: stream.write(text.encode()))


def write_json(path: Path, value: Any) -> None:
    """Writes `value` as indented JSON, atomically (NumPy/JAX arrays become lists)."""
    write_text(path, json.dumps(_jsonable(value), indent=2, allow_nan=False) + "\n")


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Writes a table given as rows (dicts with the same keys) as CSV, atomically."""
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, lines.getvalue())


def write_npz(path: Path, **arrays: Any) -> None:
    """Writes arrays to a compressed `.npz`, atomically."""
    _atomic_write(Path(path), lambda stream: np.savez_compressed(stream, **{k: np.asarray(v) for k, v in arrays.items()}))


def check_run_name(name: str) -> None:
    """Checks that `name` names one folder (no path separator, not empty, not `.` or `..`).

    **Raises:**

    `InvalidPathError` naming the value.
    """
    if not name or name in (".", "..") or "/" in name or os.sep in name or has_control_characters(name):
        raise InvalidPathError(f"run name {name!r} is not allowed; it must be one folder name (no '/', no control "
                               "characters, not '.' or '..')")
    if len(name.encode()) > MAX_RUN_NAME_BYTES:
        raise InvalidPathError(f"run name {name[:40]!r}... ({len(name.encode())} bytes) is not allowed; it must be at "
                               f"most {MAX_RUN_NAME_BYTES} bytes")


MAX_RUN_NAME_BYTES = 200
"""The longest run name: file systems allow 255 bytes per name, and a run's partial folder and
temporary files add a hidden prefix and suffix to it."""


def check_folder_path(name: str, path: str | Path) -> None:
    """Checks that `path` can name a folder: no control characters and no part longer than a
    file system allows (255 bytes).

    **Raises:**

    `InvalidPathError` naming the option `name` and the value.
    """
    text = str(path)
    if not text.strip() or has_control_characters(text):
        raise InvalidPathError(f"{name}={text!r} is not allowed; give a folder (no control characters)")
    long = [part for part in Path(path).parts if len(part.encode()) > 255]
    if long:
        raise InvalidPathError(f"{name}={text[:60]!r}... is not allowed; a folder name has at most 255 bytes, and "
                               f"one here has {len(long[0].encode())}")


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (newline, tab, escape, ...), which a file name
    printed on a terminal should not."""
    return any(ord(character) < 32 or ord(character) == 127 for character in text)


def unique_run_name(root: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... : the first name not yet taken under `root`."""
    name, number = stem, 1
    while (Path(root) / name).exists():
        number += 1
        name = f"{stem}-{number}"
    return name


def _output_folder(root: Path) -> Path:
    """`root`, created if missing, without what killed runs left in it (`remove_leftovers`); one
    clear error if it is a file or cannot be written."""
    root = Path(root)
    try:
        if root.exists() and not root.is_dir():
            raise InvalidPathError(f"output folder {str(root)!r} is a file; give a folder")
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidPathError(f"cannot write to output folder {str(root)!r}: {error.strerror}") from None
    remove_leftovers(root)
    return root


def claim_run_name(root: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`, ...: the first name under `root` that this call creates as an
    empty folder. The create is exclusive, so two runs started together never get the same folder;
    the run then fills it with `run_directory(root, name, claimed=True)`."""
    check_run_name(stem)
    root = _output_folder(root)
    name, number = stem, 1
    while True:
        try:
            (root / name).mkdir()
            return name
        except FileExistsError:
            number += 1
            name = f"{stem}-{number}"
        except OSError as error:
            raise InvalidPathError(f"cannot create run folder {str(root / name)!r}: {error.strerror}") from None


@contextlib.contextmanager
def run_directory(root: Path, name: str, replace: bool = False, claimed: bool = False) -> Iterator[Path]:
    """A run folder whose files appear under `root/name` only once everything in it is written.

    Unless it replaces an earlier run, the run first claims `root/name` as an empty folder (an
    exclusive create: a second run of that name, even one started at the same moment, is refused
    instead of overwriting it). Files are written into a hidden partial folder beside it; on success
    it takes the claimed folder's place, on any error it is removed with the claim, so a half-written
    run never looks finished.

    **Arguments:**

    - `root`: the parent folder (created if missing).
    - `name`: the run's name; `root/name` must not exist yet, unless `replace` or `claimed`.
    - `replace`: swap an earlier run folder of that name for the new one once the new one is
      complete (the earlier one stays untouched if anything fails).
    - `claimed`: `root/name` is the empty folder `claim_run_name` created for this run.

    **Returns:**

    A context manager yielding the partial folder to write into.
    """
    check_run_name(name)
    # a claimed name's folder was made ready (and cleared of leftovers) by `claim_run_name`
    root = Path(root) if claimed else _output_folder(root)
    final = root / name
    if not (replace or claimed):
        try:
            final.mkdir()
        except FileExistsError:
            raise InvalidPathError(f"run folder {str(final)!r} already exists; choose another --name") from None
        except OSError as error:
            raise InvalidPathError(f"cannot create run folder {str(final)!r}: {error.strerror}") from None
    elif replace and final.exists() and not final.is_dir():
        raise InvalidPathError(f"run folder {str(final)!r} is a file; give another --name")
    try:
        partial = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.partial-{process_owner()}."))
        os.chmod(partial, _default_mode(directory=True))
    except OSError as error:
        _release(final, replace)
        raise InvalidPathError(f"cannot write to output folder {str(root)!r}: {error.strerror}") from None
    try:
        yield partial
        if replace and final.exists():
            earlier = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.earlier-{process_owner()}."))
            os.replace(final, earlier / name)
            os.replace(partial, final)
            shutil.rmtree(earlier, ignore_errors=True)
        else:
            os.replace(partial, final)  # onto the empty claimed folder
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        _release(final, replace)
        raise


def _release(final: Path, replace: bool) -> None:
    """Gives up the empty folder a failed run claimed (a replacing run claimed none)."""
    if not replace:
        with contextlib.suppress(OSError):
            final.rmdir()
