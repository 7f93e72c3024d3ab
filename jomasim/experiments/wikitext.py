"""Fig. 6 and Fig. 8: per-layer attention entropy of Transformers trained from scratch on real text.

Multilayer decoders (`jomasim.models.Transformer`: sinusoidal positions, embeddings scaled by
√d, one head, post-LN, ReLU MLP, causal mask) are trained as language models on a corpus in the
WikiText layout (`jomasim.corpus`) the way the authors' `decoder_wiki.py` does it: the training
stream cut into 20 parallel columns, windows of 35 tokens taken in order (wrapping around at the
end of the stream), Adam at a constant rate, gradient-norm clipping 0.5. Parameters are kept every
`eval_every` steps; each checkpoint is then evaluated on the validation stream (10 columns):
the token-averaged cross-entropy and, per layer, the attention entropy
`mean over sequences and query positions of −Σ_j a_ij log(a_ij + 1e-8)` (JOMA_MATH §6.2), and
the stable rank ‖W‖_F²/‖W‖₂² of each layer's MLP lower layer (the paper's second observable). The
seeds of one depth and rate train vmapped in one compiled call. Every ingredient of the
reference is a switch, so each can be tested against its control: the MLP's activation (a linear
MLP is the control of JoMA's nonlinear mechanism), dropout (0.2 as the reference), the optimizer
(Adam as the reference, or SGD), LayerNorm (post as the reference, pre, none) and the positions.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .._errors import OutOfRangeError, at_least, check_integer, check_positive, each
from .._memory import check_fits, transformer_bytes
from .._progress import progress_bar
from .._settings import Settings, setting
from ..activation import ACTIVATIONS
from ..corpus import CORPUS_VARIABLE, SPLITS, batchify, load_corpus
from ..metrics import attention_map_entropy, stable_rank
from ..models import Transformer, TransformerConfig
from ..models.transformer import NORMS
from ..train import OPTIMIZERS, OptimizerSpec, every_steps, make_optimizer, train, with_params


def folder_or_none(name: str, value: str | None) -> None:
    """The check of a corpus folder setting: a folder name, or `None` for the environment's."""
    if value is not None and not value.strip():
        raise OutOfRangeError(f"{name}={value!r} is not allowed; give a folder, or none for ${CORPUS_VARIABLE}")


def _depths(name: str, values: tuple[int, ...]) -> None:
    if not values:
        raise OutOfRangeError(f"{name}=() is not allowed; give at least one depth")
    each(at_least(1))(name, values)


def _at_least_one_or_none(name: str, value: int | None) -> None:
    if value is not None:
        check_integer(name, value, least=1)


def _dropout(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise OutOfRangeError(f"{name}={value!r} is not allowed; it must lie in [0, 1)")


@dataclasses.dataclass(frozen=True)
class WikitextConfig(Settings):
    """Settings of the WikiText runs; the defaults are the sizes of §6.2 (hours per depth on a CPU),
    `WikitextConfig.small()` a reduced set that runs on a CPU in minutes. Every ingredient of the
    reference model is a setting: the MLP's activation, dropout, the optimizer, where LayerNorm
    sits, positional encodings."""

    corpus: str | None = setting(None, f"the corpus folder, in the WikiText layout (default: ${CORPUS_VARIABLE})",
                                 check=folder_or_none)
    train_split: str = setting("train", "the split trained on", choices=SPLITS)
    valid_split: str = setting("valid", "the split validated on", choices=SPLITS)
    min_count: int = setting(1, "words seen fewer times in the training split become <unk>", check=at_least(1))
    depths: tuple[int, ...] = setting((1, 2, 5, 10), "numbers of layers trained at lr (Fig. 6)", check=_depths)
    lr: float = setting(1e-4, "the learning rate of depths", check=check_positive)
    ablation_depth: int = setting(5, "the depth of the learning-rate ablation (Fig. 8)", check=at_least(1))
    ablation_lrs: tuple[float, ...] = setting((1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3, 1e-2), "the rates of the "
                                              "learning-rate ablation (empty: no ablation)", check=each(check_positive))
    seeds: int = setting(3, "seeds per run (vmapped)", check=at_least(1))
    d_model: int = setting(200, "the model's width", check=at_least(1))
    d_hidden: int = setting(200, "its MLP's width", check=at_least(1))
    steps: int = setting(58_000, "minibatches trained", check=at_least(1))
    eval_every: int = setting(1000, "minibatches between evaluated checkpoints", check=at_least(1))
    bptt: int = setting(35, "window length", check=at_least(2))
    columns: int = setting(20, "parallel columns of training", check=at_least(1))
    eval_columns: int = setting(10, "parallel columns of validation", check=at_least(1))
    eval_windows: int | None = setting(None, "validation windows per checkpoint (none: the whole stream)",
                                       check=_at_least_one_or_none)
    clip_norm: float = setting(0.5, "gradient-norm clipping", check=check_positive)
    ffn_activation: str = setting("relu", "the MLP's activation (relu as the reference)", choices=ACTIVATIONS)
    dropout: float = setting(0.2, "dropout rate in training (0.2 as the reference)", check=_dropout)
    optimizer: str = setting("adam", "the optimizer, at lr (adam as the reference)", choices=OPTIMIZERS)
    norm: str = setting("post", "LayerNorm after each residual (post, the reference), before each sub-layer (pre) or "
                        "none", choices=NORMS)
    positions: bool = setting(True, "add sinusoidal positional encodings (the reference does)")

    @classmethod
    def small(cls, **fields) -> "WikitextConfig":
        """A reduced set (`--small`): two depths, one seed, 1500 steps at lr 1e-3, d 64, 40
        validation windows, no ablation; minutes on a CPU. `fields` set the rest."""
        return cls(**{"d_model": 64, "d_hidden": 64, "steps": 1500, "eval_every": 100, "seeds": 1, "depths": (1, 2),
                      "ablation_lrs": (), "lr": 1e-3, "eval_windows": 40, "min_count": 3, **fields})

    def check_fields(self):
        if self.eval_every > self.steps:
            raise OutOfRangeError(f"eval_every={self.eval_every} is not allowed; it must be <= steps={self.steps}")

    @property
    def runs(self) -> list[tuple[int, float]]:
        """Every (depth, learning rate) trained: the depths at `lr`, then the ablation."""
        runs = [(depth, self.lr) for depth in self.depths]
        return runs + [(self.ablation_depth, rate) for rate in self.ablation_lrs if (self.ablation_depth, rate) not in runs]

    @property
    def save_steps(self) -> np.ndarray:
        """The evaluated checkpoints: 0, eval_every, …, and the last step."""
        return every_steps(self.steps, self.eval_every)



def _windows(stream: jax.Array, index, bptt: int) -> tuple[jax.Array, jax.Array]:
    """Window `index` of a `(length, columns)` stream as sequences `(columns, bptt)` and their
    next tokens (wrapping around at the end)."""
    count = (stream.shape[0] - 1) // bptt
    start = (index % count) * bptt
    rows = jax.lax.dynamic_slice_in_dim(stream, start, bptt + 1, axis=0)
    return rows[:-1].T, rows[1:].T


class WikitextRun(NamedTuple):
    """Every seed of one (depth, rate) trained on the corpus.

    **Fields:**

    - `depth`, `lr`: the run's number of layers and learning rate.
    - `losses`: the training loss of every minibatch `(seeds, steps)`.
    - `valid_loss`: the validation loss at every checkpoint `(seeds, n_save)`.
    - `entropy`: each layer's attention entropy at every checkpoint `(seeds, n_save, depth)`.
    - `stable_rank`: the stable rank of each layer's MLP lower layer there `(seeds, n_save, depth)`.
    """

    depth: int
    lr: float
    losses: np.ndarray
    valid_loss: np.ndarray
    entropy: np.ndarray
    stable_rank: np.ndarray

    @property
    def valid_loss_min(self) -> float:
        """The lowest validation loss of the seed mean over the checkpoints."""
        return float(self.valid_loss.mean(axis=0).min())

    def record(self, steps: np.ndarray) -> dict:
        """The run's numbers: `depth`, `lr`, `valid_loss_min` (of the seed mean) and per layer, of
        the seed-mean curves over the checkpoints `steps`, `entropy_initial`, `entropy_min`,
        `entropy_min_step`, `entropy_final`, `entropy_rebound` (final − minimum) and the same of the
        MLP's stable rank (`stable_rank_initial`, ..., `stable_rank_rebound`)."""
        return {"depth": self.depth, "lr": self.lr, "valid_loss_min": self.valid_loss_min,
                **_dip(self.entropy.mean(axis=0), steps, "entropy"), **_dip(self.stable_rank.mean(axis=0), steps, "stable_rank")}


def train_depth(config: WikitextConfig, depth: int, lr: float, train_stream: np.ndarray, valid_stream: np.ndarray,
                vocab: int) -> WikitextRun:
    """Every seed of one (depth, rate), vmapped: training losses and, per checkpoint, validation loss
    and per-layer attention entropy and MLP stable rank.

    **Returns:**

    The `WikitextRun`.
    """
    model_config = TransformerConfig(vocab_size=vocab, n_outputs=vocab, d_model=config.d_model, n_layers=depth,
                                     n_heads=1, d_hidden=config.d_hidden, max_len=config.bptt, norm=config.norm,
                                     ffn_activation=config.ffn_activation, dropout=config.dropout,
                                     positional=config.positions, causal=True, out_projection=True, embedding_scale=True)
    train_data, valid_data = jnp.asarray(train_stream), jnp.asarray(valid_stream)
    windows = (valid_stream.shape[0] - 1) // config.bptt
    windows = windows if config.eval_windows is None else min(windows, config.eval_windows)

    def sequence_loss(model, inputs, targets, key=None):
        keys = None if key is None else jax.random.split(key, inputs.shape[0])
        logits, inside = jax.vmap(model)(inputs, keys)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        return loss, jax.vmap(attention_map_entropy)(inside["attention"]).mean(axis=0)

    def one_seed(seed):
        init_key, dropout_key = jax.random.split(jax.random.key(seed))
        model = Transformer(model_config, nnx.Rngs(init_key))
        spec = OptimizerSpec(config.optimizer, clip_norm=config.clip_norm)
        saved, losses = train(model, lambda model, batch: sequence_loss(model, *batch)[0],
                              lambda labels: make_optimizer(spec, labels, lr, lr),
                              steps=config.steps, save_steps=config.save_steps,
                              batches=lambda step: (*_windows(train_data, step, config.bptt),
                                                    jax.random.fold_in(dropout_key, step)))

        def evaluate(params):
            checkpoint = with_params(model, params)
            per_window = jax.lax.map(lambda i: sequence_loss(checkpoint, *_windows(valid_data, i, config.bptt)),
                                     jnp.arange(windows))
            ranks = jnp.stack([stable_rank(block.up.kernel[...]) for block in checkpoint.blocks])
            return (*jax.tree_util.tree_map(lambda values: values.mean(axis=0), per_window), ranks)

        valid_loss, entropy, ranks = jax.lax.map(evaluate, saved)
        return losses, valid_loss, entropy, ranks

    results = jax.jit(jax.vmap(one_seed))(jnp.arange(config.seeds))
    return WikitextRun(depth, lr, *map(np.asarray, results))


def _dip(curves: np.ndarray, steps: np.ndarray, name: str) -> dict[str, list]:
    """Per layer, where a curve `(n_save, layers)` starts, falls lowest and ends: `NAME_initial`,
    `NAME_min`, `NAME_min_step`, `NAME_final`, `NAME_rebound` (final − minimum)."""
    lowest = curves.argmin(axis=0)
    low = curves[lowest, np.arange(curves.shape[1])]
    return {f"{name}_initial": curves[0].tolist(), f"{name}_min": low.tolist(), f"{name}_min_step": steps[lowest].tolist(),
            f"{name}_final": curves[-1].tolist(), f"{name}_rebound": (curves[-1] - low).tolist()}


class WikitextResult(NamedTuple):
    """What the WikiText runs measured.

    **Fields:**

    - `steps`: the checkpoints (minibatches trained).
    - `runs`: the `WikitextRun` of every (depth, rate), in the order of `config.runs`.
    - `vocabulary_size`, `train_tokens`, `valid_tokens`: the corpus as read.
    """

    steps: np.ndarray
    runs: list[WikitextRun]
    vocabulary_size: int
    train_tokens: int
    valid_tokens: int

    def arrays(self) -> dict[str, np.ndarray]:
        """`steps` and per run r: `depth_r`, `lr_r`, `losses_r`, `valid_loss_r`, `entropy_r`,
        `stable_rank_r`."""
        return {"steps": self.steps, **{f"{name}_{index}": value for index, run in enumerate(self.runs)
                                        for name, value in run._asdict().items()}}

    def summary(self) -> dict:
        """`vocabulary_size`, `train_tokens`, `valid_tokens`, and `runs` (`WikitextRun.record` of
        every run)."""
        return {"vocabulary_size": self.vocabulary_size, "train_tokens": self.train_tokens,
                "valid_tokens": self.valid_tokens, "runs": [run.record(self.steps) for run in self.runs]}


def run_wikitext(config: WikitextConfig) -> WikitextResult:
    """Trains every (depth, rate) of `config.runs` and evaluates the checkpoints.

    **Returns:**

    The `WikitextResult`.
    """
    corpus = load_corpus(config.corpus, train_split=config.train_split, valid_split=config.valid_split,
                         min_count=config.min_count)
    train_stream, valid_stream = batchify(corpus.train, config.columns), batchify(corpus.valid, config.eval_columns)
    for name, stream in (("training", train_stream), ("validation", valid_stream)):
        if stream.shape[0] <= config.bptt:
            raise OutOfRangeError(f"the {name} stream has {stream.shape[0]} rows; it needs more than bptt={config.bptt}")
    check_fits(transformer_bytes(copies=config.seeds, vocabulary=len(corpus.vocabulary), outputs=len(corpus.vocabulary),
                                 d_model=config.d_model, d_hidden=config.d_hidden,
                                 layers=max(depth for depth, _ in config.runs), positions=config.bptt,
                                 train_sequences=config.columns, eval_sequences=config.eval_columns)
               + 8 * (train_stream.size + valid_stream.size),
               f"wikitext with {config.seeds} seeds side by side", "seeds, d_model, d_hidden, the depths, bptt or columns")
    runs = []
    bar = progress_bar(len(config.runs), "wikitext", "depth and rate")
    for depth, lr in config.runs:
        runs.append(train_depth(config, depth, lr, train_stream, valid_stream, len(corpus.vocabulary)))
        bar.update()
    bar.close()
    return WikitextResult(steps=config.save_steps, runs=runs, vocabulary_size=len(corpus.vocabulary),
                          train_tokens=int(corpus.train.size), valid_tokens=int(corpus.valid.size))
