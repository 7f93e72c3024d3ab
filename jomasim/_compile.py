"""XLA options for compiling the §3.5 block programs (training, both flows and their measures).

On a CPU the first run of such a program is almost all compile, and most of the compile is LLVM
optimising a few hundred small fused kernels. Two XLA options shorten it without costing run time
on these programs: LLVM's optimisation level 1 instead of XLA's default 3 (the kernels are small,
and LLVM's heavier passes buy them nothing) and XLA's classic loop emitters instead of its newer
fusion emitters. They are not global defaults: the classic emitters run the small unrolled toy
field slower, and on accelerators the options are untested. The measurements behind this are in
`benchmarks/README.md` (`compile_and_memory.py`).
"""

import functools
import os
from pathlib import Path

import equinox._errors
import jax

LIGHT_CPU_COMPILE = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
"""The XLA debug options of a block program compiled for a CPU."""


def block_compiler_options(platform: str) -> dict:
    """The `compiler_options` (of `jax.jit`) for a block program on `platform`.

    **Arguments:**

    - `platform`: the JAX platform the program is compiled for (`"cpu"`, `"gpu"`, `"tpu"`).

    **Returns:**

    `LIGHT_CPU_COMPILE` on a CPU, less any option that `XLA_FLAGS` sets (the user's flags win) and
    any that this jaxlib's XLA does not know (debug options come and go between releases, and XLA
    refuses a program given an unknown one); no options elsewhere.
    """
    if platform != "cpu":
        return {}
    flags = os.environ.get("XLA_FLAGS", "")
    return {name: value for name, value in LIGHT_CPU_COMPILE.items()
            if name not in flags and known_cpu_option(name, value)}


@functools.cache
def known_cpu_option(name: str, value) -> bool:
    """Whether XLA's CPU compiler takes the debug option `name` = `value` (it compiles a one-line
    program with it, once per process)."""
    cpu_scalar = jax.device_put(0.0, jax.devices("cpu")[0])
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(cpu_scalar).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


CACHE_VARIABLE = "JOMASIM_COMPILE_CACHE"
"""The environment variable that turns the command line's compilation cache off (`off`, `0`,
`false`, `no`) or names its folder (default: `compiled/` under `$JOMASIM_CACHE`, else
`~/.cache/jomasim`)."""


def compile_cache_folder() -> Path | None:
    """Where the command line keeps compiled programs, or None when `CACHE_VARIABLE` turns the cache off."""
    setting = os.environ.get(CACHE_VARIABLE, "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return Path(setting)
    return Path(os.environ.get("JOMASIM_CACHE", Path.home() / ".cache" / "jomasim")) / "compiled"


def use_compile_cache(folder: Path) -> None:
    """Keeps this process's compiled XLA programs in `folder` (JAX's persistent compilation cache),
    so that a second run of a command in a fresh process skips most of its compile.

    JAX refuses to store a program with host callbacks, and Equinox's runtime checks (inside every
    Diffrax solve) are host callbacks unless its errors are turned into NaNs. So, unless the user
    chose Equinox's error mode (`EQX_ON_ERROR`), this sets it to `nan` for the process: the solves
    run with `throw=False` and report each trajectory's failure in its status, so a check that
    would have raised becomes NaNs in a trajectory already marked failed. For the command line's
    own process only: a library never changes either setting.
    """
    if "EQX_ON_ERROR" not in os.environ:
        # Equinox reads its error mode from this module variable at trace time (set from the
        # environment at its import, before the command line can set the environment)
        equinox._errors.EQX_ON_ERROR = "nan"
    jax.config.update("jax_compilation_cache_dir", str(folder))
