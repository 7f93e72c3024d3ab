"""Sweeps of the §3.5 block: theory, training or both at every point of a grid (`jomasim sweep`).

Axes: the learning rates `eta_w`, `eta_z` (or their ratio `eta_ratio` = η_z/η_w), `temperature`,
`saliency`, `init_scale` and `seed` (numbers: one compile for all their values), and `attention`,
`activation`, `variant` (code paths: one compile each). Each point is one member of
`jomasim.experiments.block.measure_member`, reduced to the numbers that matter.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import block_compiler_options
from .._errors import OutOfRangeError, check_choice
from ..activation import ACTIVATIONS
from ..assumptions import LEAK_CURVES
from ..attention import ATTENTIONS
from ..data import VARIANTS
from ..sweep import SweepTask
from ..theory import Status, status_messages
from .block import MODES, MemberNumbers, flow_sides, measure_member, reference_of, sides_of, training_status
from .compare import CompareConfig

STATIC_AXES = {"attention": tuple(ATTENTIONS), "activation": tuple(ACTIVATIONS), "variant": VARIANTS}
NUMERIC_AXES = ("eta_w", "eta_z", "eta_ratio", "temperature", "saliency", "init_scale", "seed")
SNAP_TOLERANCE = 0.01
"""A run has snapped once its attention entropy stays within this fraction of the initial entropy
of its final value until the end (having left that band before)."""


def point_results(curves: dict[str, jax.Array], save_steps: np.ndarray, mode: str) -> dict[str, jax.Array]:
    """One point's curves (`measure_member`) reduced to scalars, read at the last save every run
    reached. Traceable.

    **Returns:**

    `last_step`; every `nc_*`, `ode_nc_*` and `relerr_*` value; `invariant_residual_max`;
    `entropy_initial`; per run `side`: `entropy_final_side`, `entropy_min_side` and the step of the
    minimum `entropy_min_step_side`, `entropy_rebound_side` (final − minimum: how far the
    attention became dense again), `snap_step_side` (from when the entropy stays within
    `SNAP_TOLERANCE`·initial of its final value; NaN if it never left that band or entered it only
    at the end); per run but the reference: `parted_step_side`, the step at which it parts from
    the reference (`measure_member`'s `parted_index_side`; NaN if they agree throughout) and, with
    softmax attention, `measure_member`'s `bbar_drift_parted_reduced`; the reference's
    `jomasim.assumptions.LEAK_CURVES` at the last save; per flow: `status_side`, `num_steps_side`,
    `num_rejected_steps_side`, `stop_step_side` (where it stopped) and `blowup_step_side` (NaN
    unless it blew up); with training: `train_diverged_at`, `loss_final`.
    """
    steps = jnp.asarray(save_steps, dtype=jnp.result_type(float))
    last = curves["last_index"]
    reached = jnp.arange(steps.shape[0]) <= last
    results = {"last_step": steps[last]}
    for name, curve in curves.items():
        if name.startswith(("nc_", "ode_nc_", "relerr_")) or name in LEAK_CURVES:
            results[name] = curve[last]
    results["invariant_residual_max"] = jnp.max(jnp.abs(curves["invariant_residual"][last]))
    results["entropy_initial"] = curves[f"entropy_{reference_of(mode)}"][0]
    for side in sides_of(mode):
        entropy = curves[f"entropy_{side}"]
        lowest = jnp.argmin(jnp.where(reached, entropy, jnp.inf))
        settled = (jnp.abs(entropy - entropy[last]) <= SNAP_TOLERANCE * entropy[0]) | ~reached
        snap = jnp.argmax(jnp.cumprod(settled[::-1])[::-1])
        results.update({
            f"entropy_final_{side}": entropy[last],
            f"entropy_min_{side}": entropy[lowest],
            f"entropy_min_step_{side}": steps[lowest],
            f"entropy_rebound_{side}": entropy[last] - entropy[lowest],
            f"snap_step_{side}": jnp.where((snap > 0) & (snap < last), steps[snap], jnp.nan),
        })
        if side != reference_of(mode):
            parted = curves[f"parted_index_{side}"]
            results[f"parted_step_{side}"] = jnp.where(parted >= 0, steps[parted], jnp.nan)
    if "bbar_drift_parted_reduced" in curves:
        results["bbar_drift_parted_reduced"] = curves["bbar_drift_parted_reduced"]
    for side in flow_sides(mode):
        status = curves[f"status_{side}"]
        stop = curves[f"t_final_{side}"]
        results.update({
            f"status_{side}": status,
            f"num_steps_{side}": curves[f"num_steps_{side}"],
            f"num_rejected_steps_{side}": curves[f"num_rejected_steps_{side}"],
            f"stop_step_{side}": stop,
            f"blowup_step_{side}": jnp.where(status == Status.BLOWUP, stop, jnp.nan),
        })
    if mode != "theory":
        results.update(train_diverged_at=curves["train_diverged_at"], loss_final=curves["loss_train"][last])
    return results


@dataclasses.dataclass(frozen=True)
class BlockSweep(SweepTask):
    """The §3.5 block at every point of a grid.

    **Fields:**

    - `base`: the fixed settings (sizes, steps, solver) and the defaults of every axis; its
      `seeds` is ignored (`seed` is an axis, default `base.first_seed`).
    - `mode`: `"theory"` (joint + reduced flow; the joint flow is the reference), `"train"`
      (SGD only) or `"both"` (training is the reference).
    """

    base: CompareConfig = CompareConfig(seeds=1)
    mode: str = "both"

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)

    @property
    def axes(self) -> dict[str, tuple | None]:
        return {**STATIC_AXES, **{name: None for name in NUMERIC_AXES}}

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(MemberNumbers._fields)

    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        if "eta_z" in values and "eta_ratio" in values:
            raise OutOfRangeError(f"a point gives both eta_z={values['eta_z']!r} and eta_ratio={values['eta_ratio']!r}; give one")
        for name in NUMERIC_AXES:
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise OutOfRangeError(f"{name}={value!r} is not allowed; it must be a number")
        eta_w = values.get("eta_w", self.base.eta_w)
        eta_z = values["eta_ratio"] * eta_w if "eta_ratio" in values else values.get("eta_z", self.base.eta_z)
        fields = dict(
            attention=values.get("attention", self.base.attention),
            activation=values.get("activation", self.base.activation),
            variant=values.get("variant", self.base.variant),
            eta_w=eta_w,
            eta_z=eta_z,
            temperature=values.get("temperature", self.base.temperature),
            saliency=values.get("saliency", self.base.saliency),
            init_scale=values.get("init_scale", self.base.init_scale),
        )
        seed = values.get("seed", self.base.first_seed)
        dataclasses.replace(self.base, **fields, seeds=1, first_seed=seed)  # checks every value
        return {**fields, "eta_ratio": eta_z / eta_w, "seed": int(seed)}

    def static_key(self, point: dict[str, Any]) -> tuple[str, str, str]:
        return point["attention"], point["activation"], point["variant"]

    def point_function(self, key: tuple[str, str, str]) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
        attention, activation, variant = key
        setting = dataclasses.replace(self.base, attention=attention, activation=activation, variant=variant, seeds=1)
        save_steps = self.base.save_steps

        def one_point(numbers: dict[str, jax.Array]) -> dict[str, jax.Array]:
            member = MemberNumbers(**numbers)
            curves = measure_member(setting, member, self.base.steps, save_steps, self.mode)
            return point_results(curves, save_steps, self.mode)

        return one_point

    def compiler_options(self, platform: str) -> dict:
        return block_compiler_options(platform)

    def failures(self, row: dict[str, Any]) -> str:
        problems = [
            f"{side}: {status_messages(row[f'status_{side}'], row[f'stop_step_{side}'], clock='step')[0]}"
            for side in flow_sides(self.mode)
            if row[f"status_{side}"] not in (Status.OK, Status.BLOWUP)
        ]
        if self.mode != "theory" and row["train_diverged_at"] >= 0:
            problems.append(f"train: {training_status(row['train_diverged_at'])}")
        return "; ".join(problems) or "ok"

    def describe(self) -> dict[str, Any]:
        return {"experiment": "block", "mode": self.mode, "base": dataclasses.asdict(self.base)}
