"""The §3.5 block, member by member: theory, training and every measure, for any batch of members.

A *member* is one seed with its own numbers (learning rates, temperature, saliency, initial scale).
`measure_member` does everything for one member in traceable JAX: it builds the data and the
initial state, trains the `JoMABlock` with SGD (`train` and `both` modes), integrates the joint
gradient flow and the reduced JoMA flow (`theory` and `both` modes), and measures them at the saved
steps. `run_members` vmaps it over a batch in one compiled call; `simulate`, `compare` and the
sweeps are batches of members.

The flows run at the member's rates (η_w, η_z) on the clock of the saves, so with SGD steps as the
clock step k of training sits at flow time k (SGD is the explicit-Euler discretisation of the joint
flow with step 1) and a member's curves line up with its training whatever its rates. A trained
model may give the flows another clock (a Transformer trained with Adam: Adam's, `Readout.clock`).
"""

import abc
import dataclasses
import enum
import functools
import time
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._compile import block_compiler_options
from .._errors import OutOfRangeError, at_least, check_choice, check_nonnegative, check_positive, check_seed
from .._progress import working
from .._settings import setting
from ..activation import ACTIVATIONS
from ..assumptions import leak_curves
from ..attention import ATTENTIONS
from ..block import block_hidden, output_loss
from ..comparison import agreement, logits_and_weights, theorem1_curves
from ..data import EMBEDDINGS, VARIANTS, BlockSizes, check_data_options, make_token_data
from ..metrics import mean_attention_entropy
from ..models import JoMABlock
from ..theory import (
    JointFlow,
    PreconditionedReducedFlow,
    ReducedFlow,
    SolverOptions,
    TrackedMeanFlow,
    check_precision,
    solve,
    status_messages,
)
from ..train import OptimizerSpec, first_nonfinite, make_optimizer, train
from .results import OUTPUT_NAMES, MemberResult, RunResult, SolveOutcome, Training, TransformerProbes, flatten, scalars


class Mode(enum.StrEnum):
    """Which runs a batch of members makes: `theory`, the joint, the reduced and the tracked flow;
    `train`, training only; `both`, all four. A mode is its name (`Mode("both") == "both"`, as the
    command line and a sweep's files write it) and carries its runs and what it does in words.

    **Attributes:**

    - `runs`: the runs it makes (`results.RUNS` names); the first is the reference the others are
      compared with.
    - `work`: what its compiled call does, in words (its progress line).
    """

    THEORY = "theory", ("joint", "reduced", "tracked"), "integrating the flows"
    TRAIN = "train", ("train",), "training"
    BOTH = "both", ("train", "joint", "reduced", "tracked"), "training and integrating the flows"

    def __new__(cls, name: str, runs: tuple[str, ...], work: str):
        member = str.__new__(cls, name)
        member._value_ = name
        member.runs = runs
        member.work = work
        return member


MODES = tuple(mode.value for mode in Mode)
"""The modes' names."""


def training_status(diverged_at: int) -> str:
    """What happened to a training run, in words, from its first non-finite step (−1 if none)."""
    return "ok" if diverged_at < 0 else f"non-finite loss at step {int(diverged_at)}"


class AbstractTrainedModel(eqx.Module):
    """The model trained against the flows, a strategy of the setting: how a member starts, how it
    is trained and read as JoMA's quantities, and how much memory a member holds. Its methods take
    the setting, whose fields size and switch it; the final models are `TrainedBlock`,
    `FixedGradientBlock` and the one-layer Transformer
    (`jomasim.experiments.transformer.TrainedTransformer`).

    **Class attributes:**

    - `name`: what `config.json`, the command line (`--model`) and the sweeps call it.
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def start(self, setting: "BlockSetting", numbers: "MemberNumbers") -> tuple[JointFlow, tuple]:
        """A member's joint flow (its data, rates `numbers.eta_w`, `numbers.eta_z`) and the state
        (W(0), z(0)) that the flows and the trained model start from. Traceable."""

    @abc.abstractmethod
    def train_and_read(self, setting: "BlockSetting", joint: JointFlow, y0, numbers: "MemberNumbers", steps: int,
                       save_steps) -> "Readout":
        """The member's model trained from `y0` (`start`) for `steps` steps and read at
        `save_steps`. Traceable."""

    @abc.abstractmethod
    def member_bytes(self, setting: "BlockSetting", steps: int, saves: int, mode: str) -> int:
        """An estimate of the memory one member holds at once, in bytes."""


def block_member_bytes(setting: "BlockSetting", steps: int, saves: int, mode: str) -> int:
    """The block's part of a member's memory: every run of the mode keeps its states (W, `d × K`),
    V (`M_c × K`) and z at every save, Theorem 1's ẑ and residual, and training its loss at every
    step; doubled for the copies made between the compiled call and the NumPy results."""
    d, K, M = setting.dim, setting.n_classes, setting.n_tokens
    per_save = len(Mode(mode).runs) * (d * K + M * K + M) + 2 * M
    return 2 * 8 * (saves * per_save + (steps if mode != Mode.THEORY else 0))


class AbstractBlockModel(AbstractTrainedModel):
    """The `JoMABlock` itself, started from the setting's data and state and trained by full-batch
    SGD at the member's rates on an `objective`."""

    @abc.abstractmethod
    def objective(self, joint: JointFlow, y0) -> Callable[[JoMABlock], jax.Array]:
        """What training minimises, as a function of the `JoMABlock`. Traceable."""

    def start(self, setting, numbers):
        joint, y0, _ = build_member(setting, numbers)
        return joint, y0

    def train_and_read(self, setting, joint, y0, numbers, steps, save_steps):
        trained = train_member(joint, y0, numbers.eta_w, numbers.eta_z, steps, save_steps, self.objective(joint, y0))
        return Readout(trained.W, trained.z, jax.vmap(joint.projected_weights)((trained.W, trained.z)), trained.losses,
                       jax.vmap(joint.loss)(trained.W, trained.z))

    def member_bytes(self, setting, steps, saves, mode):
        return block_member_bytes(setting, steps, saves, mode)


class TrainedBlock(AbstractBlockModel):
    """The block trained on its loss: SGD on it is the joint flow's Euler scheme."""

    name: ClassVar[str] = "block"

    def objective(self, joint, y0):
        return JoMABlock.__call__


class FixedGradientBlock(AbstractBlockModel):
    """The block trained under JoMA's Assumption 1 made exact: the back-propagated gradient
    g = ∂L/∂φ(h) of every class and hidden node is held at its value at initialisation (as if the
    layers above were frozen), so training minimises Σ g(0) ∘ φ(h) instead of the cross-entropy.
    The nonlinearity still acts through φ'(h); only the loss's own saturation is gone."""

    name: ClassVar[str] = "block-fixed-gradient"

    def objective(self, joint, y0):
        phi = joint.activation.fn
        hidden = block_hidden(*y0, joint.data, attention=joint.attention_form, temperature=joint.temperature)
        signal = jax.lax.stop_gradient(jax.grad(output_loss)(phi(hidden)))
        return lambda block: jnp.sum(signal * phi(block.hidden()))


@dataclasses.dataclass(frozen=True)
class BlockSetting(BlockSizes):
    """What every §3.5 block experiment shares: the data model, the block, the seeds and the solver.

    Defaults are the paper's Fig. 2 setting: Gaussian X, 10 distinct + 10 common tokens, K = 20
    classes, d = 30, T = 0.5, softmax attention, linear activation, 8 seeds. The flows are
    integrated as `solve` says (a `SolverOptions`, one trajectory per member); its `dt0` is on the
    clock of the saves: with SGD steps as the clock, `dt0 = 1` with `"euler"` is one SGD step, and
    the joint flow then *is* the training run. Each field is checked where it is declared.
    """

    model: ClassVar[AbstractTrainedModel] = TrainedBlock()
    """The model trained against the flows (its strategy)."""

    scale_closure: ClassVar[bool] = False
    """Whether the preconditioned flow gets the scale path of a LayerNorm (a Transformer's option)."""

    attention: str = setting("softmax", "attention form", choices=ATTENTIONS)
    activation: str = setting("linear", "MLP activation", choices=ACTIVATIONS)
    temperature: float = setting(0.5, "attention temperature T (logits are divided by it)", check=check_positive)
    seeds: int = setting(8, "number of seeds", check=at_least(1))
    first_seed: int = setting(0, "the first seed (seeds first_seed, first_seed + 1, ...)", check=check_seed)
    variant: str = setting("gaussian", "token-frequency model", choices=VARIANTS)
    saliency: float = setting(1.0, "factor on the distinct tokens' frequencies", check=check_nonnegative)
    embedding: str = setting("identity", "contextual token embeddings", choices=EMBEDDINGS)
    init_scale: float = setting(0.01, "standard deviation of W(0) and z(0)", check=check_positive)
    solve: SolverOptions = setting(SolverOptions(), "how the flows are integrated",
                                   expose=("solver", "rtol", "atol", "dt0", "max_steps", "blowup"))

    def check_fields(self):
        check_seed("first_seed + seeds - 1", self.first_seed + self.seeds - 1)
        check_data_options(**self.sizes(), variant=self.variant, saliency=self.saliency, embedding=self.embedding)
        if self.solve.batch is not None:
            raise OutOfRangeError(f"batch={self.solve.batch!r} is not allowed here; each member is one solve (None)")

    @property
    def seed_list(self) -> list[int]:
        """The seeds run, one per member."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def member_bytes(self, steps: int, saves: int, mode: str) -> int:
        """An estimate of the memory one member holds at once, in bytes (its model's,
        `AbstractTrainedModel.member_bytes`)."""
        return self.model.member_bytes(self, steps, saves, mode)

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
        **setting.sizes(),
        variant=setting.variant,
        saliency=numbers.saliency,
        embedding=setting.embedding,
    )
    joint = JointFlow(data, attention=setting.attention, activation=setting.activation,
                      eta_w=numbers.eta_w, eta_z=numbers.eta_z, temperature=numbers.temperature)
    y0 = joint.initial_state(init_key, numbers.init_scale)
    return joint, y0, ReducedFlow.from_joint(joint, y0)


class Readout(NamedTuple):
    """A trained model read as JoMA's quantities at the saves (`AbstractTrainedModel.train_and_read`).

    **Fields:**

    - `W`: the block weights `(n, d, K)` the model stands for (the state Theorem 1's leak is
      measured at); `z`: the logits `(n, M_c)`; `V`: the projected weights `(n, M_c, K)`.
    - `losses`: the training loss before every step `(steps,)`; `loss`: the loss at the saves `(n,)`.
    - `probes`: a Transformer's own probes (`results.TransformerProbes`), `None` for the block.
    - `clock`: the flows' time at each save, `(n,)`: Adam's clock of the MLP's weights with Adam;
      `None` for SGD, whose step is the flows' unit of time (the saves themselves).
    """

    W: jax.Array
    z: jax.Array
    V: jax.Array
    losses: jax.Array
    loss: jax.Array
    probes: TransformerProbes | None = None
    clock: jax.Array | None = None


class BlockTraining(NamedTuple):
    """Trained parameters at the save steps and the loss before every step (batched or not)."""

    W: jax.Array
    z: jax.Array
    losses: jax.Array


def train_member(joint: JointFlow, y0, eta_w, eta_z, steps: int, save_steps,
                 objective: Callable[[JoMABlock], jax.Array] = JoMABlock.__call__) -> BlockTraining:
    """Full-batch SGD on the `JoMABlock` of `joint` (its data, attention, activation, temperature;
    not its rates) from `y0` with learning rates (η_w, η_z). Traceable.

    **Arguments:**

    - `joint`, `y0`, `eta_w`, `eta_z`, `steps`, `save_steps`: the block, its start, the rates and
      the steps trained and kept.
    - `objective`: what is minimised, a function of the block (default its loss).

    **Returns:**

    A `BlockTraining` with `W` `(n_save, d, K)`, `z` `(n_save, M_c)`, `losses` `(steps,)`.
    """
    model = JoMABlock(joint.data, *y0, attention=joint.attention_form, activation=joint.activation,
                      temperature=joint.temperature)
    saved, losses = train(
        model,
        lambda block, _: objective(block),
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


class _Made(NamedTuple):
    """One run of a member as `measure_member` makes it: its logits `(n, M_c)` and projected weights
    `(n, M_c, K)` at the saves, which saves it reached with finite values, its block state (W, z)
    where Theorem 1's leak may be measured on it (training, the joint flow; else `None`), and how
    its solve ended (a flow's; `None` for training)."""

    z: jax.Array
    V: jax.Array
    reached: jax.Array
    state: tuple | None = None
    outcome: SolveOutcome | None = None


def measure_member(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str) -> MemberResult:
    """Everything one member's runs give, at the saved steps. Traceable (vmap it over members).

    **Arguments:**

    - `setting`: the shared setting.
    - `numbers`: this member's numbers (scalars).
    - `steps`: SGD steps (static; unused in `theory` mode).
    - `save_steps`: the steps measured, `(n,)` (any non-negative reals in `theory` mode): the
      times at which the flows, at the member's rates, are saved (unless the trained model gives
      its own clock, `Readout.clock`).
    - `mode`: a `Mode` (or its name: `"theory"`, `"train"` or `"both"`).

    **Returns:**

    A `MemberResult`: the runs of the mode (training, the joint flow, the reduced flow), each
    against the reference run (training when there is one, else the joint flow), Theorem 1 along
    the reference and the joint flow, the reference's leak curves, and the last save every run
    reached with finite values.
    """
    save_steps = jnp.asarray(save_steps, dtype=jnp.result_type(float))
    joint, y0 = setting.model.start(setting, numbers)
    reduced = ReducedFlow.from_joint(joint, y0)
    invariant = joint.invariant(y0)
    made, training, probes = {}, None, None
    flow_times = save_steps
    if mode != Mode.THEORY:
        trained = setting.model.train_and_read(setting, joint, y0, numbers, steps, save_steps.astype(int))
        diverged = first_nonfinite(trained.losses)
        made["train"] = _Made(trained.z, trained.V, (diverged < 0) | (save_steps < diverged), (trained.W, trained.z))
        training = Training(trained.losses, trained.loss, diverged)
        probes = trained.probes
        if trained.clock is not None:
            flow_times = trained.clock
    # the optimizer's own η_z (the flows' may carry a measured rate factor), which a measured
    # preconditioner P(t) multiplies; the flows' η_w (a Transformer's may carry LayerNorm's gain)
    optimizer_invariant = eqx.tree_at(lambda inv: inv.lr_ratio, invariant, numbers.eta_z / joint.eta_w)
    preconditioner = weight_preconditioner = weights = None
    if probes is not None:
        preconditioner, weight_preconditioner = probes.preconditioner, probes.weight_preconditioner
    if weight_preconditioner is not None:
        # Theorem 1's weights D_W on V = U_Cᵀ W (exact for coordinate embeddings, the identity)
        weights = 1 / jnp.einsum("dm,ndk->nmk", joint.data.U_c**2, weight_preconditioner)
    if mode != Mode.TRAIN:
        flows = [("joint", joint, y0), ("reduced", reduced, y0[0]), ("tracked", TrackedMeanFlow.from_joint(joint), y0)]
        if preconditioner is not None:
            at_optimizer_rates = eqx.tree_at(lambda flow: flow.eta_z, joint, jnp.asarray(numbers.eta_z, joint.eta_z.dtype))
            flows.append(("preconditioned", PreconditionedReducedFlow.from_joint(
                at_optimizer_rates, preconditioner, flow_times, weight_preconditioner, setting.scale_closure), y0))
        for name, flow, start in flows:
            trajectory = solve(flow, start, flow_times, setting.solve)
            # the time reached, on the saves' clock (the flows' own is Adam's with Adam)
            t_final = jnp.interp(trajectory.t_final, flow_times, save_steps)
            made[name] = _Made(*logits_and_weights(flow, trajectory.ys), trajectory.reached,
                               trajectory.ys if name == "joint" else None,
                               SolveOutcome(trajectory.status, t_final, trajectory.num_steps, trajectory.num_rejected_steps))
    reference = made[Mode(mode).runs[0]]
    # every reached mask is a prefix of the saves
    last = jnp.sum(jnp.all(jnp.stack([run.reached for run in made.values()]), axis=0)) - 1
    runs = {}
    for name, run in made.items():
        runs[name] = RunResult(
            run.z, run.V, jax.vmap(lambda logits: mean_attention_entropy(joint.attention((None, logits))))(run.z),
            outcome=run.outcome,
            agreement=None if run is reference else agreement(run.z, run.V, reference.z, reference.V, last),
            theorem1=theorem1_curves(invariant, run.V, run.z, joint.data.X, preconditioner if name == "train" else None,
                                     optimizer_invariant, weights) if run is reference or name == "joint" else None,
        )
    leaks = leak_curves(joint, invariant, *reference.state)
    drift_at_parting = None
    if "reduced" in runs and leaks.bbar_drift is not None:
        parted = runs["reduced"].agreement.parted_index
        drift_at_parting = jnp.where(parted >= 0, leaks.bbar_drift[parted], jnp.nan)
    return MemberResult(runs.get("train"), runs.get("joint"), runs.get("reduced"), runs.get("tracked"), training, leaks, last,
                        drift_at_parting, joint.data.X, joint.data.salience(), probes, runs.get("preconditioned"))


def _measure_members(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str):
    """`measure_member` and its `results.scalars`, vmapped over the members."""
    def one(member):
        result = measure_member(setting, member, steps, save_steps, mode)
        return result, scalars(result, save_steps)

    return jax.vmap(one)(numbers)


@functools.cache
def _compiled_measure_members(platform: str):
    """`_measure_members` jitted with the block programs' compiler options for `platform`."""
    return eqx.filter_jit(_measure_members, compiler_options=block_compiler_options(platform))


class BlockResults(NamedTuple):
    """A batch of members' results, as NumPy arrays with a leading member axis.

    **Fields:**

    - `members`: the `MemberResult` of every member.
    - `scalars`: `results.scalars` of every member, `(B,)` each.
    - `steps`: the save steps (or times) `(n,)`; `seeds`: `(B,)`.
    - `clock`: what `steps` count (`"step"`, or `"t"` for times), for the messages.
    - `compile_seconds`: the seconds spent tracing and compiling the batch's program in this call
      (near 0 when this process had compiled it before).
    """

    members: MemberResult
    scalars: dict[str, np.ndarray]
    steps: np.ndarray
    seeds: np.ndarray
    clock: str
    compile_seconds: float = 0.0

    def messages(self, run: str) -> list[str]:
        """What happened to each member's flow `run` (`"joint"` or `"reduced"`), in words."""
        outcome = getattr(self.members, run).outcome
        return status_messages(outcome.status, outcome.t_final, self.clock)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every curve under its output name (`results.flatten`), with `steps` and `seeds`: the
        contents of `data.npz`."""
        return {**flatten(self.members), "steps": self.steps, "seeds": self.seeds}

    def summary(self) -> dict:
        """The headline numbers per member, one list entry each: `seeds` and `results.scalars` (read
        at the last save every run reached), with each flow's `status_RUN` in words (`ok` or what
        went wrong), `status_train` (`ok` or where training diverged), every NaN (an event that
        did not happen: no parting, no blow-up) as None, and `compile_seconds`."""
        summary = {"seeds": self.seeds.tolist(),
                   **{name: [None if isinstance(value, float) and np.isnan(value) else value
                             for value in values.tolist()] for name, values in sorted(self.scalars.items())}}
        for name, run in self.members.runs().items():
            if run.outcome is not None:
                summary[f"status_{OUTPUT_NAMES[name]}"] = self.messages(name)
        if self.members.training is not None:
            summary["status_train"] = [training_status(step) for step in self.members.training.diverged_at]
        return {**summary, "compile_seconds": self.compile_seconds}


def run_members(setting: BlockSetting, numbers: MemberNumbers, steps: int, save_steps, mode: str,
                clock: str = "step") -> BlockResults:
    """`measure_member` for a batch of members in one compiled, vmapped call.

    **Arguments:**

    - `setting`, `steps`, `save_steps`, `mode`: as in `measure_member`, shared by the batch.
    - `numbers`: a `MemberNumbers` of arrays `(B,)`.
    - `clock`: what the save steps count (`"step"`, or `"t"` for times), for the messages.

    **Returns:**

    The `BlockResults`.
    """
    check_choice("mode", mode, MODES)
    mode = Mode(mode)
    if mode != Mode.TRAIN:
        check_precision(setting.solve)
    arguments = (setting, MemberNumbers(*map(np.asarray, numbers)), steps, np.asarray(save_steps), mode)
    # compiled ahead of the call, so that compiling is timed and shown apart from running (a program
    # compiled before in this process is found again at once)
    started = time.perf_counter()
    with working("compiling"):
        measure = _compiled_measure_members(jax.default_backend()).lower(*arguments).compile()
    compile_seconds = time.perf_counter() - started
    batch = len(np.atleast_1d(numbers.seed))
    with working(f"{mode.work} ({batch} member{'s' if batch != 1 else ''})"):
        members, numbers_of = jax.block_until_ready(measure(*arguments))
    as_numpy = functools.partial(jax.tree_util.tree_map, np.asarray)
    return BlockResults(as_numpy(members), as_numpy(numbers_of), np.asarray(save_steps), np.asarray(numbers.seed), clock,
                        compile_seconds)
