"""Does attention get sparse and then dense again because the MLP is nonlinear? `jomasim reproduce bounce`.

JoMA predicts that with a nonlinear MLP the attention first gets sparse and then dense again (a
rebound of its entropy), and with a linear MLP only sparse (JOMA_MATH §4.4). This reproduction
puts the prediction to every setting where it can be looked for, each trained with a linear MLP
and with nonlinear ones, and measures per setting and activation the attention entropy over
training, its minimum, when it is reached, and the rebound (final − minimum). The settings
(`settings`): the §3.5 block as in Fig. 2, at T = 2, at saliency 3, with random frequencies and
with exp attention; the block trained with the back-propagated gradient held at its initial value
(JoMA's Assumption 1, `FixedGradientConfig`); the block on sampled sequences; the nonlinear toy
of Fig. 4 against its linear counterpart; and the rungs of `reproduce reach` past the sampled
sequences (learned W_Q/W_K, embeddings, LayerNorm, Adam).

The verdict is computed, never typed in: in a setting the bounce comes from the nonlinearity when
some nonlinear φ's mean rebound exceeds the linear φ's by more than `margin` nats (`verdict`).
"""

import abc
import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import OutOfRangeError, at_least, check_fraction, check_positive, check_seed
from .._progress import progress_bar
from .._settings import Settings, setting
from ..activation import check_activations, get_activation
from ..block import block_hidden, output_loss
from ..theory import JointFlow
from .block import run_members
from .compare import CompareConfig
from .fig4 import Fig4Config, discrete_toy
from .reach import ladder
from .transformer import TransformerCompareConfig


@dataclasses.dataclass(frozen=True)
class FixedGradientConfig(CompareConfig):
    """The §3.5 block trained under JoMA's Assumption 1 made exact: the back-propagated gradient
    g = ∂L/∂φ(h) of every class and hidden node is held at its value at initialisation (as if the
    layers above were frozen), so training minimises Σ g(0) ∘ φ(h) instead of the cross-entropy.
    The nonlinearity still acts through φ'(h); only the loss's own saturation is gone."""

    model: ClassVar[str] = "block-fixed-gradient"

    def objective(self, joint: JointFlow, y0):
        phi = get_activation(joint.activation).fn
        hidden = block_hidden(*y0, joint.data, attention=joint.attention_form, temperature=joint.temperature)
        signal = jax.lax.stop_gradient(jax.grad(output_loss)(phi(hidden)))
        return lambda block: jnp.sum(signal * phi(block.hidden()))


class EntropyCurves(abc.ABC):
    """One setting of the search: what it trains, for a given activation, and its entropy curves."""

    name: str

    @abc.abstractmethod
    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        """The activations run in this setting; the first is the linear reference."""

    @abc.abstractmethod
    def curves(self, config: "BounceConfig", activation: str) -> tuple[np.ndarray, np.ndarray]:
        """`(steps (n,), entropy (runs, n))`: the attention entropy of every run over training."""


@dataclasses.dataclass(frozen=True)
class Trained(EntropyCurves):
    """A trained model of `jomasim compare` (`model`: the block, the fixed-gradient block or the
    one-layer Transformer) with `settings` on top of the search's rates, seeds and steps (`steps`,
    or the search's own); the entropy is the attention's over the frequency bags (`entropy_train`),
    one curve per seed."""

    name: str
    model: type[CompareConfig]
    settings: dict
    steps: int | None = None

    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        return config.activations

    def config(self, config: "BounceConfig", activation: str) -> CompareConfig:
        """The comparison config of this setting with `activation`."""
        return self.model(**{"eta_w": config.eta, "eta_z": config.eta, **self.settings}, activation=activation,
                          seeds=config.seeds, first_seed=config.first_seed, steps=self.steps or config.steps,
                          save_every=config.save_every)

    def curves(self, config: "BounceConfig", activation: str) -> tuple[np.ndarray, np.ndarray]:
        run = self.config(config, activation)
        run.check_memory("train")
        results = run_members(run, run.members(run.eta_w, run.eta_z), run.steps, run.save_steps, "train")
        return results.steps, results.members.train.entropy


@dataclasses.dataclass(frozen=True)
class Toy(EntropyCurves):
    """The nonlinear toy of Fig. 4 (the authors' discrete update, v moving along (μ − v) ∘ a with
    a = softmax(v²/T)) against its linear counterpart, where the drive is the constant μ
    (JOMA_MATH §4.4: with linear φ the target is gone): one curve each, on the Fig. 4 targets."""

    name: str = "nonlinear toy (Fig. 4)"
    nonlinear: ClassVar[str] = "toy (μ − v)"

    def activations(self, config: "BounceConfig") -> tuple[str, ...]:
        return ("linear", self.nonlinear)

    def curves(self, config: "BounceConfig", activation: str) -> tuple[np.ndarray, np.ndarray]:
        toy = Fig4Config()
        mu = jnp.asarray(toy.targets())
        _, entropy = discrete_toy(mu, jnp.full(mu.shape, toy.v0), toy.step, toy.temperature, toy.iterations,
                                  relax=activation != "linear")
        steps = np.arange(0, toy.iterations, config.toy_save_every)
        return steps, np.asarray(entropy)[steps][None]


@dataclasses.dataclass(frozen=True)
class BounceConfig(Settings):
    """Settings of the search: the rates are `jomasim compare`'s (SGD at 0.1), with fewer seeds and
    five times its steps, so that the nonlinear MLPs, which sparsify later, reach their minimum
    (and every setting, T = 2 included, gets sparse); the ladder's rungs train as long as in
    `reproduce reach`."""

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
    ladder: bool = setting(True, "also the rungs of `reproduce reach` past the sampled sequences")
    toy_save_every: int = setting(10, "keep the toy's entropy every N iterations", check=at_least(1))
    margin: float = setting(0.1, "nats by which a nonlinear φ's mean rebound must exceed the linear φ's for the "
                            "setting to count as a bounce from the nonlinearity", check=check_positive)
    censor_within: float = setting(0.02, "a run whose entropy minimum lies this fraction of its length or less before "
                                   "its last save is censored: it ended before a rebound could show",
                                   check=check_fraction)

    def check_fields(self):
        if not self.activations or self.activations[0] != "linear" or len(self.activations) < 2:
            raise OutOfRangeError(f"activations={self.activations!r} is not allowed; give 'linear' first, then at least "
                                  "one nonlinear activation")
        for case in self.settings():
            if isinstance(case, Trained):
                case.config(self, "linear")  # every setting's config checks its own fields (save_every ≤ steps)

    def settings(self) -> tuple[EntropyCurves, ...]:
        """Every setting searched, in order."""
        block = (
            Trained("block (Fig. 2: T = 0.5, Gaussian, saliency 1)", CompareConfig, {}),
            Trained("block, T = 2", CompareConfig, {"temperature": 2.0}),
            Trained("block, saliency 3", CompareConfig, {"saliency": 3.0}),
            Trained("block, random frequencies", CompareConfig, {"variant": "random"}),
            Trained("block, exp attention", CompareConfig, {"attention": "exp"}),
            Trained("block, fixed back-propagated gradient", FixedGradientConfig, {}),
            Trained(f"block, sequences L = {self.length}", TransformerCompareConfig,
                    {"sequence_length": self.length, "attention_params": "logits"}),
            Toy(),
        )
        # the ladder's rungs from learned W_Q, W_K on (its block and sampled rungs are covered above;
        # its measured-rate rung changes only the flows, not training)
        rungs = tuple(Trained(f"reach: {name}", TransformerCompareConfig, rung, self.ladder_steps)
                      for name, rung in ladder(64, 16, "post", 1e-3)[3:] if not rung.get("measured_rate"))
        return block + (rungs if self.ladder else ())


def rebound_measures(steps: np.ndarray, curves: np.ndarray, censor_within: float) -> dict[str, float]:
    """The entropy's initial value, minimum, step of the minimum, final value and rebound (final −
    minimum), each the mean over the runs that stayed finite, and how many of them are censored.

    **Arguments:**

    - `steps`: `(n,)`; `curves`: `(runs, n)`.
    - `censor_within`: a run whose minimum lies at most this fraction of the steps before the last
      save is censored (it may still have been falling: its rebound is not seen).

    **Returns:**

    `entropy_initial`, `entropy_min`, `entropy_min_step`, `entropy_final`, `dip` (initial −
    minimum: how sparse the attention got), `rebound`, `runs` (how many runs were finite
    throughout; NaN measures if none) and `censored` (how many of those are censored).
    """
    finite = np.all(np.isfinite(curves), axis=1)
    kept = curves[finite]
    if not len(kept):
        return {**dict.fromkeys(("entropy_initial", "entropy_min", "entropy_min_step", "entropy_final", "dip", "rebound"),
                                np.nan), "runs": 0, "censored": 0}
    steps = np.asarray(steps)
    lowest = np.argmin(kept, axis=1)
    minimum = kept[np.arange(len(kept)), lowest]
    late = steps[lowest] >= steps[-1] - censor_within * (steps[-1] - steps[0])
    return {"entropy_initial": float(np.mean(kept[:, 0])), "entropy_min": float(np.mean(minimum)),
            "entropy_min_step": float(np.mean(steps[lowest])), "entropy_final": float(np.mean(kept[:, -1])),
            "dip": float(np.mean(kept[:, 0] - minimum)), "rebound": float(np.mean(kept[:, -1] - minimum)),
            "runs": int(finite.sum()), "censored": int(late.sum())}


def verdict(measures: dict[str, dict], margin: float) -> dict:
    """Whether a setting's rebound comes from the nonlinearity.

    **Arguments:**

    - `measures`: activation → its `rebound_measures`, `"linear"` among them.
    - `margin`: nats.

    **Returns:**

    `rebound_linear`, `activation_max` and `rebound_max` (the nonlinear activation with the largest
    rebound), `excess` (its rebound − the linear one's), `bounce` (`excess > margin`; false when a
    rebound is unknown), `sparsified` (whether any activation's attention got sparser by more
    than `margin`: without that the setting cannot show a rebound, it is no test) and `censored`
    (the activations most of whose runs are censored, `rebound_measures`: they ended at or just
    after their minimum, so a missing rebound there is no evidence either way).
    """
    rebounds = {name: values["rebound"] for name, values in measures.items()}
    sparsified = any(values["dip"] > margin for values in measures.values())
    censored = [name for name, values in measures.items() if values["runs"] and 2 * values["censored"] > values["runs"]]
    nonlinear = {name: value for name, value in rebounds.items() if name != "linear" and np.isfinite(value)}
    linear = rebounds["linear"]
    if not nonlinear or not np.isfinite(linear):
        return {"rebound_linear": linear, "activation_max": None, "rebound_max": np.nan, "excess": np.nan, "bounce": False,
                "sparsified": sparsified, "censored": censored}
    name = max(nonlinear, key=nonlinear.get)
    excess = nonlinear[name] - linear
    return {"rebound_linear": linear, "activation_max": name, "rebound_max": nonlinear[name], "excess": excess,
            "bounce": bool(excess > margin), "sparsified": sparsified, "censored": censored}


def _json_number(value):
    return None if isinstance(value, float) and not np.isfinite(value) else value


def run_bounce(config: BounceConfig) -> tuple[dict, dict]:
    """Trains every setting with every activation and measures the rebound.

    **Returns:**

    `(data, summary)`: `data` holds per setting i `steps_i` and `entropy_i` `(activations, runs,
    saves)`; `summary` holds `settings`, `table` (one row per setting and activation: the
    `rebound_measures`), `verdicts` (one per setting: `verdict`), `margin`, `censor_within`, `bounce_settings` (the
    settings whose verdict is a bounce from the nonlinearity), `untested_settings` (those where the
    attention never got sparse), `censored_settings` (those without a bounce where most runs of
    some activation end at their minimum: `verdict`'s `censored`) and `verdict` in words.
    """
    cases = config.settings()
    data, rows, verdicts = {}, [], []
    bar = progress_bar(sum(len(case.activations(config)) for case in cases), "bounce", "setting and activation")
    for index, case in enumerate(cases):
        activations = case.activations(config)
        curves, measures = [], {}
        for activation in activations:
            steps, entropy = case.curves(config, activation)
            bar.update()
            measures[activation] = rebound_measures(steps, entropy, config.censor_within)
            rows.append({"setting": case.name, "activation": activation,
                         **{key: _json_number(value) for key, value in measures[activation].items()}})
            curves.append(entropy)
        data[f"steps_{index}"] = np.asarray(steps)
        data[f"entropy_{index}"] = np.asarray(curves)
        verdicts.append({"setting": case.name, **{key: _json_number(value)
                                                  for key, value in verdict(measures, config.margin).items()}})
    bar.close()
    bounced = [row["setting"] for row in verdicts if row["bounce"]]
    untested = [row["setting"] for row in verdicts if not row["sparsified"]]
    censored = [row["setting"] for row in verdicts if row["censored"] and row["sparsified"] and not row["bounce"]]
    words = (f"rebound larger for a nonlinear φ than for the linear one by more than {config.margin:g} nats in "
             f"{len(bounced)} of {len(cases)} settings" + (f" ({'; '.join(bounced)})" if bounced else "")
             + (f"; in {len(untested)} the attention never got sparser by that much, so they test nothing "
                f"({'; '.join(untested)})" if untested else "")
             + (f"; in {len(censored)} most runs of some activation reach their minimum within "
                f"{100 * config.censor_within:g} % of the end, so no rebound there is censored, not absent "
                f"({'; '.join(censored)})" if censored else ""))
    return data, {"settings": [case.name for case in cases], "activations": [case.activations(config) for case in cases],
                  "table": rows, "verdicts": verdicts, "margin": config.margin,
                  "censor_within": config.censor_within, "bounce_settings": bounced,
                  "untested_settings": untested, "censored_settings": censored, "verdict": words}
