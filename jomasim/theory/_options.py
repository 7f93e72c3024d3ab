"""`SolverOptions`: how the JoMA flows are integrated, checked when made."""

import dataclasses

import diffrax as dfx
import jax.numpy as jnp

from .._errors import OutOfRangeError, at_least, check_positive
from .._settings import Settings, optional, setting

SOLVERS = {
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
    "kvaerno5": dfx.Kvaerno5,
    "heun": dfx.Heun,
    "euler": dfx.Euler,
}
FIXED_STEP_SOLVERS = ("euler",)
ADJOINTS = {"checkpointed": dfx.RecursiveCheckpointAdjoint, "forward": dfx.ForwardMode}
"""How a derivative through a solve is taken: reverse mode through Diffrax's checkpointed loop (its
default; for many parameters), or forward mode (for a few parameters and many outputs)."""
BATCH_MODES = (None, "vmap", "ode")


@dataclasses.dataclass(frozen=True)
class SolverOptions(Settings):
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
    - `adjoint`: how a derivative through the solve is taken: `"checkpointed"` (Diffrax's
      `RecursiveCheckpointAdjoint`, reverse mode: `jax.grad`) or `"forward"` (`ForwardMode`:
      `jax.jvp`, cheaper for a few parameters, as `jomasim fit`'s two).
    - `unroll`: whether the explicit Runge–Kutta solvers (all but `"kvaerno5"` and `"euler"`)
      take their steps with the stages written out (`UnrolledERK`: Diffrax's tableau and results,
      no inner loop over the stages) instead of Diffrax's stage loop. `None` (default) unrolls
      small fields (at most `UNROLL_MAX_EQUATIONS` jaxpr equations, as the toys), where the loop
      costs more than the arithmetic, but not
      `batch="ode"` on a CPU, and keeps the loop for larger fields, where unrolling mostly adds
      compile time. `True`/`False` force either form (`benchmarks/unroll.py` measures both).
    """

    solver: str = setting("tsit5", "the Diffrax solver", choices=SOLVERS)
    rtol: float = setting(1e-6, "relative tolerance of the step-size controller", check=check_positive)
    atol: float = setting(1e-9, "absolute tolerance of the step-size controller", check=check_positive)
    dt0: float | None = setting(None, "fixed step of the euler solver (required there), first step of the others "
                                "(none: the solver picks), on the run's clock (compare, sweep: SGD steps)",
                                check=optional(check_positive))
    max_steps: int = setting(65536, "solver step budget per trajectory", check=at_least(1))
    batch: str | None = setting(None, "None, vmap (a step size per trajectory) or ode (one shared step size)",
                                choices=BATCH_MODES)
    blowup: float | None = setting(None, "stop a flow when a logit |z| reaches this value and report a blow-up "
                                   "(none: never)", check=optional(check_positive))
    progress: bool = setting(False, "show a progress bar over time")
    adjoint: str = setting("checkpointed", "derivatives through the solve: checkpointed (reverse mode) or forward",
                           choices=ADJOINTS)
    unroll: bool | None = setting(None, "stages written out (True), Diffrax's stage loop (False), or by the field's "
                                  "size (None)")

    def check_fields(self):
        if self.solver in FIXED_STEP_SOLVERS and self.dt0 is None:
            raise OutOfRangeError(f"solver={self.solver!r} takes fixed steps; give dt0 > 0")
        if self.blowup is not None and self.batch == "ode":
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
