"""The Scan&Snap learning-rate effect (JOMA_MATH §7.3): a larger attention rate η_Z sparsifies more.

Scan&Snap's reparameterised one-layer model (`jomasim.models.ScanSnapModel`: attention logits Z
and decoder Y in token-pair space, ℓ2-normalised attended bag, no residual, PyTorch's default
`nn.Linear` initialisation) is trained on sequence classes (`jomasim.data.make_sequence_classes`)
with SGD + momentum 0.9 and separate optimisers for Y (rate η_Y) and Z (rate η_Z), minibatches of
fresh sequences every step. Scan&Snap's Fig. 6 has one panel per number of query ("last") tokens,
each with twice as many next tokens. At every point of the grid panel × η_Z × η_Y/η_Z × seed the
run records the average entropy of the attention vector c_n over training: Scan&Snap's c_n is the
long-sequence limit, c_n[l] ∝ P(l | n) e^{Z[m, l]} for class n with query m, and its entropy is
read on the distinct tokens (those of one class only), as Scan&Snap studies c_n (the authors'
script for Fig. 6's numbers is not published). The other readings (every contextual
token; the attention of sampled sequences summed per token id) are recorded beside it, so the
size of each difference is measured. Each panel is one compiled, vmapped call.
"""

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._errors import OutOfRangeError, at_least, check_choice, check_positive, check_seed, each
from .._settings import Settings, setting
from ..data import SequenceClasses, check_sequence_class_sizes, make_sequence_classes
from ..metrics import entropy
from ..models import ScanSnapModel
from ..models.scan_snap import token_attention
from ..models.transformer import torch_uniform
from ..sweep import Grid, SweepTask, run_sweep
from ..train import OptimizerSpec, every_steps, first_nonfinite, make_optimizer, train
from .block import training_status


def _torch_linear(key: jax.Array, vocab: int, scale: float) -> jax.Array:
    """Y(0), Z(0) as PyTorch's default `nn.Linear(M, M)` draws them (`torch_uniform`): standard
    deviation 1/√(3M), set by the vocabulary size."""
    return torch_uniform(key, (2, vocab, vocab), vocab)


def _normal(key: jax.Array, vocab: int, scale: float) -> jax.Array:
    """Y(0), Z(0) ~ N(0, scale²) whatever the vocabulary size."""
    return scale * jax.random.normal(key, (2, vocab, vocab))


INITS: dict[str, Callable[[jax.Array, int, float], jax.Array]] = {"torch": _torch_linear, "normal": _normal}
"""Initialisations of (Y, Z): name → `init(key, M, init_scale)` returning `(2, M, M)`."""

TOKEN_SETS = ("distinct", "context")
"""Which tokens an entropy is taken over: the distinct tokens (of one class only), or every contextual token."""

ATTENTION_VECTORS = ("limit", "sampled")
"""Which attention vector: c_n in the long-sequence limit, one per class, or the attention of each
sampled sequence of the evaluation batch summed per token id."""

ENTROPIES = tuple(f"{tokens}-{vector}" for tokens in TOKEN_SETS for vector in ATTENTION_VECTORS)
"""Every reading of "the average attention entropy", `TOKENS-VECTOR`; Fig. 6's is `distinct-limit`."""


def _column(definition: str) -> str:
    """The results column of an entropy definition (`distinct-limit` → `entropy_final_distinct_limit`)."""
    return "entropy_final_" + definition.replace("-", "_")


def _positive_values(name: str, values: tuple) -> None:
    if len(values) == 0:
        raise OutOfRangeError(f"{name}=() is not allowed; give at least one value")
    each(check_positive)(name, values)


def _distinct_values(name: str, values: tuple) -> None:
    if len(values) == 0 or len(set(values)) != len(values):
        raise OutOfRangeError(f"{name}={values!r} is not allowed; give at least one value, each once")


@dataclasses.dataclass(frozen=True)
class ScanSnapConfig(Settings):
    """Settings of the learning-rate experiment; defaults are Scan&Snap's Fig. 6 setting (the
    authors' command line: `ssl/real-dataset/scan_snap/figure_6.log`). Fig. 6 has the panels 1, 3,
    5, 10; the default is its first panel, which runs in seconds (all four take about 2.5 minutes
    on two CPU cores). The sequence classes of every panel are `make_sequence_classes`'."""

    panels: tuple[int, ...] = setting((1,), "numbers of query (last) tokens, one panel each", check=_distinct_values)
    eta_z: tuple[float, ...] = setting((0.5, 1.0, 2.0, 3.0), "attention learning rates eta_Z (one curve each)",
                                       check=_positive_values)
    eta_ratio: tuple[float, ...] = setting((1.0, 2.0, 5.0, 10.0), "decoder-to-attention ratios eta_Y/eta_Z (the "
                                           "horizontal axis)", check=_positive_values)
    seeds: int = setting(10, "seeds per cell (seeds 0..seeds-1: initial weights and the sequences drawn)",
                         check=at_least(1))
    steps: int = setting(100, "SGD steps", check=at_least(1))
    batch: int = setting(128, "sequences per step", check=at_least(1))
    length: int = setting(128, "sequence length L (L - 1 contextual tokens, then the query)", check=at_least(2))
    momentum: float = setting(0.9, "SGD momentum of both optimisers")
    init: str = setting("torch", "initialisation of Y and Z: PyTorch's default nn.Linear (the authors' "
                        "zero_init=false), or N(0, init_scale^2)", choices=INITS)
    init_scale: float = setting(0.1, "standard deviation of the normal initialisation", check=check_positive)
    residual: bool = setting(False, "add the query embedding to the attended bag (off in Scan&Snap)")
    next_per_query: int = setting(2, "next tokens per query token (classes per panel)")
    n_common: int = setting(10, "tokens common to several classes")
    common_per_query: int = setting(0, "common tokens per query token")
    distinct_per_class: int = setting(10, "tokens distinct to each class")
    entropy_of: str = setting("distinct-limit", "the entropy the table and figure show: TOKENS-VECTOR (every one is "
                              "recorded)", choices=ENTROPIES)
    eval_batch: int = setting(256, "sequences of the fixed evaluation batch the sampled readings use", check=at_least(1))
    save_every: int = setting(10, "steps between entropy measurements (the last step is always measured)",
                              check=at_least(1))

    def check_fields(self):
        self.optimizer  # noqa: B018 (building the optimiser spec checks the momentum)
        for n_queries in self.panels:
            check_sequence_class_sizes(n_queries, self.next_per_query, self.n_common, self.common_per_query,
                                       self.distinct_per_class)

    @property
    def optimizer(self) -> OptimizerSpec:
        """SGD with this config's momentum (one for Y and one for Z, at their own rates)."""
        return OptimizerSpec("sgd", momentum=self.momentum)

    def classes(self, n_queries: int) -> SequenceClasses:
        """The sequence classes of the panel with `n_queries` query tokens."""
        return make_sequence_classes(n_queries, self.next_per_query, self.n_common, self.common_per_query,
                                     self.distinct_per_class)

    @property
    def save_steps(self) -> np.ndarray:
        """The steps the entropy is measured at: 0, save_every, …, and the last step."""
        return every_steps(self.steps, self.save_every)

    @property
    def grid(self) -> Grid:
        """The grid panel (query tokens) × η_Z × η_Y/η_Z × seed."""
        return Grid({"n_queries": self.panels, "eta_z": self.eta_z, "eta_ratio": self.eta_ratio,
                     "seed": tuple(range(self.seeds))})


def attention_entropies(Z: jax.Array, classes: SequenceClasses, sampled: jax.Array) -> jax.Array:
    """Every reading of the average attention entropy (`ENTROPIES`, in that order), `(4,)`.

    **Arguments:**

    - `Z`: attention logits `(M, M)`.
    - `classes`: the sequence classes (their P(l | n) give c_n in the limit).
    - `sampled`: the attention of an evaluation batch of sampled sequences summed per token id,
      `(B, M)` (`token_attention` of each).

    **Returns:**

    Per definition the entropy of the attention restricted to the token set and renormalised,
    averaged over the classes (limit) or over the sequences (sampled).
    """
    limit = jax.vmap(token_attention, in_axes=(None, 0, 0))(Z, classes.context, classes.query)
    vectors = {"limit": limit, "sampled": sampled}
    tokens = {"distinct": classes.classes_per_token == 1, "context": classes.classes_per_token > 0}
    return jnp.stack([jnp.mean(entropy(vectors[vector] * tokens[token_set], axis=-1))
                      for token_set in TOKEN_SETS for vector in ATTENTION_VECTORS])


def train_scan_snap(config: ScanSnapConfig, n_queries: int, seed, eta_y, eta_z) -> dict[str, jax.Array]:
    """One training run and its measures. Traceable in `seed`, `eta_y`, `eta_z` (vmap over them).

    **Arguments:**

    - `config`: the settings.
    - `n_queries`: the panel (number of query tokens); static.
    - `seed`, `eta_y`, `eta_z`: the point.

    **Returns:**

    `entropy` `(n_save, len(ENTROPIES))` (every reading of the attention entropy at the save
    steps), `common_mass` `(n_save,)` (the attention sampled sequences give the common tokens),
    `losses` `(steps,)` (training loss before every step), `accuracy` (of the evaluation batch at
    the end).
    """
    classes = config.classes(n_queries)
    vocab = classes.vocab_size
    init_key, data_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    Y0, Z0 = INITS[config.init](init_key, vocab, config.init_scale)
    model = ScanSnapModel(Y0, Z0, residual=config.residual)

    def batch_loss(model, batch):
        counts, query, label = batch
        logits = jax.vmap(model)(counts, query)
        return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()

    saved, losses = train(
        model,
        batch_loss,
        lambda labels: make_optimizer(config.optimizer, labels, eta_y, eta_z),
        steps=config.steps,
        save_steps=config.save_steps,
        batches=lambda step: classes.sample(jax.random.fold_in(data_key, step), config.batch, config.length),
    )
    counts, query, label = classes.sample(eval_key, config.eval_batch, config.length)
    common = classes.classes_per_token > 1

    def measure(Z):
        sampled = jax.vmap(lambda c, q: token_attention(Z, c, q))(counts, query)
        return attention_entropies(Z, classes, sampled), jnp.mean(sampled @ common)

    entropies, common_mass = jax.lax.map(measure, saved["Z"][...])
    final = ScanSnapModel(saved["Y"][...][-1], saved["Z"][...][-1], residual=config.residual)
    accuracy = jnp.mean(jnp.argmax(jax.vmap(final)(counts, query), axis=-1) == label)
    return {"entropy": entropies, "common_mass": common_mass, "losses": losses, "accuracy": accuracy}


@dataclasses.dataclass(frozen=True)
class ScanSnapSweep(SweepTask):
    """`train_scan_snap` at every point of a grid over the panel (`n_queries`, static: it sets the
    vocabulary), `eta_z`, `eta_ratio` (η_Y/η_Z) and `seed`; everything else is fixed by `config`.
    One compile per panel."""

    config: ScanSnapConfig = ScanSnapConfig()

    @property
    def axes(self) -> dict[str, tuple | None]:
        return {"n_queries": self.config.panels, "eta_z": None, "eta_ratio": None, "seed": None}

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return ("eta_z", "eta_y", "seed")

    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        n_queries = values.get("n_queries", self.config.panels[0])
        eta_z = values.get("eta_z", self.config.eta_z[0])
        eta_ratio = values.get("eta_ratio", self.config.eta_ratio[0])
        seed = values.get("seed", 0)
        check_choice("n_queries", n_queries, self.config.panels)
        check_positive("eta_z", eta_z)
        check_positive("eta_ratio", eta_ratio)
        check_seed("seed", seed)
        return {"n_queries": int(n_queries), "eta_z": float(eta_z), "eta_ratio": float(eta_ratio),
                "eta_y": float(eta_ratio * eta_z), "seed": int(seed)}

    def static_key(self, point: dict[str, Any]) -> tuple:
        return (point["n_queries"],)

    memory_levers = "seeds, eta_z or eta_ratio (a panel runs in one call), batch, eval_batch, steps or the saves"

    def point_bytes(self) -> int:
        # the largest panel's Y and Z (vocabulary²) at every save, with their gradients and
        # momenta, and the bag counts of a training and an evaluation batch
        vocab = max(self.config.classes(n_queries).vocab_size for n_queries in self.config.panels)
        saves = len(self.config.save_steps)
        return 8 * ((2 * saves + 6) * vocab ** 2 + 2 * (self.config.batch + self.config.eval_batch) * vocab + self.config.steps)

    def point_function(self, key: tuple) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
        (n_queries,) = key
        shown = ENTROPIES.index(self.config.entropy_of)

        def one_point(numbers: dict[str, jax.Array]) -> dict[str, jax.Array]:
            run = train_scan_snap(self.config, n_queries, numbers["seed"], numbers["eta_y"], numbers["eta_z"])
            entropy_curve = run["entropy"][:, shown]
            return {
                "entropy_initial": entropy_curve[0],
                "entropy_final": entropy_curve[-1],
                "entropy_min": jnp.min(entropy_curve),
                **{_column(name): run["entropy"][-1, index] for index, name in enumerate(ENTROPIES)},
                "common_mass_initial": run["common_mass"][0],
                "common_mass_final": run["common_mass"][-1],
                "loss_initial": run["losses"][0],
                "loss_final": run["losses"][-1],
                "accuracy_final": run["accuracy"],
                "train_diverged_at": first_nonfinite(run["losses"]),
            }

        return one_point

    def failures(self, row: dict[str, Any]) -> str:
        return "ok" if row["train_diverged_at"] < 0 else f"train: {training_status(row['train_diverged_at'])}"

    def describe(self) -> dict[str, Any]:
        return {"experiment": "scan-snap", "config": dataclasses.asdict(self.config)}


def entropy_table(table: dict[str, np.ndarray], config: ScanSnapConfig, value: str = "entropy_final") -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds of `value`, `(len(panels), len(eta_z), len(eta_ratio))`
    each; NaN where every seed of a cell diverged."""
    mean = np.full((len(config.panels), len(config.eta_z), len(config.eta_ratio)), np.nan)
    std = np.full_like(mean, np.nan)
    for p, n_queries in enumerate(config.panels):
        for i, eta_z in enumerate(config.eta_z):
            for j, ratio in enumerate(config.eta_ratio):
                cell = ((table["n_queries"] == n_queries) & (table["eta_z"] == eta_z) & (table["eta_ratio"] == ratio)
                        & ~table["failed"])
                if cell.any():
                    mean[p, i, j], std[p, i, j] = table[value][cell].mean(), table[value][cell].std()
    return mean, std


def _slopes(mean: np.ndarray, config: ScanSnapConfig) -> np.ndarray:
    """Least-squares slopes of cell means `(panels, eta_z, eta_ratio)` against log η_Z and log η_Y/η_Z,
    one intercept per panel: `(slope_eta_z, slope_ratio)`."""
    panels = mean.shape[0]
    log_z, log_ratio = np.meshgrid(np.log(config.eta_z), np.log(config.eta_ratio), indexing="ij")
    design = np.concatenate([np.tile(np.stack([log_z.ravel(), log_ratio.ravel()], axis=1), (panels, 1)),
                             np.kron(np.eye(panels), np.ones((log_z.size, 1)))], axis=1)
    known = np.isfinite(mean.ravel())
    return np.linalg.lstsq(design[known], mean.ravel()[known], rcond=None)[0][:2]


class ScanSnapPanel(NamedTuple):
    """One panel of Scan&Snap's Fig. 6 (one number of query tokens), measured.

    **Fields:**

    - `n_queries`, `n_classes`, `vocab_size`: its query tokens, classes and tokens.
    - `entropy_initial_mean`: the mean initial entropy of its runs that did not diverge.
    - `decreasing_in_eta_z`: per ratio η_Y/η_Z (as text), whether the mean final entropy falls at
      every step up in η_Z.
    - `entropy_slope_eta_z`, `entropy_slope_ratio`: the slopes of the cell means against log η_Z
      and log η_Y/η_Z.
    - `entropy_final_by_definition`: the mean final entropy over its cells in every reading of
      `ENTROPIES` (what each difference of definition is worth).
    """

    n_queries: int
    n_classes: int
    vocab_size: int
    entropy_initial_mean: float
    decreasing_in_eta_z: dict[str, bool]
    entropy_slope_eta_z: float
    entropy_slope_ratio: float
    entropy_final_by_definition: dict[str, float]


class ScanSnapResult(NamedTuple):
    """What the Scan&Snap grid measured.

    **Fields:**

    - `config`: the settings it ran with.
    - `runs`: every column of the sweep table, one row per run.
    - `entropy_mean`, `entropy_std`, `common_mass_mean`, `accuracy_mean`: per cell, over the seeds
      that did not diverge, `(len(panels), len(eta_z), len(eta_ratio))`.
    - `panels`: each panel's `ScanSnapPanel`.
    - `entropy_slope_eta_z`, `entropy_slope_ratio`: one fit over every panel, an intercept per
      panel (which rate matters more).
    - `compute_seconds`: the sweep's seconds of compute.
    """

    config: ScanSnapConfig
    runs: dict[str, np.ndarray]
    entropy_mean: np.ndarray
    entropy_std: np.ndarray
    common_mass_mean: np.ndarray
    accuracy_mean: np.ndarray
    panels: list[ScanSnapPanel]
    entropy_slope_eta_z: float
    entropy_slope_ratio: float
    compute_seconds: float

    @property
    def failed(self) -> int:
        """How many runs diverged (left out of the cells)."""
        return int(self.runs["failed"].sum())

    def arrays(self) -> dict[str, np.ndarray]:
        """The runs' columns, the cells' `entropy_mean`, `entropy_std`, `common_mass_mean`, and the
        cells' axes `grid_panels`, `grid_eta_z`, `grid_eta_ratio`."""
        return {**self.runs, "entropy_mean": self.entropy_mean, "entropy_std": self.entropy_std,
                "common_mass_mean": self.common_mass_mean, "grid_panels": np.asarray(self.config.panels),
                "grid_eta_z": np.asarray(self.config.eta_z), "grid_eta_ratio": np.asarray(self.config.eta_ratio)}

    def summary(self) -> dict:
        """`entropy_of`; the cells as rows of `table` (`n_queries`, `eta_z`, `eta_ratio`,
        `entropy_final_mean`, `entropy_final_std`, `common_mass_final_mean`, `accuracy_final_mean`);
        the `panels`; over every panel `entropy_initial_mean`, `all_decreasing_in_eta_z`, the two
        slopes, `failed` and `compute_seconds`."""
        config = self.config
        rows = [
            {"n_queries": n_queries, "eta_z": eta_z, "eta_ratio": ratio,
             "entropy_final_mean": float(self.entropy_mean[p, i, j]), "entropy_final_std": float(self.entropy_std[p, i, j]),
             "common_mass_final_mean": float(self.common_mass_mean[p, i, j]),
             "accuracy_final_mean": float(self.accuracy_mean[p, i, j])}
            for p, n_queries in enumerate(config.panels)
            for i, eta_z in enumerate(config.eta_z) for j, ratio in enumerate(config.eta_ratio)
        ]
        return {
            "entropy_of": config.entropy_of,
            "table": rows,
            "panels": [panel._asdict() for panel in self.panels],
            "entropy_initial_mean": float(np.mean(self.runs["entropy_initial"])),
            "all_decreasing_in_eta_z": all(all(panel.decreasing_in_eta_z.values()) for panel in self.panels),
            "entropy_slope_eta_z": self.entropy_slope_eta_z,
            "entropy_slope_ratio": self.entropy_slope_ratio,
            "failed": self.failed,
            "compute_seconds": self.compute_seconds,
        }


def run_scan_snap(config: ScanSnapConfig) -> ScanSnapResult:
    """Trains the whole grid (one compiled call per panel) and tabulates the final attention entropy.

    **Returns:**

    The `ScanSnapResult`.
    """
    task = ScanSnapSweep(config)
    points = len(config.eta_z) * len(config.eta_ratio) * config.seeds
    with tempfile.TemporaryDirectory(prefix="jomasim-scan-snap-") as folder:
        result = run_sweep(task, config.grid, folder, chunk_size=points)
    table = result.table
    mean, std = entropy_table(table, config)
    by_definition = {name: entropy_table(table, config, _column(name))[0] for name in ENTROPIES}
    panels = []
    for p, n_queries in enumerate(config.panels):
        mine = (table["n_queries"] == n_queries) & ~table["failed"]
        slope_z, slope_ratio = _slopes(mean[p:p + 1], config)
        classes = config.classes(n_queries)
        panels.append(ScanSnapPanel(
            n_queries=n_queries, n_classes=classes.n_classes, vocab_size=classes.vocab_size,
            entropy_initial_mean=float(np.mean(table["entropy_initial"][mine])),
            decreasing_in_eta_z={str(ratio): bool(np.all(np.diff(mean[p, :, j]) < 0))
                                 for j, ratio in enumerate(config.eta_ratio)},
            entropy_slope_eta_z=float(slope_z), entropy_slope_ratio=float(slope_ratio),
            entropy_final_by_definition={name: float(np.nanmean(values[p])) for name, values in by_definition.items()}))
    slope_z, slope_ratio = _slopes(mean, config)
    return ScanSnapResult(
        config=config, runs={name: np.asarray(values) for name, values in table.items()}, entropy_mean=mean,
        entropy_std=std, common_mass_mean=entropy_table(table, config, "common_mass_final")[0],
        accuracy_mean=entropy_table(table, config, "accuracy_final")[0], panels=panels,
        entropy_slope_eta_z=float(slope_z), entropy_slope_ratio=float(slope_ratio),
        compute_seconds=result.summary["compute_seconds"])
