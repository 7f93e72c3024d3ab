"""Fig. 4: the nonlinear toy, where attention gets sparse first and dense again (§4.4, §4.5).

Two runs on the same targets μ:

(a) the authors' discrete update, exactly: v(0) = v0 in every component; for each iteration the
    attention a = softmax(v²/T) (T = 3) is formed, its entropy recorded, and v moves by one Euler
    step of size 0.02 along (μ − v) ∘ a;
(b) the paper's ODE v̇ = (μ − v) ∘ exp(v²/2) (J22/J23 with τ = 1), integrated with Diffrax
    (Kvaerno5, stiff) from the same v(0), with attention softmax(v²/2).

μ is drawn uniformly from [1, 4) with NumPy's generator seeded by `mu_seed` and sorted (the
authors used PyTorch's generator with seed 0, which gives other numbers), or given explicitly.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import OutOfRangeError, ShapeMismatchError, at_least, check_fraction, check_positive, check_seed
from .._memory import check_fits
from .._progress import working
from .._settings import Settings, setting
from ..metrics import entropy
from ..theory import NonlinearToyFlow, SolverOptions, convergence_time, simulate, status_messages


@dataclasses.dataclass(frozen=True)
class Fig4Config(Settings):
    """Settings of Fig. 4; the defaults are the authors' (`draw_figure_4.py`): run (a) is their
    discrete update, run (b) the ODE (J23); T = 2 in (b) is the paper's exp(v²/2)."""

    mu_seed: int = setting(0, "generator seed of the targets mu ~ U[1, 4), sorted", check=check_seed)
    components: int = setting(10, "number of targets mu drawn", check=at_least(1))
    mu: tuple[float, ...] | None = setting(None, "explicit targets instead of drawn ones (kept in the order given)")
    v0: float = setting(0.05, "initial value of every component")
    step: float = setting(0.02, "step size of run (a)", check=check_positive)
    temperature: float = setting(3.0, "temperature of run (a)", check=check_positive)
    iterations: int = setting(5000, "iterations of run (a)", check=at_least(1))
    snapshot_every: int = setting(100, "iterations between the stored states of run (a)", check=at_least(1))
    ode_temperature: float = setting(2.0, "temperature of run (b), the ODE", check=check_positive)
    ode_t_end: float = setting(5.0, "end time of run (b)", check=check_positive)
    ode_saves: int = setting(1001, "saved times of run (b)", check=at_least(2))
    converged: float = setting(0.01, "a component has converged when |mu - v| <= converged * mu", check=check_fraction)

    def check_fields(self):
        if self.mu is not None and len(self.mu) == 0:
            raise ShapeMismatchError("mu is empty; give at least one target")
        if self.mu is not None and not np.all(np.asarray(self.mu) * (1 - self.converged) > max(self.v0, 0.0)):
            raise OutOfRangeError(
                f"mu={tuple(self.mu)} is not allowed; every target must exceed max(v0, 0) / (1 - converged) = "
                f"{max(self.v0, 0.0) / (1 - self.converged):.4g} so that v rises to it"
            )

    def targets(self) -> np.ndarray:
        """The targets μ: explicit, or sorted U[1, 4) draws from `mu_seed`."""
        if self.mu is not None:
            return np.asarray(self.mu, dtype=float)
        return np.sort(np.random.default_rng(self.mu_seed).uniform(1.0, 4.0, self.components))


@functools.partial(jax.jit, static_argnames=("iterations", "relax"))
def discrete_toy(mu: jax.Array, v0: jax.Array, step: float, temperature: float, iterations: int, relax: bool = True):
    """The authors' update (a) in one `lax.scan`.

    **Arguments:**

    - `mu`: targets `(n,)`; `v0`: initial state `(n,)`.
    - `step`, `temperature`: Euler step and T.
    - `iterations`: number of updates (static).
    - `relax`: the nonlinear toy's drive (μ − v) (default); `False` gives its linear counterpart,
      the constant drive μ (JOMA_MATH §4.4: with linear φ there is no target), static.

    **Returns:**

    `(vs, entropies)`: v before every iteration `(iterations, n)` and the entropy of
    softmax(v²/T) there `(iterations,)`.
    """

    def iteration(v, _):
        attention = jax.nn.softmax(v**2 / temperature)
        drive = mu - v if relax else mu
        return v + step * drive * attention, (v, entropy(attention))

    _, (vs, entropies) = jax.lax.scan(iteration, v0, length=iterations)
    return vs, entropies


def _first_converged(times: np.ndarray, vs: np.ndarray, mu: np.ndarray, tolerance: float) -> np.ndarray:
    """Per component, the first time at which |μ − v| ≤ tolerance·|μ| (NaN if never)."""
    close = np.abs(mu - vs) <= tolerance * np.abs(mu)
    return np.where(close.any(axis=0), times[np.argmax(close, axis=0)], np.nan)


def _check_memory(config: Fig4Config) -> None:
    """Refuses a toy that would not fit: the iterations' states and entropies, the solve's saves,
    and the implicit solver's dense Jacobian (components²)."""
    components = len(config.mu) if config.mu is not None else config.components
    needed = 8 * 2 * (config.iterations * (components + 1) + config.ode_saves * (components + 1) + 4 * components ** 2)
    check_fits(needed, f"fig4 with {components} components, {config.iterations} iterations and {config.ode_saves} saves",
               "components, iterations or ode_saves")


class Fig4Result(NamedTuple):
    """What Fig. 4's two runs measured.

    **Fields:**

    - `mu`: the targets `(n,)`.
    - `discrete_v`: run (a)'s v every `snapshot_every` iterations; `discrete_snapshot_steps`: those
      iterations; `discrete_entropy`: its attention entropy at every iteration;
      `discrete_entropy_limit`: H(softmax(μ²/T)) at run (a)'s T.
    - `ode_ts`: run (b)'s save times; `ode_v`, `ode_entropy`: its state and attention entropy
      there; `ode_t_final`: where the solve ended; `ode_status`: how, in words;
      `ode_entropy_limit`: H(softmax(μ²/T)) at run (b)'s T.
    - `convergence_time_predicted`, `convergence_time_measured`: per component (in the order of
      μ), when it converges by (J24) and on the solve (NaN if never).
    """

    mu: np.ndarray
    discrete_v: np.ndarray
    discrete_snapshot_steps: np.ndarray
    discrete_entropy: np.ndarray
    discrete_entropy_limit: float
    ode_ts: np.ndarray
    ode_v: np.ndarray
    ode_entropy: np.ndarray
    ode_t_final: float
    ode_status: str
    ode_entropy_limit: float
    convergence_time_predicted: np.ndarray
    convergence_time_measured: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """`mu`, `discrete_v`, `discrete_snapshot_steps`, `discrete_entropy`, `ode_ts`, `ode_v`,
        `ode_entropy`."""
        return {"mu": self.mu, "discrete_v": self.discrete_v, "discrete_snapshot_steps": self.discrete_snapshot_steps,
                "discrete_entropy": self.discrete_entropy, "ode_ts": self.ode_ts, "ode_v": self.ode_v,
                "ode_entropy": self.ode_entropy}

    def summary(self) -> dict:
        """`mu`; for (a) (`discrete`) `entropy_initial`, `entropy_min`, `entropy_min_step`,
        `entropy_final`, `entropy_limit`; for (b) (`ode`) the same with `_time` for `_step` (over
        the saves the solve reached), its `status` and the convergence times."""
        lowest = int(np.argmin(self.discrete_entropy))
        discrete = {
            "entropy_initial": float(self.discrete_entropy[0]),
            "entropy_min": float(self.discrete_entropy[lowest]),
            "entropy_min_step": lowest,
            "entropy_final": float(self.discrete_entropy[-1]),
            "entropy_limit": self.discrete_entropy_limit,
        }
        reached = self.ode_ts <= self.ode_t_final
        lowest = int(np.argmin(np.where(reached, self.ode_entropy, np.inf)))
        ode = {
            "entropy_initial": float(self.ode_entropy[0]),
            "entropy_min": float(self.ode_entropy[lowest]),
            "entropy_min_time": float(self.ode_ts[lowest]),
            "entropy_final": float(self.ode_entropy[np.flatnonzero(reached)[-1]]),
            "entropy_limit": self.ode_entropy_limit,
            "status": self.ode_status,
            "convergence_time_predicted": self.convergence_time_predicted.tolist(),
            "convergence_time_measured": self.convergence_time_measured.tolist(),
        }
        return {"mu": self.mu.tolist(), "discrete": discrete, "ode": ode}


def run_fig4(config: Fig4Config) -> Fig4Result:
    """Runs (a) and (b), whose attention entropy dips and rebounds.

    **Returns:**

    The `Fig4Result`.
    """
    _check_memory(config)
    mu = config.targets()
    v0 = np.full(mu.shape, config.v0)
    with working(f"(a) {config.iterations} iterations of the discrete update"):
        vs, discrete_entropy = map(np.asarray, discrete_toy(jnp.asarray(mu), jnp.asarray(v0), config.step,
                                                            config.temperature, config.iterations))
    ts = np.linspace(0.0, config.ode_t_end, config.ode_saves)
    flow = NonlinearToyFlow(jnp.asarray(mu), temperature=config.ode_temperature)
    with working(f"(b) the ODE to t = {config.ode_t_end:g} (implicit solver)"):
        trajectory = simulate(flow, jnp.asarray(v0), ts, options=SolverOptions(solver="kvaerno5", rtol=1e-8, atol=1e-10))
        ode_v, ode_entropy = np.asarray(trajectory.ys), np.asarray(trajectory.entropy())
    reached = ts <= float(trajectory.t_final)
    return Fig4Result(
        mu=mu, discrete_v=vs[:: config.snapshot_every],
        discrete_snapshot_steps=np.arange(0, config.iterations, config.snapshot_every),
        discrete_entropy=discrete_entropy,
        discrete_entropy_limit=float(entropy(jax.nn.softmax(jnp.asarray(mu) ** 2 / config.temperature))),
        ode_ts=ts, ode_v=ode_v, ode_entropy=ode_entropy, ode_t_final=float(trajectory.t_final),
        ode_status=status_messages(trajectory.status, trajectory.t_final)[0],
        ode_entropy_limit=float(entropy(jax.nn.softmax(jnp.asarray(mu) ** 2 / config.ode_temperature))),
        convergence_time_predicted=np.asarray(
            convergence_time(jnp.asarray(mu), v0=config.v0, eps=config.converged, temperature=config.ode_temperature)),
        convergence_time_measured=_first_converged(ts[reached], ode_v[reached], mu, config.converged))
