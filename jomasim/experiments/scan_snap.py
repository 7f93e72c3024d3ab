"""The Scan&Snap learning-rate effect (JOMA_MATH §7.3): a larger attention rate η_Z sparsifies more.

Scan&Snap's reparameterised one-layer model (`jomasim.models.ScanSnapModel`: attention logits Z
and decoder Y in token-pair space, ℓ2-normalised attended bag, no residual, random init) is
trained on sequence classes (`jomasim.data.make_sequence_classes`) with SGD + momentum 0.9 and
separate optimisers for Y (rate η_Y) and Z (rate η_Z), minibatches of fresh sequences every step.
At every point of the grid η_Z × η_Y/η_Z × seed the run records the attention entropy of a fixed
evaluation batch (the attention of each sequence summed per token id, then −Σ p log p, averaged)
over training, and how much attention the common tokens keep. The grid is one `SweepTask`, so
the whole grid trains in one compiled, vmapped call.
"""

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._errors import OutOfRangeError, check_integer, check_positive, check_seed
from .._settings import Settings
from ..data import check_sequence_class_sizes, make_sequence_classes
from ..metrics import entropy
from ..models import ScanSnapModel
from ..models.scan_snap import token_attention
from ..sweep import Grid, SweepTask, run_sweep
from ..train import OptimizerSpec, every_steps, first_nonfinite, make_optimizer, train
from .block import training_status


@dataclasses.dataclass(frozen=True)
class ScanSnapConfig(Settings):
    """Settings of the learning-rate experiment; defaults are Scan&Snap's Fig. 6 setting.

    **Fields:**

    - `eta_z`: attention learning rates η_Z (the grid's first axis).
    - `eta_ratio`: decoder-to-attention ratios η_Y/η_Z (the second axis).
    - `seeds`: seeds per cell (seeds 0..seeds−1: initial weights and the sequences drawn).
    - `steps`, `batch`, `length`: SGD steps, sequences per step, sequence length L (L − 1
      contextual tokens, then the query).
    - `momentum`: SGD momentum of both optimisers.
    - `init_scale`: standard deviation of the random initial Y and Z (the paper's value is not
      published; 0.1 here).
    - `residual`: add the query embedding to the attended bag (off in Scan&Snap).
    - `n_queries`, `next_per_query`, `n_common`, `common_per_query`, `distinct_per_class`: the
      sequence classes (`make_sequence_classes`).
    - `eval_batch`: sequences of the fixed evaluation batch the entropy is measured on.
    - `save_every`: steps between entropy measurements (the last step is always measured).
    """

    eta_z: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    eta_ratio: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
    seeds: int = 10
    steps: int = 100
    batch: int = 128
    length: int = 128
    momentum: float = 0.9
    init_scale: float = 0.1
    residual: bool = False
    n_queries: int = 2
    next_per_query: int = 2
    n_common: int = 10
    common_per_query: int = 0
    distinct_per_class: int = 10
    eval_batch: int = 256
    save_every: int = 10

    def check_fields(self):
        for name in ("eta_z", "eta_ratio"):
            values = getattr(self, name)
            if len(values) == 0:
                raise OutOfRangeError(f"{name}=() is not allowed; give at least one value")
            for value in values:
                check_positive(name, value)
        for name, least in (("seeds", 1), ("steps", 1), ("batch", 1), ("length", 2), ("eval_batch", 1), ("save_every", 1)):
            check_integer(name, getattr(self, name), least=least)
        check_positive("init_scale", self.init_scale)
        self.optimizer  # noqa: B018 (building the optimiser spec checks the momentum)
        check_sequence_class_sizes(self.n_queries, self.next_per_query, self.n_common, self.common_per_query,
                                   self.distinct_per_class)

    @property
    def optimizer(self) -> OptimizerSpec:
        """SGD with this config's momentum (one for Y and one for Z, at their own rates)."""
        return OptimizerSpec("sgd", momentum=self.momentum)

    @property
    def classes(self):
        """The sequence classes trained on."""
        return make_sequence_classes(self.n_queries, self.next_per_query, self.n_common, self.common_per_query,
                                     self.distinct_per_class)

    @property
    def save_steps(self) -> np.ndarray:
        """The steps the entropy is measured at: 0, save_every, …, and the last step."""
        return every_steps(self.steps, self.save_every)

    @property
    def grid(self) -> Grid:
        """The grid η_Z × η_Y/η_Z × seed."""
        return Grid({"eta_z": self.eta_z, "eta_ratio": self.eta_ratio, "seed": tuple(range(self.seeds))})


def train_scan_snap(config: ScanSnapConfig, seed, eta_y, eta_z) -> dict[str, jax.Array]:
    """One training run and its measures. Traceable in `seed`, `eta_y`, `eta_z` (vmap over them).

    **Returns:**

    `entropy` `(n_save,)` (mean token-attention entropy of the evaluation batch at the save steps),
    `common_mass` `(n_save,)` (the attention on the common tokens), `losses` `(steps,)` (training
    loss before every step), `accuracy` (of the evaluation batch at the end).
    """
    classes = config.classes
    vocab = classes.vocab_size
    init_key, data_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    Y0, Z0 = config.init_scale * jax.random.normal(init_key, (2, vocab, vocab))
    model = ScanSnapModel(Y0, Z0, residual=config.residual)

    def batch_loss(model, batch):
        counts, query, label = batch
        logits = jax.vmap(model)(counts, query)
        return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()

    save_steps = config.save_steps
    saved, losses = train(
        model,
        batch_loss,
        lambda labels: make_optimizer(config.optimizer, labels, eta_y, eta_z),
        steps=config.steps,
        save_steps=save_steps,
        batches=lambda step: classes.sample(jax.random.fold_in(data_key, step), config.batch, config.length),
    )
    counts, query, label = classes.sample(eval_key, config.eval_batch, config.length)
    common = jnp.arange(vocab) < config.n_common + config.n_queries * config.common_per_query

    def measure(Z):
        attention = jax.vmap(lambda c, q: token_attention(Z, c, q))(counts, query)
        return jnp.mean(entropy(attention, axis=-1)), jnp.mean(attention @ common)

    entropies, common_mass = jax.lax.map(measure, saved["Z"][...])
    final = ScanSnapModel(saved["Y"][...][-1], saved["Z"][...][-1], residual=config.residual)
    accuracy = jnp.mean(jnp.argmax(jax.vmap(final)(counts, query), axis=-1) == label)
    return {"entropy": entropies, "common_mass": common_mass, "losses": losses, "accuracy": accuracy}


@dataclasses.dataclass(frozen=True)
class ScanSnapSweep(SweepTask):
    """`train_scan_snap` at every point of a grid over `eta_z`, `eta_ratio` (η_Y/η_Z) and `seed`;
    everything else is fixed by `config`. One static key: the grid is one compile."""

    config: ScanSnapConfig = ScanSnapConfig()

    @property
    def axes(self) -> dict[str, tuple | None]:
        return {"eta_z": None, "eta_ratio": None, "seed": None}

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return ("eta_z", "eta_y", "seed")

    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        eta_z = values.get("eta_z", self.config.eta_z[0])
        eta_ratio = values.get("eta_ratio", self.config.eta_ratio[0])
        seed = values.get("seed", 0)
        check_positive("eta_z", eta_z)
        check_positive("eta_ratio", eta_ratio)
        check_seed("seed", seed)
        return {"eta_z": float(eta_z), "eta_ratio": float(eta_ratio), "eta_y": float(eta_ratio * eta_z), "seed": int(seed)}

    def static_key(self, point: dict[str, Any]) -> tuple:
        return ()

    def point_function(self, key: tuple) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
        def one_point(numbers: dict[str, jax.Array]) -> dict[str, jax.Array]:
            run = train_scan_snap(self.config, numbers["seed"], numbers["eta_y"], numbers["eta_z"])
            entropy_curve = run["entropy"]
            return {
                "entropy_initial": entropy_curve[0],
                "entropy_final": entropy_curve[-1],
                "entropy_min": jnp.min(entropy_curve),
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
    """Mean and standard deviation over seeds of `value`, `(len(eta_z), len(eta_ratio))` each; NaN
    where every seed of a cell diverged."""
    mean = np.full((len(config.eta_z), len(config.eta_ratio)), np.nan)
    std = np.full_like(mean, np.nan)
    for i, eta_z in enumerate(config.eta_z):
        for j, ratio in enumerate(config.eta_ratio):
            cell = (table["eta_z"] == eta_z) & (table["eta_ratio"] == ratio) & ~table["failed"]
            if cell.any():
                mean[i, j], std[i, j] = table[value][cell].mean(), table[value][cell].std()
    return mean, std


def run_scan_snap(config: ScanSnapConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Trains the whole grid (one compiled call) and tabulates the final attention entropy.

    **Returns:**

    `(data, summary)`. `data`: every column of the sweep table (one row per run), and
    `entropy_mean`, `entropy_std`, `common_mass_mean` `(len(eta_z), len(eta_ratio))`, and their
    axes `grid_eta_z`, `grid_eta_ratio`. `summary`: the table as rows `{eta_z, eta_ratio, entropy_final_mean,
    entropy_final_std, common_mass_final_mean, accuracy_final_mean}`, `entropy_initial_mean`,
    `decreasing_in_eta_z` (per ratio: whether the mean final entropy falls at every step up in
    η_Z), `all_decreasing_in_eta_z`, `entropy_slope_eta_z` and `entropy_slope_ratio` (least-squares
    slopes of the cell means against log η_Z and log η_Y/η_Z: which rate matters more), `failed`.
    """
    task = ScanSnapSweep(config)
    points = len(config.eta_z) * len(config.eta_ratio) * config.seeds
    with tempfile.TemporaryDirectory(prefix="jomasim-scan-snap-") as folder:
        result = run_sweep(task, config.grid, folder, chunk_size=points)
    table = result.table
    mean, std = entropy_table(table, config)
    common, _ = entropy_table(table, config, "common_mass_final")
    accuracy, _ = entropy_table(table, config, "accuracy_final")
    decreasing = [bool(np.all(np.diff(mean[:, j]) < 0)) for j in range(len(config.eta_ratio))]
    log_z, log_ratio = np.meshgrid(np.log(config.eta_z), np.log(config.eta_ratio), indexing="ij")
    design = np.stack([log_z.ravel(), log_ratio.ravel(), np.ones(mean.size)], axis=1)
    known = np.isfinite(mean.ravel())
    slopes = np.linalg.lstsq(design[known], mean.ravel()[known], rcond=None)[0]
    rows = [
        {"eta_z": eta_z, "eta_ratio": ratio, "entropy_final_mean": float(mean[i, j]), "entropy_final_std": float(std[i, j]),
         "common_mass_final_mean": float(common[i, j]), "accuracy_final_mean": float(accuracy[i, j])}
        for i, eta_z in enumerate(config.eta_z) for j, ratio in enumerate(config.eta_ratio)
    ]
    data = {name: np.asarray(values) for name, values in table.items()}
    data.update(entropy_mean=mean, entropy_std=std, common_mass_mean=common,
                grid_eta_z=np.asarray(config.eta_z), grid_eta_ratio=np.asarray(config.eta_ratio))
    summary = {
        "table": rows,
        "entropy_initial_mean": float(np.mean(table["entropy_initial"])),
        "decreasing_in_eta_z": dict(zip(map(str, config.eta_ratio), decreasing)),
        "all_decreasing_in_eta_z": all(decreasing),
        "entropy_slope_eta_z": float(slopes[0]),
        "entropy_slope_ratio": float(slopes[1]),
        "failed": int(table["failed"].sum()),
        "compute_seconds": result.summary["compute_seconds"],
    }
    return data, summary
