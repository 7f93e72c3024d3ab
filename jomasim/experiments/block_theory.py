"""The theory side of the §3.5 block for several seeds: joint flow, reduced flow and Theorem 1.

For every seed the joint (W, z) gradient flow and the reduced JoMA flow (attention integrated
out) are integrated from the same initial state, vmapped over seeds in one solve each, and
compared: NC(ẑ, z), NC(ẑ₁, z), NC(ẑ₂, z) (the Fig. 2 curves), NC(z_reduced, z), and the attention
entropy on both sides.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import check_choice, check_integer, check_positive
from ..activation import ACTIVATIONS
from ..attention import ATTENTION_KINDS
from ..data import EMBEDDINGS, VARIANTS, make_token_data
from ..comparison import agreement_curves, final_values, last_reached_index, logits_and_weights, theorem1_curves
from ..theory import JointFlow, ReducedFlow, Trajectory, simulate


@dataclasses.dataclass(frozen=True)
class BlockSetting:
    """What every §3.5 block experiment shares: the data model, the block, the seeds and the solver.

    Defaults are the paper's Fig. 2 setting: Gaussian X, 10 distinct + 10 common tokens, K = 20
    classes, d = 30, T = 0.5, softmax attention, linear activation, 8 seeds.
    """

    attention: str = "softmax"
    activation: str = "linear"
    temperature: float = 0.5
    seeds: int = 8
    first_seed: int = 0
    variant: str = "gaussian"
    saliency: float = 1.0
    n_distinct: int = 10
    n_common: int = 10
    n_classes: int = 20
    dim: int = 30
    embedding: str = "identity"
    init_scale: float = 0.01
    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-9

    def __post_init__(self):
        check_choice("attention", self.attention, ATTENTION_KINDS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("embedding", self.embedding, EMBEDDINGS)
        for name in ("temperature", "init_scale", "rtol", "atol"):
            check_positive(name, getattr(self, name))
        check_integer("seeds", self.seeds, least=1)
        check_integer("first_seed", self.first_seed, least=0)

    @property
    def seed_list(self) -> list[int]:
        """The seeds run, one per trajectory."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclasses.dataclass(frozen=True)
class BlockTheoryConfig(BlockSetting):
    """A theory-only run: the flows with rates (η_w, η_z) up to `t_end`, saved at `saves` times.
    Rates 1 up to t = 200 are SGD with learning rate 0.1 for 2000 steps."""

    eta_w: float = 1.0
    eta_z: float = 1.0
    t_end: float = 200.0
    saves: int = 101

    def __post_init__(self):
        super().__post_init__()
        for name in ("eta_w", "eta_z", "t_end"):
            check_positive(name, getattr(self, name))
        check_integer("saves", self.saves, least=2)


class BlockTheory(NamedTuple):
    """The theory side of a block experiment, batched over seeds (leading axis of every array)."""

    joint: JointFlow
    y0: tuple[jax.Array, jax.Array]
    reduced: ReducedFlow
    joint_trajectory: Trajectory
    reduced_trajectory: Trajectory


def _build(setting: BlockSetting, seed: jax.Array, eta_w, eta_z):
    data_key, init_key = jax.random.split(jax.random.key(seed))
    data = make_token_data(
        data_key,
        n_distinct=setting.n_distinct,
        n_common=setting.n_common,
        n_classes=setting.n_classes,
        dim=setting.dim,
        variant=setting.variant,
        saliency=setting.saliency,
        embedding=setting.embedding,
    )
    joint = JointFlow(
        data,
        attention=setting.attention,
        activation=setting.activation,
        eta_w=eta_w,
        eta_z=eta_z,
        temperature=setting.temperature,
    )
    y0 = joint.initial_state(init_key, setting.init_scale)
    return joint, y0, ReducedFlow.from_joint(joint, y0)


def integrate_block_theory(setting: BlockSetting, eta_w: float, eta_z: float, ts: jax.Array) -> BlockTheory:
    """Builds every seed's data and initial state and integrates the joint and the reduced flow.

    **Arguments:**

    - `setting`: the data, block, seeds and solver.
    - `eta_w`, `eta_z`: the flow rates.
    - `ts`: save times, `(n,)`, starting at 0.

    **Returns:**

    A `BlockTheory`; both flows are solved in one vmapped call each.
    """
    seeds = jnp.asarray(setting.seed_list)
    joint, y0, reduced = jax.vmap(lambda seed: _build(setting, seed, eta_w, eta_z))(seeds)
    options = dict(solver=setting.solver, rtol=setting.rtol, atol=setting.atol, batch="vmap")
    return BlockTheory(joint, y0, reduced, simulate(joint, y0, ts, **options), simulate(reduced, y0[0], ts, **options))


def _measures(joint: JointFlow, y0, reduced: ReducedFlow, joint_ys, reduced_ys) -> dict[str, jax.Array]:
    """Theorem 1 on the joint flow, and the reduced flow against the joint flow, for one seed."""
    z, V = logits_and_weights(joint, joint_ys)
    z_reduced, V_reduced = logits_and_weights(reduced, reduced_ys)
    return {
        "z": z,
        "V": V,
        "z_reduced": z_reduced,
        **theorem1_curves(joint.invariant(y0), V, z),
        **agreement_curves("reduced", z_reduced, V_reduced, z, V),
    }


def run_block_theory(config: BlockTheoryConfig) -> dict[str, np.ndarray]:
    """Integrates the joint and the reduced flow for every seed and measures them.

    **Arguments:**

    - `config`: a `BlockTheoryConfig`.

    **Returns:**

    A dict of NumPy arrays with a leading seed axis (except `ts`, `seeds`): `z`, `V`, `z_hat`,
    `z_reduced`, `invariant_residual`, `nc_*` and `relerr_*` curves, `entropy_joint`, `entropy_reduced`,
    `status_joint`, `status_reduced`, `X` (the token frequencies), and `messages_*` lists.
    """
    ts = jnp.linspace(0.0, config.t_end, config.saves)
    joint, y0, reduced, joint_traj, reduced_traj = integrate_block_theory(config, config.eta_w, config.eta_z, ts)
    measures = jax.vmap(_measures)(joint, y0, reduced, joint_traj.ys, reduced_traj.ys)
    results = {name: np.asarray(value) for name, value in measures.items()}
    results.update(
        ts=np.asarray(ts),
        seeds=np.asarray(config.seed_list),
        X=np.asarray(joint.data.X),
        entropy_joint=np.asarray(joint_traj.entropy()),
        entropy_reduced=np.asarray(reduced_traj.entropy()),
        status_joint=np.asarray(joint_traj.status),
        status_reduced=np.asarray(reduced_traj.status),
        t_final_joint=np.asarray(joint_traj.t_final),
        t_final_reduced=np.asarray(reduced_traj.t_final),
    )
    results["messages_joint"] = joint_traj.messages()
    results["messages_reduced"] = reduced_traj.messages()
    return results


def summarize(results: dict) -> dict:
    """The headline numbers per seed at the last save time both flows reached.

    **Returns:**

    A dict of lists (one value per seed) for every `nc_*` / `relerr_*` curve and the entropies,
    plus the status messages of both flows.
    """
    last = last_reached_index(results["ts"], np.minimum(results["t_final_joint"], results["t_final_reduced"]))
    rows = np.arange(len(last))
    return {
        "seeds": results["seeds"].tolist(),
        **final_values(results, last),
        "entropy_joint_initial": results["entropy_joint"][:, 0].tolist(),
        "entropy_joint_final": results["entropy_joint"][rows, last].tolist(),
        "entropy_reduced_final": results["entropy_reduced"][rows, last].tolist(),
        "status_joint": results["messages_joint"],
        "status_reduced": results["messages_reduced"],
    }
