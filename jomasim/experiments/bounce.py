"""Does attention get sparse and then dense again because the MLP is nonlinear? `jomasim reproduce bounce`.

JoMA predicts that with a nonlinear MLP the attention first gets sparse and then dense again (a
rebound of its entropy), and with a linear MLP only sparse (JOMA_MATH §4.4). This reproduction
puts the prediction to every setting where it can be looked for, each trained with a linear MLP
and with nonlinear ones, and measures per setting and activation the attention entropy over
training, its minimum, when it is reached, and the rebound (final − minimum), and the same of the
MLP lower layer's stable rank (the paper's second observable). The settings (`settings`): the
§3.5 block as in Fig. 2, at T = 2, at saliency 3, with random frequencies and with exp attention;
the block trained with the back-propagated gradient held at its initial value (JoMA's Assumption
1, `FixedGradientConfig`); the block with a learned head, without and with weight decay on its
MLP (a finite target for the weights, the closest trained setting to the toy's relaxation); the
block on sampled sequences; the nonlinear toy of Fig. 4 against its linear counterpart; the rungs
of `reproduce reach` past the sampled sequences (learned W_Q/W_K, embeddings, LayerNorm, Adam)
and its LayerNorm and Adam rungs at matched progress; and the paper's own WikiText model, one
layer, with Adam or SGD, LayerNorm or none, dropout or none (`Text`).

The verdicts are computed, never typed in: in a setting the bounce comes from the nonlinearity when
some nonlinear φ's mean rebound exceeds the linear φ's by more than `margin` nats (`verdict`); per
ingredient (the nonlinearity, Adam, LayerNorm, dropout, learned embeddings, weight decay) from
every pair of runs with and without it (`ingredient_verdicts`). Where the attention on each token
is kept (the Fig. 2 block, the block on sequences, the toy), `token_order` asks Fig. 5's question:
do less salient tokens gain attention later?
"""

import abc
import dataclasses
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from .._errors import OutOfRangeError, at_least, check_fraction, check_positive, check_seed
from .._progress import progress_bar
from .._settings import Settings, setting
from ..activation import check_activations
from ..attention import get_attention
from ..corpus import CORPUS_VARIABLE, SPLITS
from ..metrics import stable_rank
from .block import AbstractTrainedModel, FixedGradientBlock, run_members
from .compare import CompareConfig
from .fig4 import Fig4Config, discrete_toy
from .reach import ReachConfig
from .transformer import TransformerCompareConfig
from .wikitext import WikitextConfig, folder_or_none, run_wikitext


@dataclasses.dataclass(frozen=True)
class FixedGradientConfig(CompareConfig):
    """The §3.5 block trained with its back-propagated gradient held at initialisation
    (`FixedGradientBlock`: JoMA's Assumption 1 made exact), with the block's settings."""

    model: ClassVar[AbstractTrainedModel] = FixedGradientBlock()


class Curves(NamedTuple):
    """What one setting gives for one activation, every run at every save.

    **Fields:**

    - `steps`: the saves `(n,)`; `entropy`: the attention entropy `(runs, n)`.
    - `stable_rank`: the stable rank ‖W‖_F²/‖W‖₂² of the MLP's lower layer `(runs, n)` (the block's
      and the one-layer Transformer's: of V = U_Cᵀ W, its weights on the contextual tokens), or
      `None` where there is no MLP (the toy).
    - `attention`: the attention on every contextual token `(runs, n, tokens)`, the mean over
      classes of each class's distribution over the tokens (`None` where it is not kept,
      `Trained.tokens`).
    - `salience`: each token's salience `(runs, tokens)`, with `attention`: the block's ‖Δ_l‖ over
      the hidden nodes, Δ = E[x gᵀ] at the start (the query's logits are shared by every class,
      and the token with the largest ‖Δ_l‖ wins them, JOMA_MATH §3.3); the toy's target μ.
    """

    steps: np.ndarray
    entropy: np.ndarray
    stable_rank: np.ndarray | None = None
    attention: np.ndarray | None = None
    salience: np.ndarray | None = None


class EntropyCurves(abc.ABC):
    """One setting of the search: what it trains for a given activation, its curves, and which
    ingredients it has (for the verdict per ingredient: two settings of one `family` whose
    `ingredients` differ in one entry are its with/without pair)."""

    name: str
    family: str
    ingredients: Mapping[str, bool]

    @abc.abstractmethod
    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        """The activations run in this setting; the first is the linear reference."""

    @abc.abstractmethod
    def curves(self, config: "BounceConfig", activation: str) -> Curves:
        """Every run of this setting with `activation` over training."""


@dataclasses.dataclass(frozen=True)
class Trained(EntropyCurves):
    """A trained model of `jomasim compare` (`model`: the block, the fixed-gradient block or the
    one-layer Transformer) with `settings` on top of the search's rates, seeds and steps (`steps`,
    or the search's own); the entropy is the attention's over the frequency bags (`entropy_train`),
    one curve per seed; with `tokens`, the attention on every token is kept too."""

    name: str
    model: type[CompareConfig]
    settings: dict
    steps: int | None = None
    family: str = ""
    ingredients: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    tokens: bool = False

    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        return config.activations

    def config(self, config: "BounceConfig", activation: str) -> CompareConfig:
        """The comparison config of this setting with `activation`."""
        return self.model(**{"eta_w": config.eta, "eta_z": config.eta, **self.settings}, activation=activation,
                          seeds=config.seeds, first_seed=config.first_seed, steps=self.steps or config.steps,
                          save_every=config.save_every)

    def curves(self, config: "BounceConfig", activation: str) -> Curves:
        run = self.config(config, activation)
        run.check_memory("train")
        results = run_members(run, run.members(run.eta_w, run.eta_z), run.steps, run.save_steps, "train")
        trained = results.members.train
        ranks = np.asarray(jax.vmap(jax.vmap(stable_rank))(trained.V))
        if not self.tokens:
            return Curves(results.steps, trained.entropy, ranks)
        form = get_attention(run.attention)
        attention = jax.vmap(lambda z, X: jax.vmap(
            lambda logits: jnp.mean(form.distribution(logits, X, run.temperature), axis=1))(z))(trained.z, results.members.X)
        return Curves(results.steps, trained.entropy, ranks, np.asarray(attention),
                      np.linalg.norm(results.members.delta, axis=2))


@dataclasses.dataclass(frozen=True)
class Toy(EntropyCurves):
    """The nonlinear toy of Fig. 4 (the authors' discrete update, v moving along (μ − v) ∘ a with
    a = softmax(v²/T)) against its linear counterpart, where the drive is the constant μ
    (JOMA_MATH §4.4: with linear φ the target is gone): one curve each, on the Fig. 4 targets; the
    attention on each of its components is kept, with μ as their salience."""

    name: str = "nonlinear toy (Fig. 4)"
    family: str = ""
    ingredients: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    nonlinear: ClassVar[str] = "toy (μ − v)"

    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        return ("linear", self.nonlinear)

    def curves(self, config: "BounceConfig", activation: str) -> Curves:
        toy = Fig4Config()
        mu = jnp.asarray(toy.targets())
        vs, entropy = discrete_toy(mu, jnp.full(mu.shape, toy.v0), toy.step, toy.temperature, toy.iterations,
                                   relax=activation != "linear")
        steps = np.arange(0, toy.iterations, config.toy_save_every)
        attention = jax.nn.softmax(vs[steps] ** 2 / toy.temperature, axis=-1)
        return Curves(steps, np.asarray(entropy)[steps][None], None, np.asarray(attention)[None], np.asarray(mu)[None])


@dataclasses.dataclass(frozen=True)
class Text(EntropyCurves):
    """The paper's WikiText model (`reproduce wikitext`: one layer, one head, causal, Adam with
    clipping 0.5 as the reference) at the search's text sizes with `switches` (optimizer, norm,
    dropout) on top; the entropy is the layer's attention entropy on the validation stream at
    every checkpoint (JOMA_MATH §6.2), the stable rank its MLP lower layer's, one curve per seed."""

    name: str
    switches: dict
    family: str = "WikiText, 1 layer"
    ingredients: Mapping[str, bool] = dataclasses.field(default_factory=dict)

    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        return config.text_activations

    def config(self, config: "BounceConfig", activation: str) -> WikitextConfig:
        """The WikiText config of this setting with `activation` as the MLP's."""
        lr = config.text_sgd_lr if self.switches.get("optimizer") == "sgd" else config.text_adam_lr
        return WikitextConfig.small(corpus=config.corpus, train_split=config.text_train_split,
                                    valid_split=config.text_valid_split, depths=(1,), lr=lr, seeds=config.text_seeds,
                                    steps=config.text_steps, eval_every=config.text_eval_every,
                                    d_model=config.text_width, d_hidden=config.text_width, ffn_activation=activation,
                                    **self.switches)

    def curves(self, config: "BounceConfig", activation: str) -> Curves:
        result = run_wikitext(self.config(config, activation))
        (run,) = result.runs
        return Curves(result.steps, run.entropy[..., 0], run.stable_rank[..., 0])


@dataclasses.dataclass(frozen=True)
class BounceConfig(Settings):
    """Settings of the search: the rates are `jomasim compare`'s (SGD at 0.1), with fewer seeds and
    five times its steps, so that the nonlinear MLPs, which sparsify later, reach their minimum
    (and every setting, T = 2 included, gets sparse); the ladder's rungs train as long as in
    `reproduce reach`; the WikiText model at the reduced size of `reproduce wikitext --small`
    (d 64, 1500 minibatches) with three seeds, trained on WikiText-2's validation split and
    validated on its test split (the splits these machines have)."""

    activations: tuple[str, ...] = setting(("linear", "relu", "gelu", "silu"),
                                           "MLP activations, the linear reference first", check=check_activations)
    seeds: int = setting(4, "seeds per setting and activation", check=at_least(1))
    first_seed: int = setting(0, "the first seed", check=check_seed)
    steps: int = setting(10000, "training steps per run", check=at_least(1))
    ladder_steps: int = setting(2000, "training steps per run on the ladder's rungs", check=at_least(1))
    save_every: int = setting(50, "keep the parameters every N steps (and at the last step, when N does not "
                              "divide the steps)", check=at_least(1))
    eta: float = setting(0.1, "SGD learning rate of every parameter (eta_w = eta_z)", check=check_positive)
    length: int = setting(20, "sequence length L of the sampled-sequence setting", check=at_least(1))
    weight_decay: float = setting(0.01, "coupled L2 decay on the MLP's weights in the weight-decayed block: its time "
                                  "scale 1/(eta × decay) is a tenth of the run at the defaults, so W can settle where "
                                  "decay and gradient balance (a finite target, as the toy's relaxation)",
                                  check=check_positive)
    ladder: bool = setting(True, "also the rungs of `reproduce reach` past the sampled sequences, and its LayerNorm and "
                           "Adam rungs at matched progress")
    text: bool = setting(True, "also the paper's WikiText model, one layer (needs the corpus)")
    corpus: str | None = setting(None, f"the corpus folder, in the WikiText layout (default: ${CORPUS_VARIABLE})",
                                 check=folder_or_none)
    text_train_split: str = setting("valid", "the split the WikiText model trains on", choices=SPLITS)
    text_valid_split: str = setting("test", "the split its checkpoints are evaluated on", choices=SPLITS)
    text_activations: tuple[str, ...] = setting(("linear", "relu"), "the WikiText model's MLP activations, the linear "
                                                "reference first (ReLU is the paper's)", check=check_activations)
    text_seeds: int = setting(3, "seeds per WikiText setting and activation (vmapped)", check=at_least(1))
    text_steps: int = setting(1500, "minibatches per WikiText run", check=at_least(1))
    text_eval_every: int = setting(100, "minibatches between evaluated WikiText checkpoints", check=at_least(1))
    text_width: int = setting(64, "the WikiText model's width and its MLP's", check=at_least(1))
    text_adam_lr: float = setting(1e-3, "Adam's learning rate on WikiText (as `reproduce wikitext --small`)",
                                  check=check_positive)
    text_sgd_lr: float = setting(3.0, "SGD's learning rate on WikiText: of 1, 3, 10 and 30 the one whose best "
                                 "validation loss comes closest to Adam's (matched progress)", check=check_positive)
    toy_save_every: int = setting(10, "keep the toy's entropy every N iterations", check=at_least(1))
    margin: float = setting(0.1, "nats by which a nonlinear φ's mean rebound must exceed the linear φ's (and twice "
                            "the seeds' standard error) for the setting to count as a bounce from the nonlinearity; "
                            "also the dip and the rebound that make a run sparser, and rebound", check=check_positive)
    censor_within: float = setting(0.02, "a run whose entropy minimum lies this fraction of its length or less before "
                                   "its last save is censored: it ended before a rebound could show",
                                   check=check_fraction)
    token_gain: float = setting(0.1, "a token gains attention when its attention rises above its initial value by "
                                "more than this fraction", check=check_positive)

    def check_fields(self):
        for name, activations in (("activations", self.activations), ("text_activations", self.text_activations)):
            if not activations or activations[0] != "linear" or len(activations) < 2:
                raise OutOfRangeError(f"{name}={activations!r} is not allowed; give 'linear' first, then at least "
                                      "one nonlinear activation")
        for case in self.settings():
            if isinstance(case, (Trained, Text)):
                case.config(self, "linear")  # every setting's config checks its own fields (save_every ≤ steps)

    def settings(self) -> tuple[EntropyCurves, ...]:
        """Every setting searched, in order."""
        head = {"sequence_length": 0, "attention_params": "logits", "head": True}
        block = (
            Trained("block (Fig. 2: T = 0.5, Gaussian, saliency 1)", CompareConfig, {}, tokens=True),
            Trained("block, T = 2", CompareConfig, {"temperature": 2.0}),
            Trained("block, saliency 3", CompareConfig, {"saliency": 3.0}),
            Trained("block, random frequencies", CompareConfig, {"variant": "random"}),
            Trained("block, exp attention", CompareConfig, {"attention": "exp"}),
            Trained("block, fixed back-propagated gradient", FixedGradientConfig, {}),
            Trained("block, learned head", TransformerCompareConfig, head, family="block with a learned head",
                    ingredients={"weight decay": False}),
            Trained("block, learned head, weight-decayed MLP", TransformerCompareConfig,
                    {**head, "weight_decay": self.weight_decay}, family="block with a learned head",
                    ingredients={"weight decay": True}),
            Trained(f"block, sequences L = {self.length}", TransformerCompareConfig,
                    {"sequence_length": self.length, "attention_params": "logits"}, tokens=True),
            Toy(),
        )
        reach = ReachConfig()
        # the ladder's rungs from learned W_Q, W_K on (its block and sampled rungs are covered above;
        # its measured-rate rung changes only the flows, not training), each with what it adds
        rungs = tuple(Trained(f"reach: {name}", TransformerCompareConfig, rung, self.ladder_steps, "reach ladder",
                              _ladder_ingredients(rung))
                      for name, rung in reach.rungs()[3:] if not rung.get("measured_rate"))
        matched = tuple(Trained(f"reach: {name}", TransformerCompareConfig, rung, self.ladder_steps,
                                "reach ladder at matched progress", _ladder_ingredients(rung))
                        for name, rung in reach.matched_rungs())
        text = tuple(Text(f"WikiText, 1 layer: {name}", switches, ingredients={
            "Adam": switches.get("optimizer", "adam") == "adam", "LayerNorm": switches.get("norm", "post") != "none",
            "dropout": switches.get("dropout", 0.2) > 0}) for name, switches in (
                ("Adam, post-LN, dropout 0.2 (the paper's)", {}), ("SGD", {"optimizer": "sgd"}),
                ("no LayerNorm", {"norm": "none"}), ("no dropout", {"dropout": 0.0})))
        return block + (rungs + matched if self.ladder else ()) + (text if self.text else ())


def _ladder_ingredients(rung: dict) -> dict[str, bool]:
    """What a rung of the reach ladder has of the ingredients the verdict weighs."""
    return {"learned embeddings": rung.get("embeddings") == "learned", "LayerNorm": rung.get("norm", "none") != "none",
            "Adam": rung.get("optimizer") == "adam"}


class ReboundMeasures(NamedTuple):
    """How a curve dips and rebounds over training (`rebound_measures`): each number the mean over
    the runs that stayed finite throughout (NaN if none).

    **Fields:**

    - `entropy_initial`, `entropy_min`, `entropy_min_step`, `entropy_final`: where it starts, its
      minimum, the step of the minimum, where it ends (named for the attention entropy; the stable
      rank's are read the same way).
    - `dip`: initial − minimum (how sparse the attention got).
    - `rebound`: final − minimum; `rebound_se`: the standard error of the mean rebound over the runs
      (NaN with one run).
    - `runs`: how many runs were finite throughout; `censored`: how many of those are censored
      (their minimum lies too near the last save for a rebound to be seen).
    """

    entropy_initial: float
    entropy_min: float
    entropy_min_step: float
    entropy_final: float
    dip: float
    rebound: float
    rebound_se: float
    runs: int
    censored: int

    @property
    def mostly_censored(self) -> bool:
        """Whether most of the runs that stayed finite are censored."""
        return bool(self.runs and 2 * self.censored > self.runs)


def rebound_measures(steps: np.ndarray, curves: np.ndarray, censor_within: float) -> ReboundMeasures:
    """The entropy's initial value, minimum, step of the minimum, final value and rebound (final −
    minimum), each the mean over the runs that stayed finite, and how many of them are censored.

    **Arguments:**

    - `steps`: `(n,)`; `curves`: `(runs, n)`.
    - `censor_within`: a run whose minimum lies at most this fraction of the steps before the last
      save is censored (it may still have been falling: its rebound is not seen).

    **Returns:**

    The `ReboundMeasures`.
    """
    finite = np.all(np.isfinite(curves), axis=1)
    kept = curves[finite]
    if not len(kept):
        return ReboundMeasures(*[np.nan] * 7, runs=0, censored=0)
    steps = np.asarray(steps)
    lowest = np.argmin(kept, axis=1)
    minimum = kept[np.arange(len(kept)), lowest]
    late = steps[lowest] >= steps[-1] - censor_within * (steps[-1] - steps[0])
    rebounds = kept[:, -1] - minimum
    return ReboundMeasures(
        entropy_initial=float(np.mean(kept[:, 0])), entropy_min=float(np.mean(minimum)),
        entropy_min_step=float(np.mean(steps[lowest])), entropy_final=float(np.mean(kept[:, -1])),
        dip=float(np.mean(kept[:, 0] - minimum)), rebound=float(np.mean(rebounds)),
        rebound_se=float(np.std(rebounds, ddof=1) / np.sqrt(len(rebounds))) if len(rebounds) > 1 else np.nan,
        runs=int(finite.sum()), censored=int(late.sum()))


class RunMeasures(NamedTuple):
    """One setting and activation measured: its attention entropy and, where it has an MLP, the
    stable rank of the MLP's lower layer.

    **Fields:**

    - `attention`: the attention entropy's `ReboundMeasures`.
    - `stable_rank`: the stable rank's, or `None` without an MLP.
    """

    attention: ReboundMeasures
    stable_rank: ReboundMeasures | None = None

    def record(self) -> dict:
        """The row of the table: the attention's measures, and the stable rank's `stable_rank_dip`,
        `stable_rank_rebound`, `stable_rank_min_step`, `stable_rank_censored` (`None` without an
        MLP, so that every row has the same columns)."""
        ranks = self.stable_rank
        return _json_numbers({
            **self.attention._asdict(),
            "stable_rank_dip": None if ranks is None else ranks.dip,
            "stable_rank_rebound": None if ranks is None else ranks.rebound,
            "stable_rank_min_step": None if ranks is None else ranks.entropy_min_step,
            "stable_rank_censored": None if ranks is None else ranks.censored,
        })


class Verdict(NamedTuple):
    """Whether a setting's rebound comes from the nonlinearity (`verdict`).

    **Fields:**

    - `rebound_linear`: the linear activation's mean rebound.
    - `activation_max`, `rebound_max`: the nonlinear activation with the largest rebound, and it
      (`None`, NaN when no rebound is known).
    - `excess`: its rebound − the linear one's; `excess_se`: its standard error over the seeds
      (from the activations run more than once; NaN with one run each).
    - `bounce`: `excess > margin` and, where the seeds give a standard error, `excess > 2
      excess_se` (larger than the margin and than the seeds' scatter); false when a rebound is
      unknown.
    - `stable_rank_excess`: the largest nonlinear rebound of the MLP's stable rank − the linear
      one's (`None` without an MLP).
    - `sparsified`: whether any activation's attention got sparser by more than `margin`; without
      that the setting cannot show a rebound, it is no test.
    - `censored`: the activations most of whose runs are censored: they ended at or just after
      their minimum, so a missing rebound there is no evidence either way.
    """

    rebound_linear: float
    activation_max: str | None
    rebound_max: float
    excess: float
    excess_se: float
    bounce: bool
    stable_rank_excess: float | None
    sparsified: bool
    censored: list[str]


def verdict(measures: dict[str, RunMeasures], margin: float) -> Verdict:
    """Whether a setting's rebound comes from the nonlinearity.

    **Arguments:**

    - `measures`: activation → its `RunMeasures`, `"linear"` among them.
    - `margin`: nats.

    **Returns:**

    The `Verdict`.
    """
    rebounds = {name: values.attention.rebound for name, values in measures.items()}
    sparsified = any(values.attention.dip > margin for values in measures.values())
    censored = [name for name, values in measures.items() if values.attention.mostly_censored]
    ranks = {name: None if values.stable_rank is None else values.stable_rank.rebound for name, values in measures.items()}
    rank_excess = (max(value for name, value in ranks.items() if name != "linear") - ranks["linear"]
                   if all(value is not None and np.isfinite(value) for value in ranks.values()) else None)
    nonlinear = {name: value for name, value in rebounds.items() if name != "linear" and np.isfinite(value)}
    linear = rebounds["linear"]
    if not nonlinear or not np.isfinite(linear):
        return Verdict(rebound_linear=linear, activation_max=None, rebound_max=np.nan, excess=np.nan, excess_se=np.nan,
                       bounce=False, stable_rank_excess=rank_excess, sparsified=sparsified, censored=censored)
    name = max(nonlinear, key=nonlinear.get)
    excess = nonlinear[name] - linear
    # the scatter the seeds show (an activation run once has none to show)
    errors = np.asarray([measures[name].attention.rebound_se, measures["linear"].attention.rebound_se])
    spread = float(np.sqrt(np.nansum(errors**2))) if np.isfinite(errors).any() else np.nan
    return Verdict(rebound_linear=linear, activation_max=name, rebound_max=nonlinear[name], excess=excess,
                   excess_se=spread, bounce=bool(excess > margin and (np.isnan(spread) or excess > 2 * spread)),
                   stable_rank_excess=rank_excess, sparsified=sparsified, censored=censored)


class TokenOrder(NamedTuple):
    """Fig. 5's question measured on one setting and activation (`token_order`).

    **Fields:**

    - `tokens`, `gaining`, `recovering`: mean tokens per run reached, gaining and recovering
      attention.
    - `peaks_at_end`: the share of gaining tokens whose peak is the last save (still rising, their
      peak censored; NaN with none gaining).
    - `cases`: runs with a rank correlation; `rank_correlation`: their mean (NaN if none);
      `later_share`: the share of them with a positive correlation.
    """

    tokens: float
    gaining: float
    recovering: float
    peaks_at_end: float
    cases: int
    rank_correlation: float
    later_share: float


def token_order(steps: np.ndarray, attention: np.ndarray, salience: np.ndarray, gain: float) -> tuple[TokenOrder, np.ndarray]:
    """Fig. 5's claim, measured: do less salient tokens gain attention later?

    For every run, the tokens its attention reaches (attention > 0 at the start). A
    token's *rise* at a save is its attention there above its lowest attention so far; the token
    *gains* attention when its largest rise exceeds the fraction `gain` of its initial attention,
    and its *peak step* is where that rise is largest: for a token whose attention only grows, the
    step of its largest attention; for one that first loses attention to a more salient token and
    then wins some back (Fig. 5's l′), the top of that late recovery. For every run with at least
    three gaining tokens whose peaks are not all at one save, the rank correlation
    (Spearman, ties averaged) between salience rank (0: the most salient) and peak step: positive
    when the less salient tokens peak later, as Theorem 4 and Fig. 5 have it; negative when they
    are overtaken sooner, as when the most salient token wins alone. A token *recovers* when its
    attention falls below its start by more than the fraction `gain` and ends above its lowest by
    more than `gain` of its start (a per-token rebound: it lost attention, then won some back).

    **Arguments:**

    - `steps`: `(n,)`; `attention`: `(runs, n, tokens)`; `salience`: `(runs, tokens)`.
    - `gain`: the rise, as a fraction of the initial attention, that counts as gaining attention.

    **Returns:**

    `(measures, peak_step)`: the `TokenOrder`, and each gaining token's peak step `(runs, tokens)`
    (−1 for the others).
    """
    steps = np.asarray(steps)
    start = attention[:, 0]
    rise = attention - np.minimum.accumulate(attention, axis=1)
    gaining = (start > 0) & (np.max(rise, axis=1) > gain * start)
    peak = np.where(gaining, steps[np.argmax(rise, axis=1)], -1)
    lowest = np.min(attention, axis=1)
    recovering = (lowest < (1 - gain) * start) & (attention[:, -1] > lowest + gain * start)
    correlations = []
    for run, chosen in enumerate(gaining):
        peaks = peak[run, chosen]
        if chosen.sum() >= 3 and np.ptp(peaks) > 0:
            order = scipy.stats.rankdata(-salience[run, chosen])
            correlations.append(float(np.corrcoef(order, scipy.stats.rankdata(peaks))[0, 1]))
    runs = len(start)
    measures = TokenOrder(
        tokens=float((start > 0).sum() / runs), gaining=float(gaining.sum() / runs),
        recovering=float(recovering.sum() / runs),
        peaks_at_end=float(np.mean(peak[gaining] == steps[-1])) if gaining.any() else np.nan,
        cases=len(correlations), rank_correlation=float(np.mean(correlations)) if correlations else np.nan,
        later_share=float(np.mean(np.asarray(correlations) > 0)) if correlations else np.nan)
    return measures, peak


OUTCOMES = {"needed": "needed", "not needed": "not_needed", "no rebound either way": "neither", "untested": "untested"}
"""What one with/without pair says of an ingredient (`pair_outcome`), and the key that counts such
pairs in an ingredient's verdict."""


def run_status(measures: ReboundMeasures, margin: float) -> str:
    """What one setting and activation shows (`rebound_measures`): `"rebounds"` (sparser by more
    than `margin`, then back up by more than `margin`), `"no rebound"`, `"censored"` (no rebound,
    but most runs end at their minimum), `"no dip"` (never sparser by `margin`: no test) or
    `"no runs"` (none stayed finite)."""
    if not measures.runs:
        return "no runs"
    if not measures.dip > margin:
        return "no dip"
    if measures.rebound > margin:
        return "rebounds"
    return "censored" if measures.mostly_censored else "no rebound"


def pair_outcome(with_status: str, without_status: str) -> str:
    """What a pair of runs, with and without an ingredient (`run_status` each), says of it: `"not
    needed"` when the run without it rebounds, `"needed"` when only the run with it does, `"no
    rebound either way"`, or `"untested"` when a run has no dip, is censored or failed."""
    if without_status == "rebounds":
        return "not needed"
    if with_status == "rebounds" and without_status == "no rebound":
        return "needed"
    if with_status == without_status == "no rebound":
        return "no rebound either way"
    return "untested"


def ingredient_verdicts(cases: tuple[EntropyCurves, ...], activations: list[tuple[str, ...]],
                        measures: list[dict[str, ReboundMeasures]], margin: float) -> list[dict]:
    """A verdict per ingredient, from every with/without pair the settings hold: the nonlinearity's
    pairs are each setting's nonlinear activations against its linear one; another ingredient's
    are the settings of one family whose `ingredients` differ in it alone, activation by activation.

    **Arguments:**

    - `cases`, `activations`, `measures`: the settings, each one's activations and its
      `rebound_measures` per activation.
    - `margin`: nats.

    **Returns:**

    One entry per ingredient: `ingredient`, `verdict` (`"needed"`, `"not needed"` or `"no rebound
    either way"` when every tested pair says so; `"depends on the setting"` when tested pairs
    disagree; `"undecided"` when no pair tests it), the pairs per outcome (`needed`, `not_needed`,
    `neither`, `untested`: `OUTCOMES`) and `pairs`: `with`, `without` (setting and activation),
    their statuses and rebounds, and the `outcome`.
    """
    status = [{name: run_status(values, margin) for name, values in found.items()} for found in measures]
    pairs: dict[str, list[dict]] = {"nonlinearity": []}

    def add(ingredient, with_, without):
        (i, a), (j, b) = with_, without
        pairs.setdefault(ingredient, []).append({
            "with": f"{cases[i].name} ({a})", "without": f"{cases[j].name} ({b})", "status_with": status[i][a],
            "status_without": status[j][b], "rebound_with": _json_number(measures[i][a].rebound),
            "rebound_without": _json_number(measures[j][b].rebound),
            "outcome": pair_outcome(status[i][a], status[j][b])})

    for index, names in enumerate(activations):
        for name in names[1:]:
            add("nonlinearity", (index, name), (index, names[0]))
    for i, with_ in enumerate(cases):
        for j, without in enumerate(cases):
            differ = [key for key in with_.ingredients if with_.ingredients[key] != without.ingredients.get(key)]
            if (with_.family and with_.family == without.family and with_.ingredients.keys() == without.ingredients.keys()
                    and len(differ) == 1 and with_.ingredients[differ[0]]):
                for name in activations[i]:
                    if name in activations[j]:
                        add(differ[0], (i, name), (j, name))
    verdicts = []
    for ingredient, found in pairs.items():
        outcomes = [pair["outcome"] for pair in found]
        tested = {outcome for outcome in outcomes if outcome != "untested"}
        words = tested.pop() if len(tested) == 1 else "depends on the setting" if tested else "undecided"
        verdicts.append({"ingredient": ingredient, "verdict": words,
                         **{key: outcomes.count(outcome) for outcome, key in OUTCOMES.items()}, "pairs": found})
    return verdicts


def _json_number(value):
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _json_numbers(record: dict) -> dict:
    """A record with every number that is not finite as `None` (JSON's null)."""
    return {key: _json_number(value) for key, value in record.items()}


def _ingredient_words(entry: dict) -> str:
    tested = {outcome: entry[key] for outcome, key in OUTCOMES.items() if outcome != "untested" and entry[key]}
    said = ", ".join(f"{outcome} in {count}" for outcome, count in tested.items())
    return f"{entry['ingredient']}: {entry['verdict']}" + (f" ({said} of {sum(tested.values())} tested pairs)" if tested
                                                           else f" (none of {entry['untested']} pairs tests it)")


class BounceSetting(NamedTuple):
    """One setting of the search, every activation measured.

    **Fields:**

    - `name`: the setting's name; `activations`: its activations, the linear reference first.
    - `steps`: its saves; `entropy`: the attention entropy `(activations, runs, saves)`;
      `stable_rank`: the MLP's stable rank likewise (`None` without an MLP).
    - `token_attention`: where the attention on each token is kept, the first run's `(activations,
      saves, tokens)`; `token_salience`: `(activations, tokens)`; `token_peak_step`: `(activations,
      runs, tokens)` (`token_order`); `None` where it is not kept.
    - `measures`: activation → its `RunMeasures`; `verdict`: the setting's `Verdict`;
      `tokens`: activation → its `TokenOrder` (empty where the attention on each token is not kept).
    """

    name: str
    activations: tuple[str, ...]
    steps: np.ndarray
    entropy: np.ndarray
    stable_rank: np.ndarray | None
    token_attention: np.ndarray | None
    token_salience: np.ndarray | None
    token_peak_step: np.ndarray | None
    measures: dict[str, RunMeasures]
    verdict: Verdict
    tokens: dict[str, TokenOrder]


class BounceResult(NamedTuple):
    """What the bounce search measured.

    **Fields:**

    - `config`: the settings it ran with.
    - `settings`: every setting's `BounceSetting`, in order.
    - `ingredients`: one verdict per ingredient (`ingredient_verdicts`).
    """

    config: BounceConfig
    settings: list[BounceSetting]
    ingredients: list[dict]

    def arrays(self) -> dict[str, np.ndarray]:
        """Per setting i `steps_i`, `entropy_i`, and where the setting has them `stable_rank_i`,
        `token_attention_i`, `token_salience_i`, `token_peak_step_i`."""
        arrays = {}
        for index, found in enumerate(self.settings):
            arrays.update({f"steps_{index}": found.steps, f"entropy_{index}": found.entropy})
            if found.stable_rank is not None:
                arrays[f"stable_rank_{index}"] = found.stable_rank
            if found.token_attention is not None:
                arrays.update({f"token_attention_{index}": found.token_attention,
                               f"token_salience_{index}": found.token_salience,
                               f"token_peak_step_{index}": found.token_peak_step})
        return arrays

    def settings_where(self, holds) -> list[str]:
        """The names of the settings whose verdict `holds(verdict)`."""
        return [found.name for found in self.settings if holds(found.verdict)]

    def summary(self) -> dict:
        """`settings`, `activations`, `table` (one row per setting and activation,
        `RunMeasures.record`), `verdicts` (one per setting), `tokens` (one row per setting and
        activation that keeps them), `ingredients`, `margin`, `censor_within`, `bounce_settings`
        (the settings whose verdict is a bounce from the nonlinearity), `untested_settings` (those
        where the attention never got sparse), `censored_settings` (those without a bounce where
        most runs of some activation end at their minimum) and `verdict` in words."""
        config = self.config
        bounced = self.settings_where(lambda found: found.bounce)
        untested = self.settings_where(lambda found: not found.sparsified)
        censored = self.settings_where(lambda found: found.censored and found.sparsified and not found.bounce)
        words = (f"rebound larger for a nonlinear φ than for the linear one by more than {config.margin:g} nats and twice "
                 f"the seeds' standard error in "
                 f"{len(bounced)} of {len(self.settings)} settings" + (f" ({'; '.join(bounced)})" if bounced else "")
                 + (f"; in {len(untested)} the attention never got sparser by that much, so they test nothing "
                    f"({'; '.join(untested)})" if untested else "")
                 + (f"; in {len(censored)} most runs of some activation reach their minimum within "
                    f"{100 * config.censor_within:g} % of the end, so no rebound there is censored, not absent "
                    f"({'; '.join(censored)})" if censored else "")
                 + ". Per ingredient: " + "; ".join(_ingredient_words(entry) for entry in self.ingredients))
        return {
            "settings": [found.name for found in self.settings],
            "activations": [found.activations for found in self.settings],
            "table": [{"setting": found.name, "activation": activation, **measures.record()}
                      for found in self.settings for activation, measures in found.measures.items()],
            "verdicts": [{"setting": found.name, **_json_numbers(found.verdict._asdict())} for found in self.settings],
            "tokens": [{"setting": found.name, "activation": activation, **_json_numbers(order._asdict())}
                       for found in self.settings for activation, order in found.tokens.items()],
            "ingredients": self.ingredients, "margin": config.margin, "censor_within": config.censor_within,
            "bounce_settings": bounced, "untested_settings": untested, "censored_settings": censored, "verdict": words,
        }


def run_bounce(config: BounceConfig) -> BounceResult:
    """Trains every setting with every activation and measures the rebound.

    **Returns:**

    The `BounceResult`.
    """
    cases = config.settings()
    settings = []
    bar = progress_bar(sum(len(case.activations(config)) for case in cases), "bounce", "setting and activation")
    for case in cases:
        activations = case.activations(config)
        found, measures = [], {}
        for activation in activations:
            curves = case.curves(config, activation)
            bar.update()
            measures[activation] = RunMeasures(
                rebound_measures(curves.steps, curves.entropy, config.censor_within),
                None if curves.stable_rank is None else rebound_measures(curves.steps, curves.stable_rank,
                                                                         config.censor_within))
            found.append(curves)
        kept = found[0].attention is not None  # the attention on each token, where the setting keeps it
        tokens, peaks = {}, []
        if kept:
            for activation, curves in zip(activations, found):
                tokens[activation], peak = token_order(curves.steps, curves.attention, curves.salience, config.token_gain)
                peaks.append(peak)
        settings.append(BounceSetting(
            name=case.name, activations=activations, steps=np.asarray(found[0].steps),
            entropy=np.asarray([curves.entropy for curves in found]),
            stable_rank=np.asarray([curves.stable_rank for curves in found]) if found[0].stable_rank is not None else None,
            token_attention=np.asarray([curves.attention[0] for curves in found]) if kept else None,
            token_salience=np.asarray([curves.salience[0] for curves in found]) if kept else None,
            token_peak_step=np.asarray(peaks) if kept else None,
            measures=measures, verdict=verdict(measures, config.margin), tokens=tokens))
    bar.close()
    ingredients = ingredient_verdicts(cases, [found.activations for found in settings],
                                      [{name: values.attention for name, values in found.measures.items()}
                                       for found in settings], config.margin)
    return BounceResult(config=config, settings=settings, ingredients=ingredients)
