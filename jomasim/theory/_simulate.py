"""`simulate`: the one place that calls `diffrax.diffeqsolve`, and the `Trajectory` it returns."""

import dataclasses
import enum

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._errors import (
    InvalidChoiceError,
    JomasimError,
    OutOfRangeError,
    ShapeMismatchError,
    check_choice,
    check_integer,
    check_finite,
    check_positive,
)
from ..metrics import mean_attention_entropy
from ._flows import AbstractFlow
from ._unrolled import UnrolledERK

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


class Status(enum.IntEnum):
    """How a trajectory ended."""

    OK = 0
    MAX_STEPS = 1
    BLOWUP = 2
    NONFINITE = 3
    SOLVER_FAILURE = 4


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """How `simulate` and `solve` integrate: solver, tolerances, step budget, batch mode, blow-up event.

    Static (hashable): one compile per distinct value. The fields are the keyword arguments of
    `simulate`, which documents them; they are checked when the options are made.
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


class _BatchedField(eqx.Module):
    """A batch of fields as one ODE over the stacked state (shared step size)."""

    field: AbstractFlow

    def __call__(self, t, y, args):
        return jax.vmap(lambda field, state: field(t, state, args))(self.field, y)


def _diffrax_status(result) -> jax.Array:
    return jnp.select(
        [result == dfx.RESULTS.successful, result == dfx.RESULTS.event_occurred, result == dfx.RESULTS.max_steps_reached],
        [Status.OK, Status.BLOWUP, Status.MAX_STEPS],
        Status.SOLVER_FAILURE,
    )


def _error_norm(tree) -> jax.Array:
    """The RMS norm of a scaled error estimate, with NaN read as infinite.

    A trial step far too long can overflow a stage (e.g. exp(v²/2)) to inf and then inf − inf = NaN
    in the error estimate; Diffrax's controller would turn a NaN error into a NaN step size and
    reject forever. Read as infinite, the step is rejected and shrunk by the smallest factor.
    """
    norm = optx.rms_norm(tree)
    return jnp.where(jnp.isnan(norm), jnp.inf, norm)


# fields of at most this many jaxpr equations (the toys: 6 to 8) get unrolled stages by default;
# the JoMA block flows have 87 to 124, where unrolling added 1-3 s of XLA compile per program on
# a 2-core CPU and changed their run time by -10 % to +1 % (benchmarks/README.md, unroll.py)
UNROLL_MAX_EQUATIONS = 64


def _equation_count(jaxpr) -> int:
    """Equations of a jaxpr, those of the jaxprs inside its equations (calls, branches) included."""
    count = 0
    for equation in jaxpr.eqns:
        count += 1
        for param in equation.params.values():
            for inner in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    count += _equation_count(inner)
    return count


def _diffrax_solver(field, y0, t0, options: SolverOptions):
    """The Diffrax solver named by `options.solver`; an explicit Runge–Kutta one wrapped in
    `UnrolledERK` when `options.unroll` says so, or (`None`) when the field is small, except for
    a shared-step batch on a CPU (there the unrolled step measured 8-16 % slower at B = 64)."""
    solver = SOLVERS[options.solver]()
    if not isinstance(solver, dfx.AbstractERK):
        return solver
    unroll = options.unroll
    if unroll is None:
        shared_step_on_cpu = options.batch == "ode" and jax.default_backend() == "cpu"
        # the field is traced to count its equations only where the count decides
        unroll = not shared_step_on_cpu and _equation_count(
            eqx.filter_make_jaxpr(lambda f, y: f(t0, y, None))(field, y0)[0].jaxpr
        ) <= UNROLL_MAX_EQUATIONS
    return UnrolledERK(solver) if unroll else solver


def _solve_one(field, y0, ts, t0, options: SolverOptions, endpoints: bool):
    """One `diffeqsolve`; returns (ys at ts, time reached, status, step statistics).

    The time reached is the end time, the event time, or after a failure the last save time
    the solve got to. With `endpoints` (every save time is `t0` or `ts[-1]`) Diffrax saves the
    two ends only, which skips its search of `ts` after every step (an inner loop that cost
    more than an unrolled Tsit5 step of the toy on a CPU).
    """
    if options.solver in FIXED_STEP_SOLVERS:
        controller = dfx.ConstantStepSize()
    else:
        controller = dfx.PIDController(rtol=options.rtol, atol=options.atol, norm=_error_norm)
    event = None
    if options.blowup is not None:
        threshold = options.blowup
        event = dfx.Event(
            lambda t, y, args, **kwargs: jnp.max(jnp.abs(field.logits(y))) - threshold,
            root_finder=optx.Newton(rtol=1e-10, atol=1e-10),
        )
    solution = dfx.diffeqsolve(
        dfx.ODETerm(field),
        _diffrax_solver(field, y0, t0, options),
        t0,
        ts[-1],
        options.dt0,
        y0,
        saveat=dfx.SaveAt(t0=True, t1=True) if endpoints else dfx.SaveAt(ts=ts, t1=True),
        stepsize_controller=controller,
        max_steps=options.max_steps,
        event=event,
        throw=False,
        progress_meter=dfx.TqdmProgressMeter() if options.progress else dfx.NoProgressMeter(),
    )
    reached = jnp.max(jnp.where(jnp.isfinite(solution.ts), solution.ts, t0))
    # the saved rows at ts (the last row is the t1 save); with endpoints the rows are (t0, t1)
    rows = jnp.where(ts == t0, 0, 1) if endpoints else slice(None, -1)
    # diffrax may interpolate save times inside the step that ended at an event; past the time
    # reached there is no solution, so those states are marked inf like the rest.
    ys = jax.tree_util.tree_map(
        lambda leaf: jnp.where(_expand(ts > reached, leaf[rows]), jnp.inf, leaf[rows]), solution.ys
    )
    stats = tuple(solution.stats[name] for name in ("num_steps", "num_accepted_steps", "num_rejected_steps"))
    status = _diffrax_status(solution.result)
    if event is not None:
        # near a blow-up the event condition is so steep that the root finder may report no
        # convergence although it has located the event time to far below the save spacing
        status = jnp.where(solution.event_mask, Status.BLOWUP, status)
    return ys, reached, status, stats


def _expand(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    """A per-save-time mask `(n,)` with trailing unit axes to broadcast against a state leaf."""
    return jnp.reshape(mask, mask.shape + (1,) * (leaf.ndim - 1))


def _mark_nonfinite(ys, ts, t_final, status):
    """Status NONFINITE for a trajectory the solver called fine but whose saved states are not finite."""
    reached = ts <= t_final
    finite = jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(leaf) | ~_expand(reached, leaf)) for leaf in jax.tree_util.tree_leaves(ys)])
    )
    return jnp.where((status == Status.OK) & ~finite, Status.NONFINITE, status)


def solve(
    field: AbstractFlow, y0, ts, options: SolverOptions = SolverOptions(), t0: float = 0.0, *, endpoints: bool = False
) -> "Trajectory":
    """Integrates one trajectory, without the input checks of `simulate`: the traceable core to
    call inside `jax.jit`, `jax.vmap` or `jax.shard_map` (sweeps vmap it over points whose fields,
    initial states and save times all differ).

    **Arguments:**

    - `field`, `y0`, `ts`, `t0`: as in `simulate`, for one trajectory; the caller has checked them.
    - `options`: a `SolverOptions` with `batch=None`.
    - `endpoints`: the caller's promise that every save time is `t0` or `ts[-1]` (and `ts[-1] > t0`):
      then only the two ends are saved, without Diffrax's search of `ts` after every step.

    **Returns:**

    An unbatched `Trajectory` (vmapped, every field gains the batch axis, `ts` included).
    """
    if options.batch is not None:
        raise OutOfRangeError(f"solve integrates one trajectory; got batch={options.batch!r} (vmap solve, or use simulate)")
    ys, t_final, status, stats = _solve_one(field, y0, ts, t0, options, endpoints)
    return Trajectory(field, ts, ys, t_final, _mark_nonfinite(ys, ts, t_final, status), *stats)


_solve_single = eqx.filter_jit(solve)


@eqx.filter_jit
def _solve_batch(field, y0, ts, t0, options: SolverOptions, endpoints: bool) -> "Trajectory":
    if options.batch == "vmap":
        ys, t_final, status, stats = jax.vmap(lambda f, y: _solve_one(f, y, ts, t0, options, endpoints))(field, y0)
    else:
        ys, t_final, status, stats = _solve_one(_BatchedField(field), y0, ts, t0, options, endpoints)
        ys = jax.tree_util.tree_map(lambda leaf: jnp.moveaxis(leaf, 1, 0), ys)
        size = jax.tree_util.tree_leaves(y0)[0].shape[0]
        t_final, status = jnp.full(size, t_final), jnp.full(size, status)
        stats = tuple(jnp.full(size, s) for s in stats)
    status = jax.vmap(_mark_nonfinite, in_axes=(0, None, 0, 0))(ys, ts, t_final, status)
    return Trajectory(field, ts, ys, t_final, status, *stats)


_STATUS_TEXTS = {
    Status.OK: "ok",
    Status.MAX_STEPS: "max steps reached at {clock} = {time:.6g}",
    Status.BLOWUP: "blow-up at {clock} = {time:.6g}",
    Status.NONFINITE: "NaN or infinity in the state before {clock} = {time:.6g}",
    Status.SOLVER_FAILURE: "solver failure at {clock} = {time:.6g}",
}


def status_messages(status, t_final, clock: str = "t") -> list[str]:
    """What happened to each trajectory, in words, from its `Status` codes and the times reached.

    **Arguments:**

    - `status`, `t_final`: scalars or `(B,)` arrays.
    - `clock`: what the times count (`"t"`, or `"step"` for times in SGD steps).

    **Returns:**

    One line per trajectory: `ok`, `blow-up at t = …`, `max steps reached at t = …`, ...
    """
    codes = np.atleast_1d(np.asarray(status))
    times = np.atleast_1d(np.asarray(t_final))
    return [_STATUS_TEXTS[Status(int(code))].format(clock=clock, time=time) for code, time in zip(codes, times)]


class Trajectory(eqx.Module):
    """The result of `simulate`: saved states, how each trajectory ended, and derived quantities.

    With a batch, every field below (except `ts`) has a leading batch axis.

    **Fields:**

    - `field`: the vector field (batched like the states).
    - `ts`: save times, `(n,)` (or `(B, n)` when `solve` was vmapped with its own times per member).
    - `ys`: states at `ts`, a pytree of arrays `([B,] n, ...)`. States at times after a trajectory
      stopped (blow-up, failure) are ±inf; see `reached`.
    - `t_final`: the time each trajectory reached (the last save time if it finished).
    - `status`: a `Status` code per trajectory.
    - `num_steps`, `num_accepted_steps`, `num_rejected_steps`: solver step counts.
    """

    field: AbstractFlow
    ts: jax.Array
    ys: object
    t_final: jax.Array
    status: jax.Array
    num_steps: jax.Array
    num_accepted_steps: jax.Array
    num_rejected_steps: jax.Array

    @property
    def batched(self) -> bool:
        """Whether this is a batch of trajectories (then `t_final` has a batch axis)."""
        return jnp.ndim(self.t_final) == 1

    @property
    def ok(self) -> jax.Array:
        """Whether each trajectory finished without trouble."""
        return self.status == Status.OK

    @property
    def reached(self) -> jax.Array:
        """`([B,] n)` mask of the save times each trajectory actually reached."""
        return self.ts <= jnp.expand_dims(self.t_final, -1)

    def messages(self) -> list[str]:
        """One line per trajectory: `ok`, `blow-up at t = …`, `max steps reached at t = …`, ..."""
        return status_messages(self.status, self.t_final)

    def member(self, index: int) -> "Trajectory":
        """Trajectory `index` of a batch, as an unbatched `Trajectory`."""
        if not self.batched:
            raise ShapeMismatchError("member() needs a batched trajectory; this one is a single solve")
        parts = jax.tree_util.tree_map(
            lambda leaf: leaf[index],
            (self.field, self.ys, self.t_final, self.status, self.num_steps, self.num_accepted_steps, self.num_rejected_steps),
        )
        field, ys, t_final, status, *stats = parts
        ts = self.ts[index] if jnp.ndim(self.ts) == 2 else self.ts
        return Trajectory(field, ts, ys, t_final, status, *stats)

    def map_states(self, fn):
        """Applies `fn(field, y)` to every saved state; returns arrays `([B,] n, ...)`."""
        over_time = jax.vmap(fn, in_axes=(None, 0))
        if self.batched:
            return jax.vmap(over_time)(self.field, self.ys)
        return over_time(self.field, self.ys)

    def logits(self) -> jax.Array:
        """Attention logits z at every saved state, `([B,] n, M_c)`."""
        return self.map_states(lambda field, y: field.logits(y))

    def attention(self) -> jax.Array:
        """Attention distribution at every saved state, `([B,] n, M_c[, K])`."""
        return self.map_states(lambda field, y: field.attention(y))

    def entropy(self) -> jax.Array:
        """Attention entropy (nats) at every saved state, averaged over classes, `([B,] n)`."""
        return self.map_states(lambda field, y: mean_attention_entropy(field.attention(y)))


def _batch_size(tree) -> int:
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ShapeMismatchError(
            f"a batch needs every array of the field and of y0 to share one leading batch axis; found leading sizes "
            f"{sorted(map(str, sizes))} (build the fields under jax.vmap, or stack a list of them with jomasim.stack)"
        )
    return sizes.pop()


def _signature(tree) -> tuple:
    """Structure, shapes and dtypes of a pytree: all that a shape check depends on."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(leaf), jnp.result_type(leaf)) for leaf in leaves)


_CHECKED_SIGNATURES: set = set()


def _check_state(field, y0, t0) -> None:
    """Raises `ShapeMismatchError` unless `field(t0, y0)` has the structure and shapes of `y0`.

    `field` and `y0` may hold arrays or `jax.ShapeDtypeStruct`s (a batch member's shapes). The
    check traces the field once per distinct signature of (field, y0); repeated solves of the
    same system skip it.
    """
    signature = (_signature(field), _signature(y0))
    if signature in _CHECKED_SIGNATURES:
        return
    shapes = jax.tree_util.tree_map(np.shape, y0)
    try:
        derivative = jax.eval_shape(lambda f, y: f(t0, y, None), field, y0)
    except JomasimError:
        raise
    except (TypeError, ValueError) as error:
        raise ShapeMismatchError(
            f"y0 has shapes {shapes}, which the field cannot take: {str(error).splitlines()[0]}"
        ) from None
    expected = jax.tree_util.tree_map(lambda s: s.shape, derivative)
    if shapes != expected:
        raise ShapeMismatchError(f"y0 has shapes {shapes}; the field's state has shapes {expected}")
    _CHECKED_SIGNATURES.add(signature)


def simulate(
    field: AbstractFlow,
    y0,
    ts,
    *,
    t0: float = 0.0,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    dt0: float | None = None,
    max_steps: int = 65536,
    batch: str | None = None,
    blowup: float | None = None,
    progress: bool = False,
    unroll: bool | None = None,
) -> Trajectory:
    """Integrates a JoMA vector field with Diffrax and saves the state at `ts`.

    **Arguments:**

    - `field`: an `AbstractFlow` (`JointFlow`, `ReducedFlow`, `SalienceFlow`, `NonlinearToyFlow`).
    - `y0`: the initial state (a pytree matching the field).
    - `ts`: increasing save times, `(n,)`; the solve runs from `t0` to `ts[-1]`. When they are only
      `t0` and the end (e.g. `[t0, t1]` or `[t1]`), the two ends are saved without Diffrax's search
      of `ts` after every step (the same states, cheaper steps).
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
      costs more than the arithmetic (1.6–2.6× more trajectories/s on a CPU), but not
      `batch="ode"` on a CPU, and keeps the loop for larger fields, where unrolling mostly adds
      compile time. `True`/`False` force either form (`benchmarks/unroll.py` measures both).

    **Returns:**

    A `Trajectory`. Failures never raise and are never hidden: each trajectory carries its
    `status` and `t_final`, and `messages()` says what happened.
    """
    options = SolverOptions(solver, rtol, atol, dt0, max_steps, batch, blowup, bool(progress), unroll)
    ts = jnp.asarray(ts, dtype=jnp.result_type(float))
    if ts.ndim != 1 or ts.size == 0:
        raise ShapeMismatchError(f"ts has shape {ts.shape}; expected a non-empty vector of save times")
    check_finite("ts", ts)
    times = np.asarray(ts)
    if np.any(np.diff(times) < 0) or times[0] < t0:
        raise OutOfRangeError(f"ts must be non-decreasing and start at or after t0={t0}; got ts from {times[0]} to {times[-1]}")
    for leaf in jax.tree_util.tree_leaves(y0):
        check_finite("y0", leaf)
    y0 = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf, dtype=jnp.result_type(float)), y0)
    endpoints = bool(times[-1] > t0 and np.all((times == t0) | (times == times[-1])))
    if batch is None:
        _check_state(field, y0, t0)
        return _solve_single(field, y0, ts, options, float(t0), endpoints=endpoints)
    _batch_size((field, y0))
    member = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf)[1:], jnp.result_type(leaf)), (field, y0))
    _check_state(*member, t0)
    return _solve_batch(field, y0, ts, float(t0), options, endpoints=endpoints)


def stack(items):
    """Stacks a list of fields or states (pytrees of equal structure) along a new leading batch axis.

    Static parts (attention kind, activation, ...) must agree across the list.

    **Arguments:**

    - `items`: a non-empty sequence of pytrees.

    **Returns:**

    One pytree whose arrays have a leading axis of size `len(items)`.
    """
    if len(items) == 0:
        raise ShapeMismatchError("stack needs at least one item")
    structures = {jax.tree_util.tree_structure(item) for item in items}
    if len(structures) != 1:
        raise ShapeMismatchError("stack needs items of one structure (same field type, attention kind and activation)")
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *items)
