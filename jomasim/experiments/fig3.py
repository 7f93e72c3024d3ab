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


def run_fig3(config: Fig3Config) -> tuple[dict[str, np.ndarray], dict]:
    """Trains the block and measures V.

    **Returns:**

    `(data, summary)`. `data`: `steps`, `V` `(n, M_c, K)` at every save, `singular_values`
    `(n, min(M_c, K))`, `delta` (Δ), `closed_form_V0` `(n, 4)` (J18–J19 for components 0..3 of
    v_0, NaN past their blow-up), `entropy` `(n,)`, `X`. `summary`: `winner` and
    `predicted_winner` per hidden node (argmax_l V_lk at the end and argmax_l Δ_lk),
    `winner_matches` (fraction of nodes where they agree), `salient_tokens` (the `SALIENT_TOKENS`
    largest ‖Δ_l:‖), `winner_in_salient` (fraction of nodes whose winner is one of them), `sigma1`, `sigma2`, `sigma_ratio` at
    the end, `v0_final` (the four plotted components), `entropy_initial`, `entropy_final`.
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
    winner = np.argmax(V[-1], axis=0)
    predicted = np.argmax(delta, axis=0)
    salient = np.argsort(-np.linalg.norm(delta, axis=1))[:SALIENT_TOKENS]
    data = {
        "steps": save_steps,
        "V": V,
        "singular_values": singular_values,
        "delta": delta,
        "closed_form_V0": np.where(np.isfinite(closed), closed, np.nan),
        "entropy": trained.entropy[0],
        "X": results.members.X[0],
    }
    summary = {
        "seed": config.seed,
        "winner": winner.tolist(),
        "predicted_winner": predicted.tolist(),
        "winner_matches": float(np.mean(winner == predicted)),
        "salient_tokens": salient.tolist(),
        "winner_in_salient": float(np.mean(np.isin(winner, salient))),
        "sigma1": float(singular_values[-1, 0]),
        "sigma2": float(singular_values[-1, 1]),
        "sigma_ratio": float(singular_values[-1, 0] / singular_values[-1, 1]),
        "v0_final": V[-1, :4, 0].tolist(),
        "entropy_initial": float(data["entropy"][0]),
        "entropy_final": float(data["entropy"][-1]),
        "status_train": training_status(results.members.training.diverged_at[0]),
    }
    return data, summary
