"""The theory side of the §3.5 block for several seeds: joint flow, reduced flow and Theorem 1.

For every seed the joint (W, z) gradient flow and the reduced JoMA flow (attention integrated
out) are integrated from the same initial state, vmapped over seeds in one solve each, and
compared: NC(ẑ, z), NC(ẑ₁, z), NC(ẑ₂, z) (the Fig. 2 curves), NC(z_reduced, z), and the attention
entropy on both sides.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import OutOfRangeError, check_choice, check_positive
from ..activation import ACTIVATIONS
from ..attention import ATTENTION_KINDS
from ..data import EMBEDDINGS, VARIANTS, make_token_data
from ..metrics import normalized_correlation
from ..theory import JointFlow, ReducedFlow, simulate


@dataclasses.dataclass(frozen=True)
class BlockTheoryConfig:
    """Settings of a block-theory run. Defaults are the paper's Fig. 2 setting (rates 1 up to
    t = 200 are SGD with learning rate 0.1 for 2000 steps)."""

    attention: str = "softmax"
    activation: str = "linear"
    eta_w: float = 1.0
    eta_z: float = 1.0
    temperature: float = 0.5
    t_end: float = 200.0
    saves: int = 101
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
        for name in ("eta_w", "eta_z", "temperature", "t_end", "init_scale", "rtol", "atol"):
            check_positive(name, getattr(self, name))
        for name, least in (("saves", 2), ("seeds", 1), ("first_seed", 0)):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < least:
                raise OutOfRangeError(f"{name}={getattr(self, name)!r} is not allowed; it must be an integer >= {least}")

    @property
    def seed_list(self) -> list[int]:
        """The seeds run, one per trajectory."""
        return list(range(self.first_seed, self.first_seed + self.seeds))


def _build(config: BlockTheoryConfig, seed: jax.Array):
    data_key, init_key = jax.random.split(jax.random.key(seed))
    data = make_token_data(
        data_key,
        n_distinct=config.n_distinct,
        n_common=config.n_common,
        n_classes=config.n_classes,
        dim=config.dim,
        variant=config.variant,
        saliency=config.saliency,
        embedding=config.embedding,
    )
    joint = JointFlow(
        data,
        attention=config.attention,
        activation=config.activation,
        eta_w=config.eta_w,
        eta_z=config.eta_z,
        temperature=config.temperature,
    )
    y0 = joint.initial_state(init_key, config.init_scale)
    return joint, y0, ReducedFlow.from_joint(joint, y0)


def _measures(joint: JointFlow, y0, reduced: ReducedFlow, joint_ys, reduced_ys) -> dict[str, jax.Array]:
    """Theorem 1 and theory-vs-theory numbers over time for one seed."""
    invariant = joint.invariant(y0)
    V = jax.vmap(joint.projected_weights)(joint_ys)
    z = joint_ys[1]
    z_hat = jax.vmap(invariant.predict)(V)
    z_reduced = jax.vmap(reduced.logits)(reduced_ys)
    out = {
        "z": z,
        "V": V,
        "z_hat": z_hat,
        "z_reduced": z_reduced,
        "invariant_residual": jax.vmap(invariant.residual)(V, z),
        "nc_zhat_z": normalized_correlation(z_hat, z),
        "nc_reduced_z": normalized_correlation(z_reduced, z),
    }
    if joint.attention_kind != "linear":
        zhat1, zhat2 = jax.vmap(invariant.terms)(V)
        out["nc_zhat1_z"] = normalized_correlation(zhat1, z)
        out["nc_zhat2_z"] = normalized_correlation(zhat2, z)
    return out


def run_block_theory(config: BlockTheoryConfig) -> dict[str, np.ndarray]:
    """Integrates the joint and the reduced flow for every seed and measures them.

    **Arguments:**

    - `config`: a `BlockTheoryConfig`.

    **Returns:**

    A dict of NumPy arrays with a leading seed axis (except `ts`, `seeds`): `z`, `V`, `z_hat`,
    `z_reduced`, `invariant_residual`, `nc_*` curves, `entropy_joint`, `entropy_reduced`,
    `status_joint`, `status_reduced`, `X` (the token frequencies), and `messages_*` lists.
    """
    seeds = jnp.asarray(config.seed_list)
    joint, y0, reduced = jax.vmap(lambda seed: _build(config, seed))(seeds)
    ts = jnp.linspace(0.0, config.t_end, config.saves)
    options = dict(solver=config.solver, rtol=config.rtol, atol=config.atol, batch="vmap")
    joint_traj = simulate(joint, y0, ts, **options)
    reduced_traj = simulate(reduced, y0[0], ts, **options)
    measures = jax.vmap(_measures)(joint, y0, reduced, joint_traj.ys, reduced_traj.ys)
    results = {name: np.asarray(value) for name, value in measures.items()}
    results.update(
        ts=np.asarray(ts),
        seeds=np.asarray(seeds),
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

    A dict of lists (one value per seed) for every `nc_*` curve and the entropies, plus the
    status messages of both flows.
    """
    reached = np.minimum(results["t_final_joint"], results["t_final_reduced"])
    last = np.sum(results["ts"][None, :] <= reached[:, None], axis=1) - 1
    rows = np.arange(len(last))
    summary = {"seeds": results["seeds"].tolist()}
    for name in sorted(key for key in results if key.startswith("nc_")):
        summary[name] = results[name][rows, last].tolist()
    summary["entropy_joint_initial"] = results["entropy_joint"][:, 0].tolist()
    summary["entropy_joint_final"] = results["entropy_joint"][rows, last].tolist()
    summary["entropy_reduced_final"] = results["entropy_reduced"][rows, last].tolist()
    summary["status_joint"] = results["messages_joint"]
    summary["status_reduced"] = results["messages_reduced"]
    return summary
