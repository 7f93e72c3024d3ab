"""How far JoMA reaches into a real Transformer: `jomasim reproduce reach`, the ladder.

From the JoMA block up to a Transformer as trained in practice, one idealisation dropped per rung
(`ladder`, each a full setting of `TransformerCompareConfig`): the block (direct logits, the
expectation limit); sampled sequences (L = 64, then 16); learned W_Q, W_K (and once more with the
flows at the logits' measured rate); learned embeddings; LayerNorm; Adam. Every rung runs
`compare --model transformer` for a linear and a nonlinear MLP and several seeds, and reports over
training Theorem 1 on the Transformer (NC(ẑ(V), z)), the reduced JoMA flow against the trained
logits (NC(z reduced, z trained)) and the attention entropy, and per rung a table row: where the
theory still describes training and where it stops, and whether the attention gets sparse, then
dense again.
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from .._errors import OutOfRangeError, at_least, check_positive, check_seed
from .._progress import progress_bar
from .._settings import optional, setting
from ..activation import check_activations
from ..comparison import AGREEMENT
from ..data import BlockSizes
from .block import MemberNumbers, run_members
from .compare import run_compare
from .transformer import TransformerCompareConfig


def ladder(length: int, short: int, norm: str, adam_eta: float) -> tuple[tuple[str, dict], ...]:
    """The ladder: a name and the settings of each rung (cumulative after the sampled sequences,
    which continue at `length`). One rung is a diagnosis, not a step up: W_Q, W_K with the flows'
    logits at the rate factor measured at initialisation, which tells a change of time scale from
    a change of dynamics."""
    sampled = dict(sequence_length=length, attention_params="logits")
    qk = {**sampled, "attention_params": "qk"}
    embeddings = {**qk, "embeddings": "learned"}
    normed = {**embeddings, "norm": norm}
    return (
        ("block", dict(sequence_length=0, attention_params="logits")),
        (f"+ sequences L={length}", sampled),
        (f"+ sequences L={short}", {**sampled, "sequence_length": short}),
        ("+ W_Q, W_K", qk),
        ("+ W_Q, W_K; flows at the measured rate", {**qk, "measured_rate": True}),
        ("+ learned embeddings", embeddings),
        (f"+ LayerNorm ({norm})", normed),
        ("+ Adam", {**normed, "optimizer": "adam", "eta_w": adam_eta, "eta_z": adam_eta}),
    )


def check_rates(name: str, rates: tuple[float, ...]) -> None:
    """Rates of a matched rung: (eta_w, eta_z), both finite and positive."""
    if len(rates) != 2:
        raise OutOfRangeError(f"{name}={rates!r} is not allowed; give two rates eta_w,eta_z (or none)")
    check_positive(name, rates)


def check_factor(name: str, value: float) -> None:
    """A factor of tolerance: finite and > 1."""
    check_positive(name, value)
    if not value > 1:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must be > 1")


@dataclasses.dataclass(frozen=True)
class ReachConfig(BlockSizes):
    """Settings of the ladder; the defaults are `compare --model transformer`'s (the Fig. 2 sizes,
    SGD at 0.1 for 2000 steps), 8 seeds, a linear and a SiLU MLP, Adam at its usual rate 1e-3;
    and two rungs again at matched progress (JOMA_MATH §10.5): LayerNorm and Adam at rates at
    which their attention entropy falls about as far as the block's."""

    activations: tuple[str, ...] = setting(("linear", "silu"), "MLP activations compared on every rung",
                                           check=check_activations)
    seeds: int = setting(8, "seeds per rung and activation", check=at_least(1))
    first_seed: int = setting(0, "the first seed", check=check_seed)
    steps: int = setting(2000, "training steps per run", check=at_least(1))
    save_every: int = setting(20, "keep the parameters every N steps (and at the last step, when N does not "
                              "divide the steps)", check=at_least(1))
    eta: float = setting(0.1, "SGD learning rate of every parameter (eta_w = eta_z)", check=check_positive)
    adam_eta: float = setting(1e-3, "Adam's learning rate on the Adam rung", check=check_positive)
    length: int = setting(64, "sequence length L of the sampled rungs after the first", check=at_least(1))
    short_length: int = setting(16, "sequence length of the second sampled rung", check=at_least(1))
    norm: str = setting("post", "where the LayerNorm rung puts LayerNorm", choices=("post", "pre"))
    matched_layernorm: tuple[float, ...] | None = setting(
        (0.002, 1.0), "rates eta_w,eta_z of the LayerNorm rung run again at matched progress (SGD; its attention "
        "entropy falls about as far as the block's); none leaves the row out", check=optional(check_rates))
    matched_adam: tuple[float, ...] | None = setting(
        (1e-4, 3e-2), "rates eta_w,eta_z of the Adam rung run again at matched progress; none leaves the row out",
        check=optional(check_rates))
    calibrate: bool = setting(False, "pick the matched rungs' eta_z (eta_w as given) by a search, so that their "
                              "attention entropy falls as far as the block's within `tolerance`")
    tolerance: float = setting(0.15, "relative tolerance on the entropy drop of a calibrated rung", check=check_positive)
    search_points: int = setting(9, "eta_z values tried by the calibration, log-spaced over eta_z / search_span to "
                                 "eta_z * search_span, in one compiled call", check=at_least(2))
    search_span: float = setting(30.0, "factor each side of the given eta_z that the calibration searches",
                                 check=check_factor)
    search_seeds: int = setting(2, "seeds per value tried by the calibration", check=at_least(1))
    describes: float = setting(0.9, "mean final NC(z reduced, z trained) at or above which a rung counts as described "
                               "by the theory (for `reach`)", check=check_positive)
    size_within: float = setting(2.0, "factor within which the reduced flow's size ‖Δz_flow‖/‖Δz‖ must lie for "
                                 "`reach_with_size` (size in [1/f, f])", check=check_factor)

    def check_fields(self):
        if not self.activations:
            raise OutOfRangeError("activations=() is not allowed; give at least one")
        self.config(self.rungs()[0][1], self.activations[0])  # the sizes, checked by the comparison's config

    def rungs(self) -> tuple[tuple[str, dict], ...]:
        """The rungs' names and settings, at the stored rates (the ladder, in order)."""
        return ladder(self.length, self.short_length, self.norm, self.adam_eta)

    def matched_rungs(self) -> tuple[tuple[str, dict], ...]:
        """The rungs run again at matched progress: the LayerNorm and the Adam rung at the rates of
        `matched_layernorm` and `matched_adam` (those given)."""
        rungs = dict(self.rungs())
        layernorm, adam = (name for name in rungs if name.startswith(("+ LayerNorm", "+ Adam")))
        matched = []
        for name, rates in ((layernorm, self.matched_layernorm), (adam, self.matched_adam)):
            if rates:
                matched.append((f"{name}, matched", {**rungs[name], "eta_w": rates[0], "eta_z": rates[1]}))
        return tuple(matched)

    def config(self, rung: dict, activation: str) -> TransformerCompareConfig:
        """The comparison of one rung and activation."""
        return TransformerCompareConfig(**{"eta_w": self.eta, "eta_z": self.eta, **rung}, activation=activation,
                                        seeds=self.seeds, first_seed=self.first_seed, steps=self.steps,
                                        save_every=self.save_every, **self.sizes())


def _mean(values) -> float | None:
    finite = [value for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(finite)) if finite else None


def _reach(rungs, rows: list[dict], describes: float, size_within: float | None = None) -> str | None:
    """The last rung, in ladder order, before the first whose mean final NC(reduced, trained) is
    below `describes` (or missing: no flow compared, every seed failed) and, with `size_within`,
    whose reduced flow's mean size ratio is outside [1/size_within, size_within] (`None` if the
    first already is)."""
    last = None
    for (name, _), row in zip(rungs, rows):
        if row["nc_reduced_z"] is None or row["nc_reduced_z"] < describes:
            break
        size = row.get("size_reduced_z")
        if size_within is not None and (size is None or not 1 / size_within <= size <= size_within):
            break
        last = name
    return last


REGIMES = {True: "MLP-first (Δz along ẑ₂)", False: "salience (Δz along ẑ₁)"}
"""A rung's regime (JOMA_MATH §10.5), by whether its logits' change follows Theorem 1's second
term ẑ₂ (the b̄ term: attention flattens while the MLP fits) more than its salience term ẑ₁."""

CURVES = ("nc_zhat_z", "size_zhat_z", "nc_reduced_z", "size_reduced_z", "entropy_train", "entropy_sequences_train")
"""The curves `run_reach` keeps per rung, activation and seed (NaN where a rung has no such run)."""


def _curves(results) -> dict[str, np.ndarray]:
    """The `CURVES` of a comparison's results, NaN where the comparison has no such run."""
    arrays = results.arrays()
    missing = np.full(results.members.train.entropy.shape, np.nan)
    return {name: arrays.get(name, missing) for name in CURVES}


def _row(name: str, activation: str, run: TransformerCompareConfig, results, progress: str) -> dict:
    """A rung's row: means over seeds of the final numbers (read at the last save every run reached,
    `last_step`; training's loss and entropy drop at its own end), its rates, progress and regime."""
    summary = results.summary()
    mean = lambda key: _mean(summary.get(key, []))  # noqa: E731
    parted = [step for step in summary.get("parted_step_reduced", []) if step is not None]
    along_second = (mean("nc_dzhat2_dz") or -np.inf) > (mean("nc_dzhat1_dz") or -np.inf)
    return {
        "rung": name, "activation": activation, "progress": progress, "optimizer": run.optimizer,
        "eta_w": run.eta_w, "eta_z": run.eta_z,
        # training's progress at its own end, whatever the flows reached
        "loss_end": _mean(results.members.training.loss[:, -1].tolist()),
        "entropy_drop": _mean(_entropy_drop(results).tolist()),
        "last_step": mean("last_step"),
        "regime": REGIMES[along_second],
        "nc_dzhat1_dz": mean("nc_dzhat1_dz"), "nc_dzhat2_dz": mean("nc_dzhat2_dz"),
        "nc_zhat_z": mean("nc_zhat_z"),
        "nc_zhat_z_min": float(np.mean(np.min(results.members.train.theorem1.nc_zhat_z, axis=1))),
        "nc_dzhat_dz": mean("nc_dzhat_dz"), "size_zhat_z": mean("size_zhat_z"),
        "nc_zhatP_z": mean("nc_zhatP_z"), "size_zhatP_z": mean("size_zhatP_z"),
        "nc_reduced_z": mean("nc_reduced_z"), "size_reduced_z": mean("size_reduced_z"),
        "nc_preconditioned_z": mean("nc_preconditioned_z"), "size_preconditioned_z": mean("size_preconditioned_z"),
        "parted_step_reduced": float(np.median(parted)) if parted else None,
        "seeds_parted": len(parted),
        "entropy_min": mean("entropy_train_min"),
        "entropy_min_step": mean("entropy_train_min_step"),
        "entropy_end": mean("entropy_train"),
        "entropy_rebound": mean("entropy_train_rebound"),
        "entropy_sequences_end": mean("entropy_sequences_train"),
        "attention_rate": mean("attention_rate"),
        "adam_clock_z": mean("adam_clock_z"), "adam_clock_w": mean("adam_clock_w"),
        "share_joma_path": mean("share_joma_path"), "share_scale_path": mean("share_scale_path"),
        "read_gain": mean("read_gain"),
    }


def _entropy_drop(results) -> np.ndarray:
    """Per member, how far the trained attention entropy fell from its start to training's end (not
    to the last save the flows reached, where the other numbers are read)."""
    entropy = results.members.train.entropy
    return entropy[:, 0] - entropy[:, -1]


class Calibration(NamedTuple):
    """The search for a matched rung's η_z (`calibrate`).

    **Fields:**

    - `rung`, `activation`: the rung and the MLP activation searched.
    - `target`: the block's entropy drop it aims for.
    - `eta_z`: the values tried; `drops`: their mean entropy drops.
    - `chosen`: the η_z picked; `bracketed`: whether two values bracket the target.
    """

    rung: str
    activation: str
    target: float
    eta_z: list[float]
    drops: list[float]
    chosen: float
    bracketed: bool


def calibrate(config: ReachConfig, name: str, rung: dict, activation: str, target: float) -> Calibration:
    """The η_z of a rung (η_w as given) at which its attention entropy falls as far as `target`:
    `config.search_points` values, log-spaced over η_z / `search_span` … η_z · `search_span`, each
    trained on `config.search_seeds` seeds, all in one compiled, vmapped call; the mean drop is
    interpolated (linearly in log η_z) between the two values that bracket the target, or the
    closest value is taken when none do.

    **Arguments:**

    - `config`: the ladder's settings.
    - `name`, `rung`: the rung's name and settings.
    - `activation`: the MLP activation.
    - `target`: the entropy drop aimed for.

    **Returns:**

    The search's `Calibration`.
    """
    run = dataclasses.replace(config.config(rung, activation), seeds=config.search_seeds)
    dataclasses.replace(run, seeds=config.search_points * config.search_seeds).check_memory("both")
    tried = run.eta_z * np.geomspace(1 / config.search_span, config.search_span, config.search_points)
    base = run.members(run.eta_w, run.eta_z)
    numbers = MemberNumbers(*(np.tile(value, len(tried)) for value in base))._replace(
        eta_z=np.repeat(tried, config.search_seeds))
    results = run_members(run, numbers, run.steps, run.save_steps, "both")
    drops = _entropy_drop(results).reshape(len(tried), config.search_seeds).mean(axis=1)
    above = np.flatnonzero((drops[:-1] - target) * (drops[1:] - target) <= 0)
    if len(above):
        low = above[0]
        share = (target - drops[low]) / (drops[low + 1] - drops[low]) if drops[low + 1] != drops[low] else 0.0
        chosen = float(np.exp(np.log(tried[low]) + share * (np.log(tried[low + 1]) - np.log(tried[low]))))
    else:
        chosen = float(tried[np.argmin(np.abs(drops - target))])
    return Calibration(rung=name, activation=activation, target=float(target), eta_z=tried.tolist(),
                       drops=drops.tolist(), chosen=chosen, bracketed=bool(len(above)))


class ReachResult(NamedTuple):
    """What the ladder measured.

    **Fields:**

    - `config`: the settings it ran with (its rungs: `rungs`, `matched`).
    - `steps`: the save steps.
    - `curves`: per curve of `CURVES`, an array `(rungs, activations, seeds, saves)` (NaN where a
      rung has no such run).
    - `table`: one row per rung and activation (`_row`: means over seeds of the final numbers, the
      rates, the progress, the regime), the rows of `reach_table.csv`.
    - `calibration`: the `Calibration` of every calibrated rung and activation.
    - `reach`: per activation, the last rung of the ladder up to which the reduced flow's final NC
      with training stays at or above `config.describes` on average (`None`: not even the first);
      `reach_with_size`: the same with its size ratio also within `config.size_within`.
    """

    config: ReachConfig
    steps: np.ndarray
    curves: dict[str, np.ndarray]
    table: list[dict]
    calibration: list[Calibration]
    reach: dict[str, str | None]
    reach_with_size: dict[str, str | None]

    @property
    def matched(self) -> list[str]:
        """The names of the rungs run again at matched progress."""
        return [name for name, _ in self.config.matched_rungs()]

    @property
    def rungs(self) -> list[str]:
        """Every rung's name, the ladder's then the matched ones (the order of the curves' first axis)."""
        return [name for name, _ in self.config.rungs()] + self.matched

    def arrays(self) -> dict[str, np.ndarray]:
        """`steps` and every curve of `CURVES`."""
        return {"steps": self.steps, **self.curves}

    def summary(self) -> dict:
        """The rungs, the matched ones, the activations, `table`, `reach`, `reach_with_size`,
        `calibration`, and the thresholds they were judged by (`describes`, `size_within`, and
        `agreement`, the NC the figure marks), `seeds`."""
        config = self.config
        return {"rungs": self.rungs, "matched": self.matched, "activations": list(config.activations), "table": self.table,
                "reach": self.reach, "reach_with_size": self.reach_with_size,
                "calibration": [search._asdict() for search in self.calibration], "describes": config.describes,
                "size_within": config.size_within, "agreement": AGREEMENT, "seeds": config.seeds}


def run_reach(config: ReachConfig) -> ReachResult:
    """Runs every rung (the ladder at the stored rates, then the matched-progress rungs) for every
    activation and seed.

    **Returns:**

    The `ReachResult`.
    """
    ladder_rungs, matched = config.rungs(), config.matched_rungs()
    curves = {name: [] for name in CURVES}
    rows, steps, searches = [], None, []
    bar = progress_bar(len(ladder_rungs + matched) * len(config.activations), "reach", "rung and activation")
    for (name, rung), progress in zip(ladder_rungs + matched, ("stored rates",) * len(ladder_rungs) + ("matched",) * len(matched)):
        per_activation = {key: [] for key in curves}
        for activation in config.activations:
            settings = rung  # each activation's search starts from the rung's given rates
            if progress == "matched" and config.calibrate:
                target = next(row["entropy_drop"] for row in rows if row["activation"] == activation)  # the block's
                searches.append(calibrate(config, name, rung, activation, target))
                settings = {**rung, "eta_z": searches[-1].chosen}
            run = config.config(settings, activation)
            results = run_compare(run)
            steps = results.steps
            for key, curve in _curves(results).items():
                per_activation[key].append(curve)
            row = _row(name, activation, run, results, progress)
            if progress == "matched" and config.calibrate:
                target = searches[-1].target
                row["progress"] = ("calibrated" if abs(row["entropy_drop"] - target) <= config.tolerance * target
                                   else f"not calibrated (entropy drop {row['entropy_drop']:.2f}, the block's {target:.2f})")
            rows.append(row)
            bar.update()
        for key in curves:
            curves[key].append(per_activation[key])
    bar.close()
    ladder_rows = rows[:len(ladder_rungs) * len(config.activations)]
    reach = {size: {activation: _reach(ladder_rungs, [row for row in ladder_rows if row["activation"] == activation],
                                       config.describes, config.size_within if size else None)
                    for activation in config.activations} for size in (False, True)}
    return ReachResult(config=config, steps=np.asarray(steps),
                       curves={key: np.asarray(value) for key, value in curves.items()}, table=rows,
                       calibration=searches, reach=reach[False], reach_with_size=reach[True])
