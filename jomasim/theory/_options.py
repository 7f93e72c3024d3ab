"""`SolverOptions`: how the JoMA flows are integrated, checked when made."""

import dataclasses

import diffrax as dfx
import jax.numpy as jnp

from .._errors import InvalidChoiceError, OutOfRangeError, check_choice, check_integer, check_positive

SOLVERS = {
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
    "kvaerno5": dfx.Kvaerno5,
    "heun": dfx.Heun,
    "euler": dfx.Euler,
}
FIXED_STEP_SOLVERS = ("euler",)
BATCH_MODES = (None, "vmap", "ode")


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How `simulate` and `solve` integrate: solver, tolerances, step budget, batch mode, blow-up event.

    Static (hashable): one compile per distinct value. Every field is checked when the options
    are made.

    **Fields:**

    - `solver`: `"tsit5"` (default), `"dopri5"`, `"dopri8"`, `"kvaerno5"` (stiff), `"heun"`, or
      `"euler"` (fixed step `dt0`).
    - `rtol`, `atol`: tolerances of the PID step-size controller.
    - `dt0`: first step (adaptive solvers choose one when `None`; required for `"euler"`).
    - `max_steps`: step budget per solve; a trajectory that exhausts it is reported, not raised.
    - `batch`: `None` for one trajectory; `"vmap"` for a batch solved with one step size per
      trajectory; `"ode"` for a batch solved as one ODE with a shared step size (cheaper per step,
      tolerance applied to the whole batch). In both batch modes every array in `field` and `y0`
      carries a leading batch axis (build it with `jomasim.stack`).
    - `blowup`: stop a trajectory when any attention logit |z| (`field.logits(y)`) reaches this
      value (a Diffrax event) and report it as a blow-up at that time: the attention has collapsed
      onto one token. Not available with `batch="ode"`. Pick a value the solver can reach (20 is
      e^20 ≈ 5·10⁸ between logits): near a finite-time singularity the step size shrinks towards
      the float64 resolution of t, and a threshold set too high ends as a failure instead.
    - `progress`: show a tqdm progress bar over time.
    - `unroll`: whether the explicit Runge–Kutta solvers (all but `"kvaerno5"` and `"euler"`)
      take their steps with the stages written out (`UnrolledERK`: Diffrax's tableau and results,
      no inner loop over the stages) instead of Diffrax's stage loop. `None` (default) unrolls
      small fields (at most `UNROLL_MAX_EQUATIONS` jaxpr equations, as the toys), where the loop
      costs more than the arithmetic, but not
      `batch="ode"` on a CPU, and keeps the loop for larger fields, where unrolling mostly adds
      compile time. `True`/`False` force either form (`benchmarks/unroll.py` measures both).
    """

    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-9
    dt0: float | None = None
    max_steps: int = 65536
    batch: str | None = None
    blowup: float | None = None
    progress: bool = False
    unroll: bool | None = None

    def __post_init__(self):
        check_choice("solver", self.solver, SOLVERS)
        if not (self.unroll is None or isinstance(self.unroll, bool)):
            raise InvalidChoiceError(f"unroll={self.unroll!r} is not allowed; choose None (by the field's size), True or False")
        check_choice("batch", self.batch, BATCH_MODES)
        check_choice("progress", self.progress, (False, True))
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)
        check_integer("max_steps", self.max_steps, least=1)
        if self.solver in FIXED_STEP_SOLVERS and self.dt0 is None:
            raise OutOfRangeError(f"solver={self.solver!r} takes fixed steps; give dt0 > 0")
        if self.dt0 is not None:
            check_positive("dt0", self.dt0)
        if self.blowup is not None:
            check_positive("blowup", self.blowup)
            if self.batch == "ode":
                raise OutOfRangeError("blowup needs one solve per trajectory; use batch='vmap' or None with blowup")


FLOAT32_TOLERANCE = 1e-5
"""The smallest rtol and atol an adaptive solve is run with in float32 (about 80 float32 ulps)."""


def check_precision(options: SolverOptions) -> None:
    """Raises `OutOfRangeError` when JAX computes in float32 (float64 is off) and the adaptive
    solver's tolerances ask for more than float32 resolves, instead of a solve that crawls or
    fails for want of precision. A fixed-step solver has no tolerance and runs either way."""
    if jnp.result_type(float) == jnp.float64 or options.solver in FIXED_STEP_SOLVERS:
        return
    if min(options.rtol, options.atol) < FLOAT32_TOLERANCE:
        raise OutOfRangeError(
            f"rtol={options.rtol!r} and atol={options.atol!r} need float64, and JAX computes in float32 "
            f"(jax_enable_x64 is off): run jax.config.update('jax_enable_x64', True) first, or give rtol and "
            f"atol >= {FLOAT32_TOLERANCE:g} to solve in float32"
        )
