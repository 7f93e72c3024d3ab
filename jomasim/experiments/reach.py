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

import numpy as np

from .._errors import OutOfRangeError, at_least, check_positive, check_seed
from .._settings import Settings, setting
from ..activation import check_activations
from ..comparison import AGREEMENT
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


@dataclasses.dataclass(frozen=True)
class ReachConfig(Settings):
    """Settings of the ladder; the defaults are `compare --model transformer`'s (the Fig. 2 sizes,
    SGD at 0.1 for 2000 steps), 8 seeds, a linear and a SiLU MLP, Adam at its usual rate 1e-3."""

    activations: tuple[str, ...] = setting(("linear", "silu"), "MLP activations compared on every rung",
                                           check=check_activations)
    seeds: int = setting(8, "seeds per rung and activation", check=at_least(1))
    first_seed: int = setting(0, "the first seed", check=check_seed)
    steps: int = setting(2000, "training steps per run", check=at_least(1))
    save_every: int = setting(20, "keep the parameters every N steps", check=at_least(1))
    eta: float = setting(0.1, "SGD learning rate of every parameter (eta_w = eta_z)", check=check_positive)
    adam_eta: float = setting(1e-3, "Adam's learning rate on the Adam rung", check=check_positive)
    length: int = setting(64, "sequence length L of the sampled rungs after the first", check=at_least(1))
    short_length: int = setting(16, "sequence length of the second sampled rung", check=at_least(1))
    norm: str = setting("post", "where the LayerNorm rung puts LayerNorm", choices=("post", "pre"))
    describes: float = setting(0.9, "mean final NC(z reduced, z trained) at or above which a rung counts as described "
                               "by the theory (for `reach`)", check=check_positive)
    n_distinct: int = setting(10, "distinct tokens per class", check=at_least(0))
    n_common: int = setting(10, "common tokens", check=at_least(0))
    n_classes: int = setting(20, "classes K", check=at_least(1))
    dim: int = setting(30, "embedding dimension d", check=at_least(1))

    def check_fields(self):
        if not self.activations:
            raise OutOfRangeError("activations=() is not allowed; give at least one")
        self.config(self.rungs()[0][1], self.activations[0])  # the sizes, checked by the comparison's config

    def rungs(self) -> tuple[tuple[str, dict], ...]:
        """The rungs' names and settings."""
        return ladder(self.length, self.short_length, self.norm, self.adam_eta)

    def config(self, rung: dict, activation: str) -> TransformerCompareConfig:
        """The comparison of one rung and activation."""
        return TransformerCompareConfig(**{"eta_w": self.eta, "eta_z": self.eta, **rung}, activation=activation,
                                        seeds=self.seeds, first_seed=self.first_seed, steps=self.steps,
                                        save_every=self.save_every, n_distinct=self.n_distinct, n_common=self.n_common,
                                        n_classes=self.n_classes, dim=self.dim)


def _mean(values) -> float | None:
    finite = [value for value in values if value is not None and np.isfinite(value)]
    return float(np.mean(finite)) if finite else None


def _reach(rungs, rows: list[dict], describes: float) -> str | None:
    """The last rung, in ladder order, before the first whose mean final NC(reduced, trained) is
    below `describes` (`None` if the first already is)."""
    last = None
    for (name, _), row in zip(rungs, rows):
        if row["nc_reduced_z"] is None or row["nc_reduced_z"] < describes:
            break
        last = name
    return last


def run_reach(config: ReachConfig) -> tuple[dict, dict]:
    """Runs every rung for every activation and seed.

    **Returns:**

    `(data, summary)`: `data` holds `steps` and, per curve, an array `(rungs, activations, seeds,
    saves)`: `nc_zhat_z` (Theorem 1 on the Transformer), `nc_reduced_z` (the reduced flow
    against training), `entropy_train` (over the frequency bags) and `entropy_sequences_train`;
    `summary` holds the rungs, the activations, `table` (one row per rung and activation: means
    over seeds) and `reach` (per activation, the last rung up to which the reduced flow's final NC
    with training stays at or above `config.describes` on average, in ladder order).
    """
    rungs = config.rungs()
    curves = {name: [] for name in ("nc_zhat_z", "nc_reduced_z", "entropy_train", "entropy_sequences_train")}
    rows, steps = [], None
    for name, rung in rungs:
        per_activation = {key: [] for key in curves}
        for activation in config.activations:
            run = config.config(rung, activation)
            results = run_compare(run)
            steps = results.steps
            members = results.members
            per_activation["nc_zhat_z"].append(members.train.theorem1.nc_zhat_z)
            per_activation["nc_reduced_z"].append(members.reduced.agreement.nc_z)
            per_activation["entropy_train"].append(members.train.entropy)
            per_activation["entropy_sequences_train"].append(members.probes.entropy_sequences)
            summary = results.summary()
            parted = [step for step in summary["parted_step_reduced"] if step is not None]
            rows.append({
                "rung": name, "activation": activation,
                "nc_zhat_z": _mean(summary["nc_zhat_z"]),
                "nc_zhat_z_min": float(np.mean(np.min(members.train.theorem1.nc_zhat_z, axis=1))),
                "nc_reduced_z": _mean(summary["nc_reduced_z"]),
                "parted_step_reduced": float(np.median(parted)) if parted else None,
                "seeds_parted": len(parted),
                "entropy_min": _mean(summary["entropy_train_min"]),
                "entropy_min_step": _mean(summary["entropy_train_min_step"]),
                "entropy_end": _mean(summary["entropy_train"]),
                "entropy_rebound": _mean(summary["entropy_train_rebound"]),
                "entropy_sequences_end": _mean(summary["entropy_sequences_train"]),
                "attention_rate": _mean(summary["attention_rate"]),
            })
        for key in curves:
            curves[key].append(per_activation[key])
    reach = {activation: _reach(rungs, [row for row in rows if row["activation"] == activation], config.describes)
             for activation in config.activations}
    data = {"steps": np.asarray(steps), **{key: np.asarray(value) for key, value in curves.items()}}
    return data, {"rungs": [name for name, _ in rungs], "activations": list(config.activations), "table": rows,
                  "reach": reach, "describes": config.describes, "agreement": AGREEMENT, "seeds": config.seeds}
