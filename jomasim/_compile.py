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
