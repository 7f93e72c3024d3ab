"""`simulate` and `solve`: the one place that calls `diffrax.diffeqsolve`."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._errors import JomasimError, OutOfRangeError, ShapeMismatchError, check_finite
from ._flows import AbstractFlow
from ._options import ADJOINTS, FIXED_STEP_SOLVERS, SOLVERS, SolverOptions, check_precision
from ._trajectory import Status, Trajectory
from ._unrolled import UnrolledERK


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


def _error_norm(tree, size: int | None = None) -> jax.Array:
    """The RMS norm of a scaled error estimate over `size` entries (default: the tree's own), with
    NaN read as infinite.

    `size` is the number of entries of the field's own state: a field solved in projected
    coordinates (`AbstractFlow.solved`) has fewer, and the entries it drops (W outside the span of
    the embeddings) never move, so their error is zero; counting them keeps the controller's norm,
    and so its steps, those of a solve in the field's own coordinates.

    A trial step far too long can overflow a stage (e.g. exp(v²/2)) to inf and then inf − inf = NaN
    in the error estimate; Diffrax's controller would turn a NaN error into a NaN step size and
    reject forever. Read as infinite, the step is rejected and shrunk by the smallest factor.
    """
    squares = sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree))
    norm = jnp.sqrt(squares / (_size(tree) if size is None else size))
    return jnp.where(jnp.isnan(norm), jnp.inf, norm)


# fields of at most this many jaxpr equations (the toys) get unrolled stages by default; the JoMA
# block flows, several times larger, only gain compile time from it (benchmarks/README.md, unroll.py)
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
    a shared-step batch on a CPU (where the unrolled step is the slower one: benchmarks/README.md)."""
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


def _solve_one(field, y0, ts, t0, options: SolverOptions, endpoints: bool, lift=None, size: int | None = None):
    """One `diffeqsolve`; returns (ys at ts, time reached, status, step statistics).

    The time reached is the end time, the event time, or after a failure the last save time
    the solve got to. With `endpoints` (every save time is `t0` or `ts[-1]`) Diffrax saves the
    two ends only, which skips its search of `ts` after every step (an inner loop that cost
    more than an unrolled Tsit5 step of the toy on a CPU). `field` and `y0` are in the solved
    coordinates; `lift(p)` maps a saved state back to the caller's (before states past the time
    reached are marked), and `size` is the caller's state's number of entries (`_error_norm`).
    """
    size = _size(y0) if size is None else size
    if options.solver in FIXED_STEP_SOLVERS:
        controller = dfx.ConstantStepSize()
    else:
        controller = dfx.PIDController(rtol=options.rtol, atol=options.atol, norm=lambda tree: _error_norm(tree, size))
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
        adjoint=ADJOINTS[options.adjoint](),
        throw=False,
        progress_meter=dfx.TqdmProgressMeter() if options.progress else dfx.NoProgressMeter(),
    )
    reached = jnp.max(jnp.where(jnp.isfinite(solution.ts), solution.ts, t0))
    # an event fires where its condition changes sign, so a start already at or past the
    # threshold would never fire: such a trajectory blows up at t0
    started_past = jnp.asarray(False) if event is None else jnp.max(jnp.abs(field.logits(y0))) >= threshold
    reached = jnp.where(started_past, t0, reached)
    # the saved rows at ts (the last row is the t1 save); with endpoints the rows are (t0, t1)
    rows = jnp.where(ts == t0, 0, 1) if endpoints else slice(None, -1)
    # diffrax may interpolate save times inside the step that ended at an event; past the time
    # reached there is no solution, so those states are marked inf like the rest.
    saved = jax.tree_util.tree_map(lambda leaf: leaf[rows], solution.ys)
    if lift is not None:
        saved = lift(saved)
    ys = jax.tree_util.tree_map(lambda leaf: jnp.where(_expand(ts > reached, leaf), jnp.inf, leaf), saved)
    stats = tuple(solution.stats[name] for name in ("num_steps", "num_accepted_steps", "num_rejected_steps"))
    status = _diffrax_status(solution.result)
    if event is not None:
        # near a blow-up the event condition is so steep that the root finder may report no
        # convergence although it has located the event time to far below the save spacing
        status = jnp.where(solution.event_mask | started_past, Status.BLOWUP, status)
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
    ys, t_final, status, stats = _solve_solved(field, y0, ts, t0, options, endpoints)
    return Trajectory(field, ts, ys, t_final, _mark_nonfinite(ys, ts, t_final, status), *stats)


def _size(y0) -> int:
    """The number of entries of a state."""
    return sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(y0))


def _solve_solved(field: AbstractFlow, y0, ts, t0, options: SolverOptions, endpoints: bool):
    """`_solve_one` of one trajectory in the field's solved coordinates (`AbstractFlow.solved`),
    its saved states lifted back."""
    return _solve_one(field.solved(), field.project(y0), ts, t0, options, endpoints,
                      lift=lambda saved: jax.vmap(lambda p: field.lift(p, y0))(saved), size=_size(y0))


_solve_single = eqx.filter_jit(solve)


@eqx.filter_jit
def _solve_batch(field, y0, ts, t0, options: SolverOptions, endpoints: bool) -> "Trajectory":
    if options.batch == "vmap":
        ys, t_final, status, stats = jax.vmap(lambda f, y: _solve_solved(f, y, ts, t0, options, endpoints))(field, y0)
    else:
        solved = jax.vmap(lambda f: f.solved())(field)
        p0 = jax.vmap(lambda f, y: f.project(y))(field, y0)
        # the saved states are (saves, batch, ...): lift each member's from its own start
        lift = lambda saved: jax.vmap(lambda f, p, y: jax.vmap(lambda q: f.lift(q, y))(p), in_axes=(0, 1, 0), out_axes=1)(  # noqa: E731
            field, saved, y0)
        ys, t_final, status, stats = _solve_one(_BatchedField(solved), p0, ts, t0, options, endpoints, lift=lift,
                                                size=_size(y0))
        ys = jax.tree_util.tree_map(lambda leaf: jnp.moveaxis(leaf, 1, 0), ys)
        size = jax.tree_util.tree_leaves(y0)[0].shape[0]
        t_final, status = jnp.full(size, t_final), jnp.full(size, status)
        stats = tuple(jnp.full(size, s) for s in stats)
    status = jax.vmap(_mark_nonfinite, in_axes=(0, None, 0, 0))(ys, ts, t_final, status)
    return Trajectory(field, ts, ys, t_final, status, *stats)


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


def simulate(field: AbstractFlow, y0, ts, options: SolverOptions = SolverOptions(), *, t0: float = 0.0) -> Trajectory:
    """Integrates a JoMA vector field with Diffrax and saves the state at `ts`.

    **Arguments:**

    - `field`: an `AbstractFlow` (`JointFlow`, `ReducedFlow`, `SalienceFlow`, `NonlinearToyFlow`).
    - `y0`: the initial state (a pytree matching the field).
    - `ts`: increasing save times, `(n,)`; the solve runs from `t0` to `ts[-1]`. When they are only
      `t0` and the end (e.g. `[t0, t1]` or `[t1]`), the two ends are saved without Diffrax's search
      of `ts` after every step (the same states, cheaper steps).
    - `options`: a `SolverOptions`: solver, tolerances, step budget, batch mode, blow-up event.
      With `batch="vmap"` or `"ode"` every array in `field` and `y0` carries a leading batch axis
      (build it with `jomasim.stack`).
    - `t0`: the start time.

    **Returns:**

    A `Trajectory`. Failures never raise and are never hidden: each trajectory carries its
    `status` and `t_final`, and `messages()` says what happened.
    """
    check_precision(options)
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
    if options.batch is None:
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
