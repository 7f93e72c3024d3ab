"""Theory against training on the §3.5 block: the `jomasim compare` job.

For every seed the JoMA block (a Flax NNX model) is trained with full-batch SGD at rates
(η_w, η_z), vmapped over seeds in one compiled `lax.scan`, while Diffrax integrates the joint
gradient flow and the reduced JoMA flow from the same data and initial state. Time is measured in
units of η_w: the flows run with rates (1, η_z/η_w) and step k of training sits at t = η_w·k.
At every saved step the job measures

1. Theorem 1 on the trained model: NC(ẑ(V_k), z_k), NC(ẑ₁, z_k), NC(ẑ₂, z_k) and the residual;
2. theory against training: z and V of the joint and of the reduced flow against z_k and V_k;
3. the attention entropy of all three.
"""

import dataclasses
import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .._errors import OutOfRangeError, check_integer, check_positive
from ..comparison import agreement_curves, final_values, last_reached_index, logits_and_weights, theorem1_curves
from ..metrics import mean_attention_entropy
from ..models import JoMABlock
from ..theory import JointFlow, ReducedFlow
from ..train import OptimizerSpec, make_optimizer, train
from .block_theory import BlockSetting, integrate_block_theory


@dataclasses.dataclass(frozen=True)
class CompareConfig(BlockSetting):
    """Settings of a comparison. Defaults are the paper's Fig. 2 setting: SGD with
    η_w = η_z = 0.1 for 2000 steps, parameters saved every 20 steps."""

    eta_w: float = 0.1
    eta_z: float = 0.1
    steps: int = 2000
    save_every: int = 20

    def __post_init__(self):
        super().__post_init__()
        check_positive("eta_w", self.eta_w)
        check_positive("eta_z", self.eta_z)
        check_integer("steps", self.steps, least=1)
        check_integer("save_every", self.save_every, least=1)
        if self.save_every > self.steps:
            raise OutOfRangeError(f"save_every={self.save_every} is not allowed; it must be <= steps={self.steps}")

    @property
    def save_steps(self) -> np.ndarray:
        """The training steps kept: 0, save_every, 2·save_every, …, and always the last step."""
        return np.unique(np.append(np.arange(0, self.steps + 1, self.save_every), self.steps))


class BlockTraining(NamedTuple):
    """Trained parameters at the save steps and the loss before every step, per seed."""

    W: jax.Array
    z: jax.Array
    losses: jax.Array


@eqx.filter_jit
def train_blocks(joint: JointFlow, y0, eta_w: jax.Array, eta_z: jax.Array, steps: int, save_steps: jax.Array) -> BlockTraining:
    """Full-batch SGD on one `JoMABlock` per member of a batch, vmapped in one compiled call.

    **Arguments:**

    - `joint`: a batch of `JointFlow`s (leading axis B) giving each member's data, attention,
      activation and temperature; its rates are not used.
    - `y0`: the batch of initial states (W(0), z(0)), `(B, d, K)` and `(B, M_c)`.
    - `eta_w`, `eta_z`: SGD learning rates, scalars or `(B,)`.
    - `steps`: number of SGD steps (static).
    - `save_steps`: increasing steps in [0, steps] to keep.

    **Returns:**

    A `BlockTraining` with `W` `(B, n_save, d, K)`, `z` `(B, n_save, M_c)`, `losses` `(B, steps)`.
    """

    def one(flow, W0, z0, rate_w, rate_z):
        model = JoMABlock(flow.data, W0, z0, attention=flow.attention_kind, activation=flow.activation,
                          temperature=flow.temperature)
        saved, losses = train(
            model,
            lambda block, _: block(),
            lambda labels: make_optimizer(OptimizerSpec("sgd"), labels, rate_w, rate_z),
            steps=steps,
            save_steps=save_steps,
        )
        return BlockTraining(saved["W"][...], saved["z"][...], losses)

    batch = y0[0].shape[0]
    rates = jnp.broadcast_to(eta_w, (batch,)), jnp.broadcast_to(eta_z, (batch,))
    return jax.vmap(one)(joint, *y0, *rates)


def _measures(joint: JointFlow, y0, reduced: ReducedFlow, W_train, z_train, joint_ys, reduced_ys) -> dict[str, jax.Array]:
    """All curves over the save steps of one seed (vmapped over seeds by the caller)."""
    invariant = joint.invariant(y0)
    V_train = jax.vmap(joint.projected_weights)((W_train, z_train))
    z_ode, V_ode = logits_and_weights(joint, joint_ys)
    z_reduced, V_reduced = logits_and_weights(reduced, reduced_ys)
    on_ode = theorem1_curves(invariant, V_ode, z_ode)
    return {
        "z_train": z_train,
        "V_train": V_train,
        "z_ode": z_ode,
        "V_ode": V_ode,
        "z_reduced": z_reduced,
        "V_reduced": V_reduced,
        **theorem1_curves(invariant, V_train, z_train),
        **{f"ode_{name}": curve for name, curve in on_ode.items() if name.startswith("nc_")},
        **agreement_curves("ode", z_ode, V_ode, z_train, V_train),
        **agreement_curves("reduced", z_reduced, V_reduced, z_train, V_train),
        "entropy_train": jax.vmap(lambda z: mean_attention_entropy(joint.attention((None, z))))(z_train),
        "loss_train": jax.vmap(joint.loss)(W_train, z_train),
    }


def run_compare(config: CompareConfig, progress: bool = False) -> dict:
    """Trains the block and integrates both flows for every seed, and measures them step by step.

    **Arguments:**

    - `config`: a `CompareConfig`.
    - `progress`: show a progress bar over the stages (theory, training, measures).

    **Returns:**

    A dict of NumPy arrays with a leading seed axis (except `ts`, `steps`, `seeds`): the trained,
    joint-flow and reduced-flow `z_*`, `V_*`; the curves `nc_*`, `relerr_*`, `invariant_residual`;
    `entropy_train`, `entropy_ode`, `entropy_reduced`; `loss_train` at the saves and `losses` before
    every step; the flows' `status_*` and
    `t_final_*`, the first non-finite training step `train_diverged_at` (−1 if none), `X`, and the
    `messages_*` lists.
    """
    save_steps = config.save_steps
    ts = config.eta_w * save_steps
    bar = tqdm(total=3, desc="compare", unit="stage", disable=not progress)
    bar.set_postfix_str("joint + reduced ODE (Diffrax)")
    theory = integrate_block_theory(config, 1.0, config.eta_z / config.eta_w, jnp.asarray(ts))
    bar.update()
    bar.set_postfix_str(f"training {config.seeds} seeds x {config.steps} steps")
    trained = train_blocks(theory.joint, theory.y0, jnp.asarray(config.eta_w), jnp.asarray(config.eta_z),
                           config.steps, jnp.asarray(save_steps))
    bar.update()
    bar.set_postfix_str("measures")
    measures = jax.vmap(_measures)(theory.joint, theory.y0, theory.reduced, trained.W, trained.z,
                                   theory.joint_trajectory.ys, theory.reduced_trajectory.ys)
    results = {name: np.asarray(value) for name, value in measures.items()}
    bar.update()
    bar.close()
    losses = np.asarray(trained.losses)
    finite = np.isfinite(losses)
    results.update(
        ts=np.asarray(ts),
        steps=save_steps,
        seeds=np.asarray(config.seed_list),
        X=np.asarray(theory.joint.data.X),
        losses=losses,
        train_diverged_at=np.where(finite.all(axis=1), -1, np.argmin(finite, axis=1)),
        entropy_ode=np.asarray(theory.joint_trajectory.entropy()),
        entropy_reduced=np.asarray(theory.reduced_trajectory.entropy()),
        status_ode=np.asarray(theory.joint_trajectory.status),
        status_reduced=np.asarray(theory.reduced_trajectory.status),
        t_final_ode=np.asarray(theory.joint_trajectory.t_final),
        t_final_reduced=np.asarray(theory.reduced_trajectory.t_final),
        messages_ode=theory.joint_trajectory.messages(),
        messages_reduced=theory.reduced_trajectory.messages(),
    )
    return results


def last_common_index(results: dict) -> np.ndarray:
    """Per seed, the last save index that training and both flows reached with finite values."""
    last = last_reached_index(results["ts"], np.minimum(results["t_final_ode"], results["t_final_reduced"]))
    diverged = results["train_diverged_at"]
    before_divergence = np.sum(results["steps"][None, :] < diverged[:, None], axis=1) - 1
    return np.where(diverged >= 0, np.minimum(last, before_divergence), last)


def summarize_compare(results: dict, wall_seconds: float) -> dict:
    """The headline numbers, one value per seed at the last step all three sides reached.

    **Returns:**

    A dict with `seeds`, `step` (the step read), every `nc_*` / `relerr_*` curve's value,
    `invariant_residual_max`, the final entropies, the final loss, what happened to each side
    (`status_train`, `status_ode`, `status_reduced`) and `wall_seconds` (the whole job).
    """
    last = last_common_index(results)
    rows = np.arange(len(last))
    diverged = results["train_diverged_at"]
    return {
        "seeds": results["seeds"].tolist(),
        "step": results["steps"][last].tolist(),
        **final_values(results, last),
        "invariant_residual_max": np.abs(results["invariant_residual"][rows, last]).max(axis=-1).tolist(),
        "entropy_initial": results["entropy_train"][:, 0].tolist(),
        "entropy_train_final": results["entropy_train"][rows, last].tolist(),
        "entropy_ode_final": results["entropy_ode"][rows, last].tolist(),
        "entropy_reduced_final": results["entropy_reduced"][rows, last].tolist(),
        "loss_final": results["loss_train"][rows, last].tolist(),
        "status_train": ["ok" if step < 0 else f"non-finite loss at step {step}" for step in diverged],
        "status_ode": results["messages_ode"],
        "status_reduced": results["messages_reduced"],
        "wall_seconds": wall_seconds,
    }


def compare(config: CompareConfig, progress: bool = False) -> tuple[dict, dict]:
    """`run_compare` and `summarize_compare` together, timed.

    **Returns:**

    `(results, summary)`.
    """
    started = time.perf_counter()
    results = run_compare(config, progress)
    return results, summarize_compare(results, time.perf_counter() - started)
