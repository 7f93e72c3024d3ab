"""Sweeps: a grid of points, chunked into compiled vmapped calls, sharded over local devices, split
over JAX processes, resumable, merged into one table."""

from ._grid import Grid as Grid
from ._grid import load_grid as load_grid
from ._grid import parse_axis_values as parse_axis_values
from ._grid import resolve_points as resolve_points
from ._run import MERGED_COLUMNS as MERGED_COLUMNS
from ._run import SweepResult as SweepResult
from ._run import default_chunk_size as default_chunk_size
from ._run import initialize_processes as initialize_processes
from ._run import local_mesh as local_mesh
from ._run import plan_chunks as plan_chunks
from ._run import run_sweep as run_sweep
from ._store import computed_chunks as computed_chunks
from ._store import recorded_digests as recorded_digests
from ._task import SweepTask as SweepTask
