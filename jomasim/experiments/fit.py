"""The theory as a measuring instrument: fit the reduced JoMA flow to a training run (`jomasim fit RUN`).

For every seed of a `jomasim compare` run, the reduced flow (J12-J13b) is started from that seed's
data and initial state and its free quantities are fitted to the trained logits: the rate ratio
ρ = η_z/η_w (which sets Theorem 1's κ and the logits' speed) and a time scale s of the flow (its
rates are s·η_w and s·ρ·η_w on the run's clock of SGD steps). They are fitted in log space from
the neutral start ρ = 1, s = 1, whatever rates the run trained with, so the fit measures them. On
an SGD run the run's clock is the flow's, so by default s is held at 1 and ρ alone is fitted (on
the saves ρ and s trade off against each other: `FitResults.correlation` reports how much where s
is fitted too, `FitConfig.clock`); Adam's clock is not SGD's, so there s is fitted. The
objective is the relative squared error of z over the first saves (the last `held_out` of them are
held out); its Jacobian goes through `diffrax.diffeqsolve` in forward mode (`ForwardMode`: two
parameters, hundreds of residuals; `jax.grad` of `objective` works as well through Diffrax's
default checkpointed adjoint), and the least-squares problem is solved by optimistix's
Levenberg–Marquardt, vmapped over seeds in one compiled call.
"""

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._errors import InvalidPathError, JomasimError, OutOfRangeError, at_least, check_fraction, check_positive
from .._settings import Settings, from_json, setting
from ..comparison import displacement
from ..metrics import normalized_correlation
from ..theory import JointFlow, ReducedFlow, ScheduledReducedFlow, SolverOptions, solve
from .block import MemberNumbers
from .compare import CompareConfig
from .transformer import COMPARE_MODELS

CLOCKS = ("auto", "fixed", "fitted")
"""How a fit treats the flow's time scale (`FitConfig.clock`)."""


@dataclasses.dataclass(frozen=True)
class FitConfig(Settings):
    """How a run is fitted."""

    held_out: float = setting(0.5, "fraction of the saved steps held out (the fit uses the ones before)", check=check_fraction)
    lr_ratio: float = setting(1.0, "starting value of the rate ratio rho = eta_z / eta_w", check=check_positive)
    time_scale: float = setting(1.0, "starting value of the flow's time scale", check=check_positive)
    iterations: int = setting(64, "Levenberg-Marquardt steps at most", check=at_least(1))
    rtol: float = setting(1e-8, "Levenberg-Marquardt relative tolerance", check=check_fraction)
    atol: float = setting(1e-10, "Levenberg-Marquardt absolute tolerance", check=check_fraction)
    knots: int = setting(1, "pieces of a rate ratio rho(t) that changes over training, equal in time over the fitted "
                         "saves (1: one rho)", check=at_least(1))
    progress: bool = setting(False, "print every Levenberg-Marquardt step of every seed (its loss and log(rho), "
                             "log(scale))")
    clock: str = setting("auto", "hold the flow's time scale at its starting value (fixed: the run's clock of SGD "
                         "steps is the flow's clock), fit it with rho (fitted), or auto: fixed for SGD runs, fitted "
                         "for Adam's", choices=CLOCKS)

    def fits_time_scale(self, config: CompareConfig) -> bool:
        """Whether the time scale is fitted for a run with `config` (`clock`)."""
        return self.clock == "fitted" or (self.clock == "auto" and getattr(config, "optimizer", "sgd") != "sgd")


class TrainedRun(NamedTuple):
    """What a fit reads from a `compare` run folder: its config, save steps, seeds and trained z
    `(S, n, M_c)`."""

    config: CompareConfig
    steps: np.ndarray
    seeds: np.ndarray
    z: np.ndarray


def read_run(folder: Path) -> TrainedRun:
    """A `jomasim compare` run folder, checked before use: a finished run (its summary.json
    written), a config that builds, and data whose steps, seeds and trained logits are those the
    config describes, with finite values.

    **Raises:**

    `InvalidPathError` naming the folder and the first thing wrong with it.
    """
    folder = Path(folder)
    where = f"{str(folder)!r}"
    try:
        record = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidPathError(f"{where} is not a run folder of jomasim (no readable config.json)") from None
    if not isinstance(record, dict):
        raise InvalidPathError(f"{where}: config.json holds a {type(record).__name__}, not a run's record")
    if record.get("command") != "compare":
        raise InvalidPathError(f"{where} is a {record.get('command', 'unknown')!r} run, not one of jomasim compare; fit "
                               "needs a compare run")
    if not (folder / "summary.json").is_file():
        raise InvalidPathError(f"{where} has no summary.json: the run did not finish; fit needs a finished compare run")
    model = record.get("model", "block")
    if not isinstance(model, str) or model not in COMPARE_MODELS:
        raise InvalidPathError(f"{where}: config.json names model {model!r}; it must be one of {list(COMPARE_MODELS)}")
    fields = {field.name for field in dataclasses.fields(COMPARE_MODELS[model])}
    given = record.get("config")
    if not isinstance(given, dict) or set(given) != fields:
        differ = sorted(fields ^ set(given)) if isinstance(given, dict) else "not a table"
        raise InvalidPathError(f"{where}: config.json's config is not one of model {model!r} ({differ})")
    try:
        config = from_json(COMPARE_MODELS[model], given)
    except (JomasimError, TypeError, AttributeError, ValueError) as error:
        raise InvalidPathError(f"{where}: config.json does not hold a compare config ({error})") from None
    try:
        with np.load(folder / "data.npz") as data:
            arrays = {name: data[name] for name in ("steps", "seeds", "z_train") if name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        raise InvalidPathError(f"{where}: data.npz cannot be read (missing, cut short or not an npz file)") from None
    missing = [name for name in ("steps", "seeds", "z_train") if name not in arrays]
    if missing:
        raise InvalidPathError(f"{where}: data.npz has no {', '.join(missing)}; fit needs a run with training")
    return TrainedRun(config, *_checked_arrays(where, config, arrays))


def _checked_arrays(where: str, config: CompareConfig, arrays: dict[str, np.ndarray]):
    """The run's (steps, seeds, z_train) if they are the ones `config` describes and finite."""
    steps, seeds, z = arrays["steps"], arrays["seeds"], arrays["z_train"]
    expected = (len(config.seed_list), len(config.save_steps), config.n_tokens)
    if not (np.issubdtype(steps.dtype, np.number) and np.array_equal(steps, config.save_steps)):
        raise InvalidPathError(f"{where}: data.npz's steps are not the saves its config.json describes (every "
                               f"{config.save_every} of {config.steps} steps)")
    if not (np.issubdtype(seeds.dtype, np.integer) and np.array_equal(seeds, config.seed_list)):
        raise InvalidPathError(f"{where}: data.npz's seeds {seeds.tolist()!r} are not its config's {config.seed_list}")
    if not np.issubdtype(z.dtype, np.floating) or z.shape != expected:
        raise InvalidPathError(f"{where}: data.npz's z_train has shape {z.shape} ({z.dtype}); its config describes "
                               f"{expected} (seeds, saves, contextual tokens)")
    if not np.all(np.isfinite(z)):
        seed = seeds[np.flatnonzero(~np.all(np.isfinite(z), axis=(1, 2)))[0]]
        raise InvalidPathError(f"{where}: the trained logits of seed {seed} are not finite (training diverged); "
                               "fit needs finite training")
    return steps, seeds, z


def fitted_flow(joint: JointFlow, y0, log_params: jax.Array, knots: jax.Array) -> tuple[ReducedFlow, object]:
    """The reduced flow of `joint` at rates s·η_w and s·ρ·η_w and its initial state, with
    `log_params` = (log ρ₁, …, log ρ_P, log s): one ρ (no `knots`) gives `ReducedFlow` from `y0`'s
    W, several a `ScheduledReducedFlow` with ρ(t) = ρ_p between the `knots` from `y0`."""
    ratios, scale = jnp.exp(log_params[:-1]), jnp.exp(log_params[-1])
    if knots.shape[0] == 0:
        rated = JointFlow(joint.data, attention=joint.attention_form, activation=joint.activation,
                          eta_w=scale * joint.eta_w, eta_z=scale * ratios[0] * joint.eta_w, temperature=joint.temperature)
        return ReducedFlow.from_joint(rated, y0), y0[0]
    flow = ScheduledReducedFlow(joint.data, ratios, knots, attention=joint.attention_form, activation=joint.activation,
                                eta_w=scale * joint.eta_w, temperature=joint.temperature)
    return flow, y0


def flow_logits(joint: JointFlow, y0, log_params: jax.Array, knots: jax.Array, steps: jax.Array,
                options: SolverOptions) -> jax.Array:
    """The fitted flow's logits at `steps`, `(n, M_c)` (±inf past a failed solve)."""
    flow, start = fitted_flow(joint, y0, log_params, knots)
    return jax.vmap(flow.logits)(solve(flow, start, steps, options).ys)


def residuals(log_params: jax.Array, args) -> jax.Array:
    """(z_flow − z_trained) / ‖z_trained‖ over the fitted saves, flattened; a state the solve did not
    reach counts as a large, flat residual (the step that led there is rejected)."""
    joint, y0, knots, z_trained, steps, options = args
    error = (flow_logits(joint, y0, log_params, knots, steps, options) - z_trained) / jnp.linalg.norm(z_trained)
    return jnp.where(jnp.isfinite(error), error, 1e3).ravel()


def objective(log_params: jax.Array, args) -> jax.Array:
    """The relative squared error of z over the fitted saves."""
    return jnp.sum(residuals(log_params, args) ** 2)


class FitResults(NamedTuple):
    """Per seed: the fitted `lr_ratio` ρ `(S, P)` (one per piece between the `knots`, on the run's
    clock) and `time_scale` s, NC of z before the fit (the neutral
    start, over the held-out saves), after it (over the fitted saves) and on the held-out saves,
    the fitted flow's size ‖Δz‖/‖Δz trained‖ at the last save (`comparison.displacement`), the
    solver's `status` (0 when Levenberg–Marquardt converged, 1 when not) and `iterations`, and
    when the time scale was fitted (`time_scale_fitted`) the `correlation` of log ρ (its first
    piece) with log s that the Gauss–Newton curvature at the solution implies (near ±1: the data
    cannot tell the two apart, NaN when s was held); the flow's z before and after at every save
    `(S, n, M_c)`, the saves `steps` and how many were fitted (`fitted`)."""

    lr_ratio: np.ndarray
    time_scale: np.ndarray
    knots: np.ndarray
    nc_before: np.ndarray
    nc_after: np.ndarray
    nc_held_out: np.ndarray
    size_held_out: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    time_scale_fitted: bool
    correlation: np.ndarray
    z_before: np.ndarray
    z_after: np.ndarray
    steps: np.ndarray
    fitted: int


def _fit_member(setting: CompareConfig, numbers: MemberNumbers, z_trained, steps, knots, fitted: int, start,
                free: int, fit: FitConfig):
    """One seed's fit of the first `free` entries of `start` (the rest held; traceable, vmapped over
    seeds)."""
    joint, y0 = setting.model.start(setting, numbers)
    # a few parameters and hundreds of residuals: the Jacobian in forward mode, one JVP each through the solve
    options = dataclasses.replace(setting.solve, adjoint="forward")
    args = (joint, y0, knots, z_trained[:fitted], steps[:fitted], options)
    full = lambda free_values: jnp.concatenate([free_values, start[free:]])  # noqa: E731
    free_residuals = lambda free_values, args: residuals(full(free_values), args)  # noqa: E731
    solution = optx.least_squares(free_residuals,
                                  optx.LevenbergMarquardt(rtol=fit.rtol, atol=fit.atol, verbose=fit.progress),
                                  start[:free], args, max_steps=fit.iterations, throw=False)
    values = full(solution.value)
    before = flow_logits(joint, y0, start, knots, steps, setting.solve)
    after = flow_logits(joint, y0, values, knots, steps, setting.solve)
    converged = solution.result == optx.RESULTS.successful
    # the Gauss–Newton covariance (JᵀJ)⁻¹ at the solution, as a correlation of log ρ₁ with log s
    jacobian = jax.jacfwd(free_residuals)(solution.value, args)
    covariance = jnp.linalg.pinv(jacobian.T @ jacobian)
    correlation = covariance[0, -1] / jnp.sqrt(covariance[0, 0] * covariance[-1, -1]) if free == len(start) else jnp.nan
    return values, jnp.where(converged, 0, 1), solution.stats["num_steps"], correlation, before, after


@eqx.filter_jit
def _fit_members(setting, numbers, z_trained, steps, knots, fitted, start, free, fit):
    return jax.vmap(lambda member, z: _fit_member(setting, member, z, steps, knots, fitted, start, free, fit))(
        numbers, z_trained)


def fit_run(run: TrainedRun, fit: FitConfig) -> FitResults:
    """Fits the reduced flow to every seed of a trained run in one compiled, vmapped call.

    **Arguments:**

    - `run`: the run (`read_run`).
    - `fit`: the `FitConfig`.

    **Returns:**

    The `FitResults`.
    """
    steps = np.asarray(run.steps, dtype=float)
    fitted = int(round(len(steps) * (1 - fit.held_out)))
    if not 2 <= fitted < len(steps):
        raise OutOfRangeError(f"held_out={fit.held_out!r} leaves {fitted} of the run's {len(steps)} saves to fit and "
                              f"{len(steps) - fitted} held out; each needs at least {2 if fitted < 2 else 1}")
    if fit.knots > fitted - 1:
        raise OutOfRangeError(f"knots={fit.knots} is not allowed for this run: its {fitted} fitted saves "
                              f"span {fitted - 1} intervals, at most one piece each; lower knots (or held_out)")
    config = run.config
    numbers = MemberNumbers(*map(np.asarray, config.members(config.eta_w, config.eta_z)))
    start = jnp.log(jnp.asarray([fit.lr_ratio] * fit.knots + [fit.time_scale]))
    knots = steps[fitted - 1] * np.arange(1, fit.knots) / fit.knots
    scaled = fit.fits_time_scale(config)
    values, status, iterations, correlation, before, after = _fit_members(
        config, numbers, jnp.asarray(run.z), jnp.asarray(steps), jnp.asarray(knots), fitted, start,
        fit.knots + scaled, fit)
    trained = np.asarray(run.z)
    nc = lambda z, rows: np.mean(np.asarray(normalized_correlation(z[:, rows], trained[:, rows])), axis=1)  # noqa: E731
    held = slice(fitted, None)
    return FitResults(
        lr_ratio=np.exp(np.asarray(values[:, :-1])), time_scale=np.exp(np.asarray(values[:, -1])), knots=knots,
        nc_before=nc(np.asarray(before), held), nc_after=nc(np.asarray(after), slice(0, fitted)),
        nc_held_out=nc(np.asarray(after), held), size_held_out=np.asarray(jax.vmap(displacement)(after, trained)[1][:, -1]),
        status=np.asarray(status), iterations=np.asarray(iterations), time_scale_fitted=scaled,
        correlation=np.asarray(correlation, dtype=float), z_before=np.asarray(before), z_after=np.asarray(after),
        steps=steps, fitted=fitted,
    )


class FittedRun(NamedTuple):
    """A fit with the run it was fitted to: what `jomasim fit` writes.

    **Fields:**

    - `run`: the `TrainedRun`.
    - `fit`: its `FitResults`.
    """

    run: TrainedRun
    fit: FitResults

    def arrays(self) -> dict[str, np.ndarray]:
        """The contents of `fit.npz`: the saves, the trained z, the flow's z before and after the
        fit, and the fitted ρ, time scale and knots."""
        fit = self.fit
        return {"steps": fit.steps, "z_trained": self.run.z, "z_before": fit.z_before, "z_after": fit.z_after,
                "lr_ratio": fit.lr_ratio, "time_scale": fit.time_scale, "knots": fit.knots}

    def summary(self) -> dict:
        """The numbers of `fit.json`: lists with one value per seed, and what was fitted."""
        run, results = self.run, self.fit
        return {
            "seeds": run.seeds.tolist(),
            "trained_lr_ratio": run.config.eta_z / run.config.eta_w,
            "fitted_lr_ratio": (results.lr_ratio[:, 0] if results.lr_ratio.shape[1] == 1 else results.lr_ratio).tolist(),
            "knot_steps": results.knots.tolist(),
            "fitted_time_scale": results.time_scale.tolist(),
            "time_scale_fitted": results.time_scale_fitted,
            "correlation_lr_ratio_time_scale": results.correlation.tolist() if results.time_scale_fitted else None,
            "nc_before": results.nc_before.tolist(),
            "nc_after": results.nc_after.tolist(),
            "nc_held_out": results.nc_held_out.tolist(),
            "size_held_out": results.size_held_out.tolist(),
            "status": ["converged" if code == 0 else "not converged" for code in results.status],
            "iterations": results.iterations.tolist(),
            "fitted_steps": [float(results.steps[0]), float(results.steps[results.fitted - 1])],
            "held_out_steps": [float(results.steps[results.fitted]), float(results.steps[-1])],
        }
