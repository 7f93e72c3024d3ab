"""The §3.5 block, member by member: theory, training and every measure, for any batch of members.

A *member* is one seed with its own numbers (learning rates, temperature, saliency, initial scale).
`measure_member` does everything for one member in traceable JAX: it builds the data and the
initial state, trains the `JoMABlock` with SGD (`train` and `both` modes), integrates the joint
gradient flow and the reduced JoMA flow (`theory` and `both` modes), and measures them at the saved
steps. `run_members` vmaps it over a batch in one compiled call; `simulate`, `compare` and the
sweeps are batches of members.

The flows run at the member's rates (η_w, η_z) on the clock of the saves, so with SGD steps as the
clock step k of training sits at flow time k (SGD is the explicit-Euler discretisation of the joint
flow with step 1) and a member's curves line up with its training whatever its rates.
"""

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._compile import block_compiler_options
from .._errors import check_choice, check_integer, check_positive
from ..activation import ACTIVATIONS
from ..assumptions import LEAK_CURVES, leak_curves
from ..attention import ATTENTIONS
from ..comparison import agreement_curves, final_values, logits_and_weights, parting_index, theorem1_curves
from ..data import check_data_options, make_token_data
from ..metrics import mean_attention_entropy
from ..models import JoMABlock
from ..theory import JointFlow, ReducedFlow, SolverOptions, check_precision, solve, status_messages
from ..train import OptimizerSpec, first_nonfinite, make_optimizer, train

MODES = ("theory", "train", "both")
"""`theory`: the joint and the reduced flow; `train`: SGD only; `both`: all three."""


def sides_of(mode: str) -> tuple[str, ...]:
    """The runs a mode makes: `train` (SGD), `ode` (the joint flow), `reduced` (the JoMA flow)."""
    return {"theory": ("ode", "reduced"), "train": ("train",), "both": ("train", "ode", "reduced")}[mode]


def training_status(diverged_at: int) -> str:
    """What happened to a training run, in words, from its first non-finite step (−1 if none)."""
    return "ok" if diverged_at < 0 else f"non-finite loss at step {int(diverged_at)}"


def flow_sides(mode: str) -> tuple[str, ...]:
    """The flows a mode integrates (`ode`, `reduced`), if any."""
    return tuple(side for side in sides_of(mode) if side != "train")


def reference_of(mode: str) -> str:
    """The run the others are compared against: training when there is one, else the joint flow."""
    return sides_of(mode)[0]


@dataclasses.dataclass(frozen=True)
class BlockSetting:
    """What every §3.5 block experiment shares: the data model, the block, the seeds and the solver.

    Defaults are the paper's Fig. 2 setting: Gaussian X, 10 distinct + 10 common tokens, K = 20
    classes, d = 30, T = 0.5, softmax attention, linear activation, 8 seeds. `dt0` is the fixed
    step of `solver="euler"` (required there) and the first step of an adaptive solver (`None`:
    Diffrax picks one), on the clock of the saves: with SGD steps as the clock, `dt0 = 1` with
    `"euler"` is one SGD step, and the joint flow then *is* the training run. `blowup` stops a
    flow when a logit |z| reaches it (reported as a blow-up); `None` never stops.
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
    dt0: float | None = None
    max_steps: int = 65536
    blowup: float | None = None

    def __post_init__(self):
        check_choice("attention", self.attention, ATTENTIONS)
        check_choice("activation", self.activation, ACTIVATIONS)
        for name in ("temperature", "init_scale"):
            check_positive(name, getattr(self, name))
        check_integer("seeds", self.seeds, least=1)
        check_integer("first_seed", self.first_seed, least=0)
        check_data_options(n_distinct=self.n_distinct, n_common=self.n_common, n_classes=self.n_classes, dim=self.dim,
                           variant=self.variant, saliency=self.saliency, embedding=self.embedding)
        self.solver_options  # noqa: B018 (building the options checks them)

    @property
    def seed_list(self) -> list[int]:
        """The seeds run, one per member."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def solver_options(self) -> SolverOptions:
        """How the flows are integrated (one trajectory per member)."""
        return SolverOptions(self.solver, self.rtol, self.atol, self.dt0, self.max_steps, blowup=self.blowup)

    def members(self, eta_w: float, eta_z: float) -> "MemberNumbers":
        """One member per seed, all with this setting's numbers and the rates (η_w, η_z)."""
        seeds = np.asarray(self.seed_list)
        same = lambda value: np.full(len(seeds), value, dtype=float)  # noqa: E731
        return MemberNumbers(seeds, same(eta_w), same(eta_z), same(self.temperature), same(self.saliency),
                             same(self.init_scale))


class MemberNumbers(NamedTuple):
    """The numbers that may differ between members of one compiled batch: arrays with a leading
    member axis (scalars inside `measure_member`)."""

    seed: jax.Array
    eta_w: jax.Array
    eta_z: jax.Array
    temperature: jax.Array
    saliency: jax.Array
    init_scale: jax.Array


def build_member(setting: BlockSetting, numbers: MemberNumbers) -> tuple[JointFlow, tuple, ReducedFlow]:
    """A member's data, joint flow (rates `numbers.eta_w`, `numbers.eta_z`), initial state and
    reduced flow. Traceable.

    **Returns:**

    `(joint, (W0, z0), reduced)`.
    """
    data_key, init_key = jax.random.split(jax.random.key(numbers.seed))
    data = make_token_data(
        data_key,
        n_distinct=setting.n_distinct,
        n_common=setting.n_common,
        n_classes=setting.n_classes,
        dim=setting.dim,
        variant=setting.variant,
        saliency=numbers.saliency,
        embedding=setting.embedding,
    )
    joint = JointFlow(data, attention=setting.attention, activation=setting.activation,
                      eta_w=numbers.eta_w, eta_z=numbers.eta_z, temperature=numbers.temperature)
    y0 = joint.initial_state(init_key, numbers.init_scale)
    return joint, y0, ReducedFlow.from_joint(joint, y0)


class BlockTraining(NamedTuple):
    """Trained parameters at the save steps and the loss before every step (batched or not)."""

    W: jax.Array
    z: jax.Array
    losses: jax.Array


def train_member(joint: JointFlow, y0, eta_w, eta_z, steps: int, save_steps) -> BlockTraining:
    """Full-batch SGD on the `JoMABlock` of `joint` (its data, attention, activation, temperature;
    not its rates) from `y0` with learning rates (η_w, η_z). Traceable.

    **Returns:**

    A `BlockTraining` with `W` `(n_save, d, K)`, `z` `(n_save, M_c)`, `losses` `(steps,)`.
    """
    model = JoMABlock(joint.data, *y0, attention=joint.attention_form, activation=joint.activation,
                      temperature=joint.temperature)
    saved, losses = train(
        model,
        lambda block, _: block(),
        lambda labels: make_optimizer(OptimizerSpec("sgd"), labels, eta_w, eta_z),
        steps=steps,
        save_steps=save_steps,
    )
    return BlockTraining(saved["W"][...], saved["z"][...], losses)


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
    batch = y0[0].shape[0]
    rates = jnp.broadcast_to(eta_w, (batch,)), jnp.broadcast_to(eta_z, (batch,))
    return jax.vmap(lambda flow, W0, z0, rate_w, rate_z: train_member(flow, (W0, z0), rate_w, rate_z, steps, save_steps))(
        joint, *y0, *rates
    )


def measure_member(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str) -> dict[str, jax.Array]:
    """Everything one member's runs give, at the saved steps. Traceable (vmap it over members).

    **Arguments:**

    - `setting`: the shared setting.
    - `numbers`: this member's numbers (scalars).
    - `steps`: SGD steps (static; unused in `theory` mode).
    - `save_steps`: the steps measured, `(n,)` (any non-negative reals in `theory` mode): the
      times at which the flows, at the member's rates, are saved.
    - `mode`: `"theory"`, `"train"` or `"both"` (see `MODES`).

    **Returns:**

    Curves over the saves, for every run `side` of the mode (`train`, `ode`, `reduced`): `z_side`,
    `V_side`, `entropy_side`; the Theorem 1 curves of the reference run (`nc_zhat_z`, ...,
    `invariant_residual`, `z_hat`) and, in `both` mode, of the joint flow (`ode_nc_zhat_z`, ...);
    every other run against the reference (`nc_side_z`, `nc_side_V`, `relerr_side_z`); how fast
    the reference leaves Theorem 1's invariant and, for softmax attention, why
    (`jomasim.assumptions.leak_curves`: `invariant_leak`, `bbar_drift`, `leak_factorization`,
    `leak_bbar`). For flows:
    `status_side`, `t_final_side` (the step, or time, the flow reached), `num_steps_side`,
    `num_rejected_steps_side`; for training: `losses` (every step), `loss_train`,
    `train_diverged_at` (first non-finite loss, −1 if none). `last_index`: the last save every run
    reached with finite values; `parted_index_side` for every other run: the save at which it parts
    from the reference (`comparison.parting_index`, −1 if never), and with softmax attention
    `bbar_drift_parted_reduced`: the reference's `bbar_drift` at the reduced flow's parting save
    (NaN if it never parts). `X`: the token frequencies;
    `delta`: the salience Δ = E[x gᵀ].
    """
    save_steps = jnp.asarray(save_steps, dtype=jnp.result_type(float))
    joint, y0, reduced = build_member(setting, numbers)
    invariant = joint.invariant(y0)
    runs, reached, curves = {}, [], {"X": joint.data.X, "delta": joint.data.salience()}
    joint_states = {}
    if mode != "theory":
        trained = train_member(joint, y0, numbers.eta_w, numbers.eta_z, steps, save_steps.astype(int))
        joint_states["train"] = trained.W, trained.z
        runs["train"] = trained.z, jax.vmap(joint.projected_weights)(joint_states["train"])
        diverged = first_nonfinite(trained.losses)
        reached.append((diverged < 0) | (save_steps < diverged))
        curves.update(losses=trained.losses, loss_train=jax.vmap(joint.loss)(trained.W, trained.z),
                      train_diverged_at=diverged)
    if mode != "train":
        for side, flow, start in (("ode", joint, y0), ("reduced", reduced, y0[0])):
            trajectory = solve(flow, start, save_steps, setting.solver_options)
            runs[side] = logits_and_weights(flow, trajectory.ys)
            if side == "ode":
                joint_states[side] = trajectory.ys
            reached.append(trajectory.reached)
            curves.update({f"status_{side}": trajectory.status, f"t_final_{side}": trajectory.t_final,
                           f"num_steps_{side}": trajectory.num_steps,
                           f"num_rejected_steps_{side}": trajectory.num_rejected_steps})
    reference = reference_of(mode)
    z_ref, V_ref = runs[reference]
    curves.update(theorem1_curves(invariant, V_ref, z_ref))
    curves.update(leak_curves(joint, invariant, *joint_states[reference]))
    if mode == "both":
        z_ode, V_ode = runs["ode"]
        curves.update({f"ode_{k}": v for k, v in theorem1_curves(invariant, V_ode, z_ode).items() if k.startswith("nc_")})
    for side, (z, V) in runs.items():
        curves.update({f"z_{side}": z, f"V_{side}": V,
                       f"entropy_{side}": jax.vmap(lambda logits: mean_attention_entropy(joint.attention((None, logits))))(z)})
        if side != reference:
            curves.update(agreement_curves(side, z, V, z_ref, V_ref))
    # every reached mask is a prefix of the saves
    curves["last_index"] = jnp.sum(jnp.all(jnp.stack(reached), axis=0)) - 1
    for side in runs:
        if side != reference:
            curves[f"parted_index_{side}"] = parting_index(curves[f"nc_{side}_z"], curves["last_index"])
    if "reduced" in runs and "bbar_drift" in curves:
        parted = curves["parted_index_reduced"]
        curves["bbar_drift_parted_reduced"] = jnp.where(parted >= 0, curves["bbar_drift"][parted], jnp.nan)
    return curves


def _measure_members(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str):
    return jax.vmap(lambda member: measure_member(setting, member, steps, save_steps, mode))(numbers)


@functools.cache
def _compiled_measure_members(platform: str):
    """`_measure_members` jitted with the block programs' compiler options for `platform`."""
    return eqx.filter_jit(_measure_members, compiler_options=block_compiler_options(platform))


def run_members(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str,
                clock: str = "step") -> dict:
    """`measure_member` for a batch of members in one compiled, vmapped call.

    **Arguments:**

    - `setting`, `steps`, `save_steps`, `mode`: as in `measure_member`, shared by the batch.
    - `numbers`: a `MemberNumbers` of arrays `(B,)`.
    - `clock`: what the save steps count (`"step"`, or `"t"` for times), for the messages.

    **Returns:**

    The curves as NumPy arrays with a leading member axis, plus `steps` (the save steps),
    `seeds`, and `messages_side` (what happened to each flow, in words).
    """
    check_choice("mode", mode, MODES)
    if mode != "train":
        check_precision(setting.solver_options)
    measure = _compiled_measure_members(jax.default_backend())
    measures = measure(setting, MemberNumbers(*map(np.asarray, numbers)), steps, np.asarray(save_steps), mode)
    results = {name: np.asarray(value) for name, value in measures.items()}
    results.update(steps=np.asarray(save_steps), seeds=np.asarray(numbers.seed))
    for side in flow_sides(mode):
        results[f"messages_{side}"] = status_messages(results[f"status_{side}"], results[f"t_final_{side}"], clock)
    return results


def summarize_members(results: dict, mode: str) -> dict:
    """The headline numbers per member at the last save every run reached (`last_index`).

    **Returns:**

    A dict of lists, one value per member: `seeds`, `step` (the save step read), every `nc_*` /
    `relerr_*` curve's value, `invariant_residual_max`, `entropy_initial`, `entropy_side_final`
    for each run, `loss_final` (when trained), and `status_side` for each run (`ok` or what
    went wrong), and for each run but the reference `parted_side`: the save step at which it parts
    from the reference (`parted_index_side`), None where the two agree throughout; the reference's
    `name_final` for each of `jomasim.assumptions.LEAK_CURVES` it has and, with softmax attention,
    `bbar_drift_parted_reduced` (`measure_member`'s; None where the reduced flow does not part).
    """
    last = results["last_index"]
    rows = np.arange(len(last))
    reference = reference_of(mode)
    summary = {
        "seeds": results["seeds"].tolist(),
        "step": results["steps"][last].tolist(),
        **final_values(results, last),
        "invariant_residual_max": np.abs(results["invariant_residual"][rows, last]).max(axis=-1).tolist(),
        "entropy_initial": results[f"entropy_{reference}"][:, 0].tolist(),
    }
    summary.update({f"{name}_final": results[name][rows, last].tolist() for name in LEAK_CURVES if name in results})
    for side in sides_of(mode):
        summary[f"entropy_{side}_final"] = results[f"entropy_{side}"][rows, last].tolist()
        if side != reference:
            parted = results[f"parted_index_{side}"]
            summary[f"parted_{side}"] = [results["steps"][index].item() if index >= 0 else None for index in parted]
    if "bbar_drift_parted_reduced" in results:
        summary["bbar_drift_parted_reduced"] = [None if np.isnan(drift) else drift
                                                for drift in results["bbar_drift_parted_reduced"].tolist()]
    if mode != "theory":
        diverged = results["train_diverged_at"]
        summary["loss_final"] = results["loss_train"][rows, last].tolist()
        summary["status_train"] = [training_status(step) for step in diverged]
    for side in flow_sides(mode):
        summary[f"status_{side}"] = results[f"messages_{side}"]
    return summary
