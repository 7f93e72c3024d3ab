"""optax training of Flax NNX models as one jitted `lax.scan`, vmappable over configurations.

A model is split once into its graph definition, trainable parameters and other state; the step
loop is a pure function of arrays, so `jax.vmap` trains many configurations (seeds, learning rates,
data) in one compiled call. Parameters are grouped: the attention group (the model's
`attention_parameters`, e.g. the logits z or W_Q, W_K) gets the rate η_z, everything else η_w.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._errors import OutOfRangeError, check_choice, check_integer, concrete

OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """The static part of an optimiser (what changes the compiled code).

    **Fields:**

    - `name`: `"sgd"` or `"adam"`.
    - `momentum`: SGD momentum (`None` for plain SGD).
    - `clip_norm`: clip gradients to this global norm (`None`: no clipping).
    """

    name: str = "sgd"
    momentum: float | None = None
    clip_norm: float | None = None

    def __post_init__(self):
        check_choice("optimizer", self.name, OPTIMIZERS)
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise OutOfRangeError(f"momentum={self.momentum!r} is not allowed; it must lie in [0, 1)")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise OutOfRangeError(f"clip_norm={self.clip_norm!r} is not allowed; it must be > 0")


def parameter_groups(params, attention_names: tuple[str, ...]):
    """Labels every parameter `"z"` (its path passes through one of `attention_names`) or `"w"`."""

    def label(path, _):
        names = {getattr(key, "key", getattr(key, "name", None)) for key in path}
        return "z" if names & set(attention_names) else "w"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(spec: OptimizerSpec, labels, eta_w, eta_z, weight_decay=0.0) -> optax.GradientTransformation:
    """The optax optimiser: clipping, then per group coupled L2 weight decay and SGD / Adam.

    The numbers may be traced values (learning rates vmapped over configurations).

    **Arguments:**

    - `spec`: the static `OptimizerSpec`.
    - `labels`: `parameter_groups(params, ...)`.
    - `eta_w`, `eta_z`: learning rates of the two groups.
    - `weight_decay`: L2 coefficient added to the gradient (as `torch.optim`'s `weight_decay`).

    **Returns:**

    An `optax.GradientTransformation`.
    """

    def group(rate):
        if spec.name == "sgd":
            base = optax.sgd(rate, momentum=spec.momentum)
        else:
            base = optax.adam(rate, b2=ADAM_B2, eps=ADAM_EPS)
        return optax.chain(optax.add_decayed_weights(weight_decay), base)

    optimizer = optax.multi_transform({"w": group(eta_w), "z": group(eta_z)}, labels)
    if spec.clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(spec.clip_norm), optimizer)
    return optimizer


ADAM_B2 = 0.999
"""Adam's second-moment decay β₂ (optax's and PyTorch's default)."""

ADAM_EPS = 1e-8
"""Adam's ε (optax's and PyTorch's default)."""


def _first(tree, kind: type):
    """The first node of type `kind` in a pytree (an optax state)."""
    return next(node for node in jax.tree_util.tree_leaves(tree, is_leaf=lambda node: isinstance(node, kind))
                if isinstance(node, kind))


def _adam_state(state, group: str) -> optax.ScaleByAdamState:
    """Adam's moments of one parameter group (`"z"` or `"w"`) in a state of `make_optimizer`."""
    return _first(_first(state, optax.MultiTransformState).inner_states[group], optax.ScaleByAdamState)


def adam_inverse_scale(state, group: str, *, b2: float = ADAM_B2, eps: float = ADAM_EPS):
    """Adam's per-coordinate step per unit of gradient, 1/(√v̂ + ε) with v̂ the bias-corrected
    second moment: the diagonal D⁻¹ of Adam's flow θ̇ = −η D⁻¹ ∇L (JOMA_MATH §10.4), as a tree
    like the parameters (`optax.MaskedNode` outside `group`). Traceable.

    **Arguments:**

    - `state`: an optax state of `make_optimizer` with Adam (one save of `train(keep_state=True)`).
    - `group`: the parameter group, `"z"` or `"w"` (`parameter_groups`).
    - `b2`, `eps`: Adam's β₂ and ε the state was made with (`ADAM_B2`, `ADAM_EPS`).
    """
    adam = _adam_state(state, group)
    correction = jnp.where(adam.count > 0, 1 - b2**adam.count, 1.0)
    return jax.tree_util.tree_map(lambda second: 1 / (jnp.sqrt(second / correction) + eps), adam.nu)


def adam_step_factor(state, group: str) -> jax.Array:
    """How far one Adam step moves the parameters of `group` (`"z"` or `"w"`, `parameter_groups`)
    per unit of the gradient it follows, against 1 for an SGD step at the same rate:
    ‖m ∘ D⁻¹‖ / ‖m‖ over the group's coordinates, with m Adam's first moment (its bias
    correction cancels) and D⁻¹ `adam_inverse_scale` (JOMA_MATH §10.4: summed over the steps it is
    Adam's clock in SGD steps; coordinates that no gradient reaches do not count). NaN before the
    first step. Traceable.

    **Arguments:**

    - `state`: an optax state of `make_optimizer` with Adam (one save of `train(keep_state=True)`).
    - `group`: the parameter group.
    """
    adam = _adam_state(state, group)
    flat = lambda tree: jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)])  # noqa: E731
    first = flat(adam.mu)
    size = jnp.linalg.norm(first)
    factor = jnp.linalg.norm(first * flat(adam_inverse_scale(state, group))) / jnp.where(size > 0, size, 1.0)
    return jnp.where((adam.count > 0) & (size > 0), factor, jnp.nan)


def every_steps(steps: int, every: int) -> np.ndarray:
    """The steps kept by a run of `steps` steps saving every `every`: 0, every, 2·every, …, and always
    the last step."""
    return np.unique(np.append(np.arange(0, steps + 1, every), steps))


def first_nonfinite(losses: jax.Array) -> jax.Array:
    """The first step whose loss is not finite, −1 if every loss is. Traceable."""
    finite = jnp.isfinite(losses)
    return jnp.where(jnp.all(finite), -1, jnp.argmin(finite))


def with_params(model: nnx.Module, params) -> nnx.Module:
    """`model` with its parameters replaced by `params` (e.g. one saved step of `train`'s output)."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    return nnx.merge(graphdef, params, rest)


def check_save_steps(save_steps, steps: int) -> None:
    """Validates the steps at which parameters are kept: sorted, unique, within [0, steps].

    Traced `save_steps` (inside `jit`) have no values to check and pass.
    """
    check_integer("steps", steps, least=1)
    save = concrete(save_steps)
    if save is None:
        return
    if save.ndim != 1 or save.size == 0 or np.any(np.diff(save) <= 0) or save[0] < 0 or save[-1] > steps:
        raise OutOfRangeError(f"save_steps must be increasing integers in [0, steps={steps}]; got {save.tolist()}")


def train(
    model: nnx.Module,
    loss: Callable[[nnx.Module, object], jax.Array],
    optimizer_of: Callable[[object], optax.GradientTransformation],
    *,
    steps: int,
    save_steps: jax.Array,
    batches: Callable[[jax.Array], object] | None = None,
    keep_state: bool = False,
):
    """Trains `model` for `steps` optimiser steps in one `lax.scan`; a pure function of its arrays.

    **Arguments:**

    - `model`: the NNX model at initialisation.
    - `loss`: `loss(model, batch) -> scalar`.
    - `optimizer_of`: builds the optax optimiser from the parameter labels (`parameter_groups`).
    - `steps`: number of steps.
    - `save_steps`: increasing step numbers in [0, steps] at which to keep the parameters (step 0
      is the initialisation; step k is after k updates).
    - `batches`: `batches(step) -> batch` (a pure function of the step index), or `None` for
      full-batch models whose loss ignores the batch.
    - `keep_state`: also keep the optimiser's state at the save steps (Adam's moments).

    **Returns:**

    `(saved, losses)`: the parameter state stacked over `save_steps` (an `nnx.State` of arrays
    `(n_save, ...)`), and the loss before every step, `(steps,)`; with `keep_state`,
    `(saved, losses, states)` with the optax state stacked over `save_steps` likewise.
    """
    check_save_steps(save_steps, steps)
    save_steps = jnp.asarray(save_steps)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    optimizer = optimizer_of(parameter_groups(params, type(model).attention_parameters))
    opt_state = optimizer.init(params)

    def objective(params, batch):
        return loss(nnx.merge(graphdef, params, rest), batch)

    def kept(params, opt_state):
        return (params, opt_state) if keep_state else params

    saved = jax.tree_util.tree_map(lambda leaf: jnp.zeros((save_steps.shape[0],) + jnp.shape(leaf), jnp.result_type(leaf)),
                                   kept(params, opt_state))
    saved = _keep(saved, kept(params, opt_state), save_steps, 0)

    def step(carry, index):
        params, opt_state, saved = carry
        batch = None if batches is None else batches(index)
        value, grads = jax.value_and_grad(objective)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, _keep(saved, kept(params, opt_state), save_steps, index + 1)), value

    (_, _, saved), losses = jax.lax.scan(step, (params, opt_state, saved), jnp.arange(steps))
    return (saved[0], losses, saved[1]) if keep_state else (saved, losses)


def _keep(saved, params, save_steps: jax.Array, step: jax.Array):
    """Writes `params` into its slot of `saved` if `step` is a save step (one slot write per step)."""
    slot = jnp.clip(jnp.searchsorted(save_steps, step), 0, save_steps.shape[0] - 1)
    is_save = save_steps[slot] == step
    return jax.tree_util.tree_map(
        lambda buffer, leaf: jax.lax.dynamic_update_index_in_dim(buffer, jnp.where(is_save, leaf, buffer[slot]), slot, 0),
        saved,
        params,
    )
