"""Table 1: do the MLP hidden nodes of a multilayer Transformer learn the latents of hierarchical data?

For every setting (C classes, N_ch children per latent, (N0, N1) latents on the two lower levels)
and seed, `jomasim.hierarchy.make_hierarchy` draws the latent structure, a 3-block Transformer
(`jomasim.models.Transformer`: no positional encoding, causal, one head, no attention output
projection, post-LN, ReLU MLP) is trained with Adam (coupled L2 weight decay) to predict the class
from the last position of fresh sequences every step, and then the correlation protocol of
JOMA_MATH §5.4 runs on a fresh test batch: each block's hidden activations are max-pooled over
positions, each latent of level s is correlated with every hidden node of block s (zero-mean:
Pearson, i.e. normalised correlation; raw: cosine), the best-matched node is kept, and the score
of level s is the mean best match over the latents of that level that vary in the test batch.
The seeds of one setting train vmapped in one compiled call.
"""

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .._errors import OutOfRangeError, at_least, check_nonnegative, check_positive
from .._memory import check_fits, transformer_bytes
from .._progress import progress_bar
from .._settings import Settings, setting
from ..hierarchy import Hierarchy, check_hierarchy_sizes, make_hierarchy, sample_sequences, tree_cooccurrence
from ..metrics import normalized_correlation
from ..models import Transformer, TransformerConfig
from ..models.transformer import INITIALISATIONS
from ..theory import stack
from ..train import OptimizerSpec, make_optimizer, train, with_params

VOCAB = 100
"""Token ids of the authors' generator; the last one pads."""


@dataclasses.dataclass(frozen=True)
class Table1Setting:
    """One row of the table: C classes, N_ch children per latent, N0 and N1 latents."""

    n_classes: int
    n_children: int
    n0: int
    n1: int


def _in_unit_interval(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must lie in (0, 1]")


@dataclasses.dataclass(frozen=True)
class Table1Config(Settings):
    """Settings of Table 1. The grid is the paper's (every combination of `n_classes`,
    `n_children` and `latents` is a row); the model and schedule default to a reduced size that
    runs on a CPU in minutes; `Table1Config.paper_sizes()` has the paper's."""

    n_classes: tuple[int, ...] = setting((20, 30, 50), "numbers of classes C, one row each")
    n_children: tuple[int, ...] = setting((2, 3), "children per latent N_ch, one row each")
    latents: tuple[tuple[int, int], ...] = setting(((10, 20), (20, 30)), "latents per level (N0, N1), one row each")
    seeds: int = setting(5, "seeds per row (each draws its own hierarchy, initialisation and data)", check=at_least(1))
    d_model: int = setting(32, "the Transformer's width", check=at_least(1))
    d_hidden: int = setting(128, "its MLP's hidden nodes", check=at_least(1))
    n_layers: int = setting(3, "its layers (3: one per level, the top one for the classes)", check=at_least(2))
    steps: int = setting(600, "Adam steps, fresh sequences each step", check=at_least(1))
    batch: int = setting(64, "sequences per step", check=at_least(1))
    lr: float = setting(3e-3, "Adam's learning rate", check=check_positive)
    weight_decay: float = setting(1e-4, "coupled L2 decay", check=check_nonnegative)
    length: int = setting(30, "sequence length L", check=at_least(1))
    rho: float = setting(1.0, "1 for the authors' deterministic generator; below 1 the noisy channel (J25)",
                         check=_in_unit_interval)
    test_batch: int = setting(1280, "samples of the correlation test batch", check=at_least(2))
    init: str = setting("torch", "the Transformer's initialisation: PyTorch's defaults as the authors' code gets them, "
                        "or Flax's", choices=INITIALISATIONS)

    @classmethod
    def paper_sizes(cls, **fields) -> "Table1Config":
        """The authors' model and schedule (`draw_table_1.py` filter; the README command has lr
        1e-5): d 1024, 400 hidden nodes, 10 000 Adam steps of batch 128 at lr 1e-4; `fields`
        set the rest."""
        return cls(**{"d_model": 1024, "d_hidden": 400, "steps": 10000, "batch": 128, "lr": 1e-4, **fields})

    def check_fields(self):
        for row in self.settings:
            check_hierarchy_sizes(row.n0, row.n1, row.n_classes, row.n_children, VOCAB)
            if row.n_children ** 3 > self.length:
                raise OutOfRangeError(f"length={self.length} is too short for n_children={row.n_children}: a class "
                                      f"activates up to {row.n_children ** 3} tokens")

    @property
    def settings(self) -> list[Table1Setting]:
        """The rows, in the paper's order (C, then N_ch, then (N0, N1))."""
        return [Table1Setting(c, n_ch, n0, n1)
                for c, n_ch, (n0, n1) in itertools.product(self.n_classes, self.n_children, self.latents)]

    def transformer(self, n_classes: int) -> TransformerConfig:
        """The model of a row with `n_classes` outputs."""
        return TransformerConfig(vocab_size=VOCAB, n_outputs=n_classes, d_model=self.d_model, n_layers=self.n_layers,
                                 n_heads=1, d_hidden=self.d_hidden, max_len=self.length, norm="post",
                                 positional=False, causal=True, out_projection=False, init=self.init)


def best_match_scores(latents: jax.Array, hidden: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Best-matched hidden node per latent, with and without mean-centring.

    **Arguments:**

    - `latents`: `(B, N)` 0/1 ground truth; `hidden`: `(B, H)` max-pooled activations.

    **Returns:**

    `(zero_mean, raw, varies)`: per latent the largest correlation over hidden nodes (Pearson and
    cosine), and whether the latent varies in the batch (the others have no correlation to measure).
    """
    pearson = jax.vmap(lambda column: normalized_correlation(hidden.T, column[None, :]))(latents.T)

    def cosine(column):
        norms = jnp.linalg.norm(hidden, axis=0) * jnp.linalg.norm(column)
        return jnp.where(norms > 0, column @ hidden / jnp.where(norms > 0, norms, 1.0), 0.0)

    raw = jax.vmap(cosine)(latents.T)
    varies = jnp.std(latents, axis=0) > 0
    return jnp.max(pearson, axis=1), jnp.max(raw, axis=1), varies


def train_member(config: Table1Config, setting: Table1Setting, seed, hierarchy: Hierarchy) -> dict[str, jax.Array]:
    """Trains one seed's Transformer and measures it, and the same network at initialisation (the
    control: how much of the match the untrained network's random features already give).
    Traceable in `seed` and `hierarchy`.

    **Returns:**

    `losses` `(steps,)`; `accuracy` on the test batch; per level s = 0, 1: `zero_mean_s`, `raw_s`
    (best match per latent, `(N_s,)`), the same at initialisation `initial_zero_mean_s`,
    `initial_raw_s`, and `varies_s`.
    """
    init_key, data_key, test_key = jax.random.split(jax.random.key(seed), 3)
    model = Transformer(config.transformer(setting.n_classes), nnx.Rngs(init_key))
    tokens, labels, levels = sample_sequences(hierarchy, test_key, config.test_batch, config.length, config.rho)

    def match(network, prefix: str = "") -> tuple[dict[str, jax.Array], jax.Array]:
        logits, inside = jax.vmap(network)(tokens)
        pooled = jnp.max(inside["hidden"], axis=2)  # (B, n_layers, d_hidden): max over positions
        scores = {}
        for level, latents in enumerate(levels):
            zero_mean, raw, varies = best_match_scores(latents, pooled[:, level])
            scores.update({f"{prefix}zero_mean_{level}": zero_mean, f"{prefix}raw_{level}": raw, f"varies_{level}": varies})
        return scores, logits

    initial, _ = match(model, "initial_")

    def batch_loss(model, batch):
        tokens, labels = batch
        logits = jax.vmap(lambda sequence: model(sequence)[0][-1])(tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def batches(step):
        return sample_sequences(hierarchy, jax.random.fold_in(data_key, step), config.batch, config.length, config.rho)[:2]

    saved, losses = train(model, batch_loss,
                          lambda labels: make_optimizer(OptimizerSpec("adam"), labels, config.lr, config.lr,
                                                        config.weight_decay),
                          steps=config.steps, save_steps=np.array([config.steps]), batches=batches)
    trained, logits = match(with_params(model, jax.tree_util.tree_map(lambda leaf: leaf[-1], saved)))
    return {"losses": losses, "accuracy": jnp.mean(jnp.argmax(logits[:, -1], axis=-1) == labels), **initial, **trained}


KINDS = ("zero_mean", "raw", "initial_zero_mean", "initial_raw")
"""The correlations recorded per level: zero-mean (Pearson) and raw (cosine), after training and at
initialisation."""

COOCCURRENCE = {"depth": 5, "rho": 0.8, "root_on": 0.7, "samples": 200_000}
"""The binary latent tree of the Monte-Carlo co-occurrence check (J26)."""


def _train_row(config: Table1Config, setting: Table1Setting) -> dict[str, np.ndarray]:
    """Every seed of one row, trained vmapped in one compiled call."""
    hierarchies = [make_hierarchy(seed, setting.n0, setting.n1, setting.n_classes, setting.n_children, VOCAB)
                   for seed in range(config.seeds)]
    stacked = stack(hierarchies)
    run = jax.jit(jax.vmap(lambda seed, hierarchy: train_member(config, setting, seed, hierarchy)))
    return jax.tree_util.tree_map(np.asarray, run(np.arange(config.seeds), stacked))


def _level_score(measures: dict[str, np.ndarray], kind: str, level: int) -> np.ndarray:
    """Per seed, the mean best match over the latents of `level` that vary in the test batch."""
    values, varies = measures[f"{kind}_{level}"], measures[f"varies_{level}"]
    return np.asarray([row[mask].mean() if mask.any() else np.nan for row, mask in zip(values, varies)])


class Table1Row(NamedTuple):
    """One row of Table 1 (one setting), every seed measured.

    **Fields:**

    - `setting`: the row's setting.
    - `scores`: per seed, the mean best-match correlation of each level for each of `KINDS` in
      turn (s = 0, then s = 1) `(seeds, 8)`.
    - `accuracy`: per seed, the classification accuracy on the test batch.
    - `losses`: the training loss of every step `(seeds, steps)`.
    """

    setting: Table1Setting
    scores: np.ndarray
    accuracy: np.ndarray
    losses: np.ndarray

    def column(self, level: int, kind: str) -> np.ndarray:
        """Per seed, level `level`'s correlation of kind `kind` (one of `KINDS`)."""
        return self.scores[:, KINDS.index(kind) * 2 + level]

    def mean(self, level: int, kind: str) -> float:
        """Its mean over seeds (`column`)."""
        return float(np.nanmean(self.column(level, kind)))

    def std(self, level: int, kind: str) -> float:
        """Its standard deviation over seeds (`column`)."""
        return float(np.nanstd(self.column(level, kind)))

    def record(self) -> dict:
        """The row as the table writes it: the setting, `sLEVEL_KIND_mean` and `sLEVEL_KIND_std`
        for every kind and level, `accuracy_mean`, `loss_final_mean`."""
        row = dataclasses.asdict(self.setting)
        for kind, level in itertools.product(KINDS, (0, 1)):
            row[f"s{level}_{kind}_mean"] = self.mean(level, kind)
            row[f"s{level}_{kind}_std"] = self.std(level, kind)
        return {**row, "accuracy_mean": float(self.accuracy.mean()), "loss_final_mean": float(self.losses[:, -1].mean())}


class Table1Result(NamedTuple):
    """What Table 1 measured: every row, and the latent tree's co-occurrence against (J26).

    **Fields:**

    - `config`: the settings it ran with.
    - `rows`: each setting's `Table1Row`, in the order of `config.settings`.
    - `cooccurrence_height`: heights of the common ancestor; `cooccurrence_estimate`: the Monte
      Carlo P[y_l = 1 | y_m = 1] at each; `cooccurrence_exact`: (J26) there.
    """

    config: Table1Config
    rows: list[Table1Row]
    cooccurrence_height: np.ndarray
    cooccurrence_estimate: np.ndarray
    cooccurrence_exact: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """Per row (index r) `scores_r`, `accuracy_r`, `loss_r`; and the co-occurrence check."""
        rows = {f"{name}_{index}": values for index, row in enumerate(self.rows)
                for name, values in (("scores", row.scores), ("accuracy", row.accuracy), ("loss", row.losses))}
        return {**rows, "cooccurrence_height": self.cooccurrence_height,
                "cooccurrence_estimate": self.cooccurrence_estimate, "cooccurrence_exact": self.cooccurrence_exact}

    def layout(self, kind: str) -> str:
        """The table of correlations of `kind` as the paper lays it out: one line per C, a column
        per level and (N_ch, (N0, N1))."""
        config = self.config
        columns = [(level, n_ch, n0, n1) for level in (0, 1)
                   for n_ch, (n0, n1) in itertools.product(config.n_children, config.latents)]
        titles = [f"s={level} N_ch={n_ch} ({n0},{n1})" for level, n_ch, n0, n1 in columns]
        by_setting = {(row.setting.n_classes, row.setting.n_children, row.setting.n0, row.setting.n1): row
                      for row in self.rows}
        lines = [f"{kind} correlation, mean ± std over {config.seeds} seeds", "  C  " + "  ".join(titles)]
        for n_classes in config.n_classes:
            cells = []
            for (level, n_ch, n0, n1), title in zip(columns, titles):
                row = by_setting[n_classes, n_ch, n0, n1]
                cells.append(f"{row.mean(level, kind):.2f} ± {row.std(level, kind):.2f}".rjust(len(title)))
            lines.append(f"{n_classes:3d}  " + "  ".join(cells))
        return "\n".join(lines)

    def summary(self) -> dict:
        """`table` (`Table1Row.record` of every row), the row means of each level and kind as one
        list (`s0_zero_mean_rows`, ...), `layout` (the zero-mean table as the paper prints it),
        `cooccurrence` (`{height: {estimate, exact}}`) and `cooccurrence_max_error`."""
        return {
            "table": [row.record() for row in self.rows],
            **{f"s{level}_{kind}_rows": [row.mean(level, kind) for row in self.rows] for kind in KINDS for level in (0, 1)},
            "layout": self.layout("zero_mean"),
            "cooccurrence": {str(height): {"estimate": float(estimate), "exact": float(exact)} for height, estimate, exact
                             in zip(self.cooccurrence_height.tolist(), self.cooccurrence_estimate, self.cooccurrence_exact)},
            "cooccurrence_max_error": float(np.max(np.abs(self.cooccurrence_estimate - self.cooccurrence_exact))),
        }


def run_table1(config: Table1Config) -> Table1Result:
    """Trains every row of the table and runs the correlation protocol; plus the co-occurrence check.

    **Returns:**

    The `Table1Result`.
    """
    check_fits(transformer_bytes(copies=config.seeds, vocabulary=VOCAB, outputs=max(config.n_classes), d_model=config.d_model,
                                 d_hidden=config.d_hidden, layers=config.n_layers, positions=config.length,
                                 train_sequences=config.batch, eval_sequences=config.test_batch),
               f"table1 with {config.seeds} seeds side by side", "seeds, d_model, d_hidden, n_layers, length, batch or test_batch")
    rows = []
    bar = progress_bar(len(config.settings), "table1", "row")
    for cell in config.settings:
        measures = _train_row(config, cell)
        bar.update()
        scores = np.stack([_level_score(measures, kind, level) for kind in KINDS for level in (0, 1)], axis=1)
        rows.append(Table1Row(cell, scores, measures["accuracy"], measures["losses"]))
    bar.close()
    cooccurrence = tree_cooccurrence(**COOCCURRENCE)
    heights = sorted(cooccurrence)
    return Table1Result(config=config, rows=rows, cooccurrence_height=np.asarray(heights),
                        cooccurrence_estimate=np.asarray([cooccurrence[h][0] for h in heights]),
                        cooccurrence_exact=np.asarray([cooccurrence[h][1] for h in heights]))
