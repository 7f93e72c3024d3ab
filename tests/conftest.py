"""Shared test set-up: float64 (the tests opt in, as a user's program does), a fixed hypothesis
profile, and XLA's quick compile for the small programs the tests run."""

import ctypes
import gc
import os

# The tests compile XLA programs with the backend (LLVM) optimisation level 0: the same HLO
# programs, compiled faster and run slower, which at the tests' sizes (runs of milliseconds
# against compiles of seconds) shortens the suite (benchmarks/README.md, compile_and_memory.py).
# Set before JAX starts its backend; the subprocesses of the tests inherit it; a level given in
# XLA_FLAGS wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

# The command line keeps compiled programs in a persistent cache; the tests' in-process commands
# leave JAX's and Equinox's process settings alone (the test of the cache turns it on in its own
# processes).
os.environ.setdefault("JOMASIM_COMPILE_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_enable_x64", True)

settings.register_profile("jomasim", max_examples=25, deadline=None)
settings.load_profile("jomasim")

# glibc keeps freed memory in its arenas; `malloc_trim` hands it back to the system (None elsewhere)
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Each test module compiles its own programs; dropping them after the module, and handing
    their memory back, keeps the suite's memory to one module's programs at a time."""
    yield
    jax.clear_caches()
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@pytest.fixture()
def dead_owner() -> str:
    """An owner text (`jomasim.io.process_owner`'s form) of this host naming a process that does
    not exist: what a killed run leaves in the names of its temporary files, folders and locks."""
    from jomasim.io import process_owner

    host = process_owner().rpartition("-")[0]
    return f"{host}-{next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f'/proc/{pid}'))}"
