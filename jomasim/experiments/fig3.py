"""Fig. 3: with a linear activation the most salient token wins and V becomes low-rank (§3.3, §3.5).

The §3.5 block (softmax attention, linear MLP, Gaussian-bump token frequencies, T = 0.5) is trained
with SGD at learning rate 0.1 for 2000 steps. Recorded: V = U_Cᵀ W at the start and the end, the
first four components of v_0 (column 0 of V) over time, the singular values of V over time, and,
overlaid, the closed form (J18–J19) V(t) = diag(s(t)) Δ of the same data's salience Δ = E[x gᵀ]
(exact for exp attention from V(0) = 0 with Δ held fixed, so a guide, not a fit, for softmax).
The claims checked: hidden node 0 (the plotted v_0) ends dominated by its most salient token
argmax_l Δ_l0; every node's winning token is one of the few tokens with the largest salience
across nodes ‖Δ_l:‖ (the rows that blow up first in J18–J19); and σ₁(V) ≫ σ₂(V) (low rank).
"""

import dataclasses
from typing import NamedTuple

import numpy as np

from .._errors import at_least, check_positive, check_seed
from .._settings import Settings, setting
from ..data import VARIANTS
from ..theory import matrix_solution
from .block import run_members, training_status
from .compare import CompareConfig

SALIENT_TOKENS = 3
"""How many tokens, by largest ‖Δ_l:‖, count as "the most salient" across nodes."""


@dataclasses.dataclass(frozen=True)
class Fig3Config(Settings):
    """Settings of Fig. 3; the defaults are the paper's (`draw_figure_2_3.py`, seed chosen here):
    the block with softmax attention and a linear MLP, SGD on W and z at one learning rate."""

    seed: int = setting(0, "seed of the data and the initial weights", check=check_seed)
    variant: str = setting("gaussian", "token-frequency model (gaussian: Fig. 3)", choices=VARIANTS)
    lr: float = setting(0.1, "SGD learning rate of W and z", check=check_positive)
    steps: int = setting(2000, "SGD steps", check=at_least(1))
    save_every: int = setting(10, "steps between saves", check=at_least(1))
    temperature: float = setting(0.5, "temperature T of the softmax attention", check=check_positive)

    def check_fields(self):
        self.setting  # noqa: B018 (building the block's setting checks the fields together)

    @property
    def setting(self) -> CompareConfig:
        """The block (softmax attention, linear activation, one seed) and its SGD schedule."""
        return CompareConfig(attention="softmax", activation="linear", temperature=self.temperature, seeds=1,
                             first_seed=self.seed, variant=self.variant, eta_w=self.lr, eta_z=self.lr,
                             steps=self.steps, save_every=self.save_every)


class Fig3Result(NamedTuple):
    """What Fig. 3 measured on one trained block.

    **Fields:**

    - `seed`: the seed of the data and the initial weights.
    - `steps`: the save steps `(n,)`.
    - `V`: V = U_Cᵀ W at every save `(n, M_c, K)`.
    - `singular_values`: of V at every save `(n, min(M_c, K))` (NaN where V is not finite).
    - `delta`: the data's salience Δ = E[x gᵀ] `(M_c, K)`.
    - `closed_form_V0`: the closed form (J18–J19) of components 0..3 of v_0 `(n, 4)`, NaN past
      their blow-up.
    - `entropy`: the attention entropy at every save `(n,)`.
    - `X`: the block's inputs.
    - `status_train`: how the training ended, in words.
    """

    seed: int
    steps: np.ndarray
    V: np.ndarray
    singular_values: np.ndarray
    delta: np.ndarray
    closed_form_V0: np.ndarray
    entropy: np.ndarray
    X: np.ndarray
    status_train: str

    @property
    def winner(self) -> np.ndarray:
        """Each hidden node's winning token at the end, argmax_l V_lk."""
        return np.argmax(self.V[-1], axis=0)

    @property
    def predicted_winner(self) -> np.ndarray:
        """Each hidden node's most salient token, argmax_l Δ_lk."""
        return np.argmax(self.delta, axis=0)

    @property
    def salient_tokens(self) -> np.ndarray:
        """The `SALIENT_TOKENS` tokens with the largest salience across nodes ‖Δ_l:‖."""
        return np.argsort(-np.linalg.norm(self.delta, axis=1))[:SALIENT_TOKENS]

    @property
    def sigma_ratio(self) -> float:
        """σ₁(V) / σ₂(V) at the end."""
        return float(self.singular_values[-1, 0] / self.singular_values[-1, 1])

    def arrays(self) -> dict[str, np.ndarray]:
        """`steps`, `V`, `singular_values`, `delta`, `closed_form_V0`, `entropy`, `X`."""
        return {"steps": self.steps, "V": self.V, "singular_values": self.singular_values, "delta": self.delta,
                "closed_form_V0": self.closed_form_V0, "entropy": self.entropy, "X": self.X}

    def summary(self) -> dict:
        """The winners (`winner`, `predicted_winner`, the fraction of nodes where they agree
        `winner_matches`, `salient_tokens`, the fraction of nodes won by one of them
        `winner_in_salient`), `sigma1`, `sigma2`, `sigma_ratio` at the end, `v0_final` (the four
        plotted components), `entropy_initial`, `entropy_final`, `status_train`."""
        winner, predicted, salient = self.winner, self.predicted_winner, self.salient_tokens
        return {
            "seed": self.seed,
            "winner": winner.tolist(),
            "predicted_winner": predicted.tolist(),
            "winner_matches": float(np.mean(winner == predicted)),
            "salient_tokens": salient.tolist(),
            "winner_in_salient": float(np.mean(np.isin(winner, salient))),
            "sigma1": float(self.singular_values[-1, 0]),
            "sigma2": float(self.singular_values[-1, 1]),
            "sigma_ratio": self.sigma_ratio,
            "v0_final": self.V[-1, :4, 0].tolist(),
            "entropy_initial": float(self.entropy[0]),
            "entropy_final": float(self.entropy[-1]),
            "status_train": self.status_train,
        }


def run_fig3(config: Fig3Config) -> Fig3Result:
    """Trains the block and measures V.

    **Returns:**

    The `Fig3Result`.
    """
    setting = config.setting
    setting.check_memory("train")
    save_steps = setting.save_steps
    results = run_members(setting, setting.members(config.lr, config.lr), config.steps, save_steps, "train")
    trained = results.members.train
    V = trained.V[0]
    delta = results.members.delta[0]
    kappa = 1.0 / (2.0 * config.temperature)
    closed = np.asarray(matrix_solution(config.lr * save_steps, delta, kappa=kappa))[:, :4, 0]
    # a save whose V is not finite (training diverged) has no singular values: NaN, a failure in the summary
    finite = np.all(np.isfinite(V), axis=(1, 2))
    singular_values = np.full((len(V), min(V.shape[1:])), np.nan)
    singular_values[finite] = np.linalg.svd(V[finite], compute_uv=False)
    return Fig3Result(seed=config.seed, steps=save_steps, V=V, singular_values=singular_values, delta=delta,
                      closed_form_V0=np.where(np.isfinite(closed), closed, np.nan), entropy=trained.entropy[0],
                      X=results.members.X[0], status_train=training_status(results.members.training.diverged_at[0]))
