"""Sweeps of the §3.5 block: theory, training or both at every point of a grid (`jomasim sweep`).

Axes: the learning rates `eta_w`, `eta_z` (or their ratio `eta_ratio` = η_z/η_w), `temperature`,
`saliency`, `init_scale` and `seed` (numbers: one compile for all their values), and `attention`,
`activation`, `variant` (code paths: one compile each). The setting `model` chooses the trained
model (`COMPARE_MODELS`); with `transformer` its switches (`TRANSFORMER_AXES`) are axes too, each
value its own compile. Each point is one member of `jomasim.experiments.block.measure_member`,
reduced to its numbers (`results.scalars`).
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax

from .._compile import block_compiler_options
from .._errors import InvalidChoiceError, OutOfRangeError, check_choice
from .._settings import build, flat_fields
from ..activation import ACTIVATIONS
from ..attention import ATTENTIONS
from ..data import VARIANTS
from ..sweep import SweepTask
from ..theory import Status, status_messages
from .block import MODES, MemberNumbers, Mode, measure_member, training_status
from .compare import CompareConfig
from .results import OUTPUT_NAMES, scalars
from .transformer import COMPARE_MODELS

STATIC_AXES = {"attention": tuple(ATTENTIONS), "activation": tuple(ACTIVATIONS), "variant": VARIANTS}
NUMERIC_AXES = ("eta_w", "eta_z", "eta_ratio", "temperature", "saliency", "init_scale", "seed")
DERIVED_AXES = {"eta_ratio": (float, "eta_z / eta_w (instead of eta_z)"), "seed": (int, "the seed of the point")}
"""Axes that are no field of the config: their type and what they set."""
TRANSFORMER_AXES = ("sequence_length", "attention_params", "embeddings", "value", "norm", "head", "optimizer")
"""The Transformer's switches, axes of a sweep with `model = "transformer"`."""
SWEEP_PER_POINT = ("seeds", "first_seed")
"""Config fields that a sweep sets per point (one seed each, from the `seed` axis), not as settings."""


@dataclasses.dataclass(frozen=True)
class BlockSweep(SweepTask):
    """The §3.5 block at every point of a grid.

    **Fields:**

    - `base`: the fixed settings (sizes, steps, solver) and the defaults of every axis; its
      `seeds` is ignored (`seed` is an axis, default `base.first_seed`). Its class is the model
      (a `CompareConfig`: the block; a `TransformerCompareConfig`: the Transformer).
    - `mode`: `"theory"` (joint + reduced flow; the joint flow is the reference), `"train"`
      (SGD only) or `"both"` (training is the reference).
    """

    base: CompareConfig = CompareConfig(seeds=1)
    mode: str = "both"

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "BlockSweep":
        """The sweep of a grid's fixed settings: `mode` (default `"both"`), `model` (default
        `"block"`, one of `COMPARE_MODELS`) and any field the model's config offers
        (`flat_fields`) but `SWEEP_PER_POINT`; a setting of an axis's field is that axis's default.

        **Raises:**

        `InvalidChoiceError` naming a setting that is not one, and the config's own errors.
        """
        settings = dict(settings)
        mode = settings.pop("mode", "both")
        model = settings.pop("model", "block")
        check_choice("model", model, COMPARE_MODELS)
        config = COMPARE_MODELS[model]
        fixed = sorted(set(flat_fields(config)) - set(SWEEP_PER_POINT))
        unknown = sorted(set(settings) - set(fixed))
        if unknown:
            raise InvalidChoiceError(f"unknown sweep settings {unknown} for model {model!r}; allowed: {[*fixed, 'mode', 'model']}")
        return cls(build(config, {**settings, "seeds": 1}), mode)

    @functools.cached_property
    def static_axes(self) -> dict[str, tuple]:
        """The code-path axes and their values: `STATIC_AXES`, and the Transformer's switches."""
        if self.base.model.name == "block":
            return STATIC_AXES
        fields = flat_fields(type(self.base))
        switches = {name: tuple(fields[name].choices) if fields[name].choices is not None else None
                    for name in TRANSFORMER_AXES}
        return {**STATIC_AXES, **switches}

    @property
    def axes(self) -> dict[str, tuple | None]:
        return {**self.static_axes, **{name: None for name in NUMERIC_AXES}}

    @property
    def axis_types(self) -> dict[str, type]:
        """The type of one value of each axis: the config field's, or `DERIVED_AXES`'."""
        fields = flat_fields(type(self.base))
        return {name: DERIVED_AXES[name][0] if name in DERIVED_AXES else fields[name].type for name in self.axes}

    @property
    def axis_help(self) -> dict[str, str]:
        """What each axis sets and its default, for `--help`."""
        fields = flat_fields(type(self.base))
        return {name: (f"{DERIVED_AXES[name][1]} (default {self.base.first_seed if name == 'seed' else 'from eta_z'})"
                       if name in DERIVED_AXES else f"{fields[name].help} (default {getattr(self.base, name)})")
                for name in self.axes}

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
            **{name: values.get(name, getattr(self.base, name)) for name in self.static_axes},
            eta_w=eta_w,
            eta_z=eta_z,
            temperature=values.get("temperature", self.base.temperature),
            saliency=values.get("saliency", self.base.saliency),
            init_scale=values.get("init_scale", self.base.init_scale),
        )
        seed = values.get("seed", self.base.first_seed)
        dataclasses.replace(self.base, **fields, seeds=1, first_seed=seed)  # checks every value
        return {**fields, "eta_ratio": eta_z / eta_w, "seed": int(seed)}

    def static_key(self, point: dict[str, Any]) -> tuple:
        return tuple(point[name] for name in self.static_axes)

    def point_function(self, key: tuple) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
        setting = dataclasses.replace(self.base, **dict(zip(self.static_axes, key)), seeds=1)
        save_steps = self.base.save_steps

        def one_point(numbers: dict[str, jax.Array]) -> dict[str, jax.Array]:
            member = MemberNumbers(**numbers)
            return scalars(measure_member(setting, member, self.base.steps, save_steps, self.mode), save_steps)

        return one_point

    def shardable(self) -> bool:
        # a blow-up event's root find closure-converts its condition, and inside shard_map the
        # converted function's example and actual arguments differ in sharding (an
        # optimistix/equinox limitation), so such a chunk is partitioned by jit instead
        return self.base.solve.blowup is None

    def point_bytes(self) -> int:
        return self.base.member_bytes(self.base.steps, self.base.save_count, self.mode)

    def compiler_options(self, platform: str) -> dict:
        return block_compiler_options(platform)

    def failures(self, row: dict[str, Any]) -> str:
        problems = []
        for run in Mode(self.mode).runs:
            out = OUTPUT_NAMES[run]
            if run == "train":
                if row["diverged_at_train"] >= 0:
                    problems.append(f"{out}: {training_status(row['diverged_at_train'])}")
            elif row[f"status_{out}"] not in (Status.OK, Status.BLOWUP):
                problems.append(f"{out}: {status_messages(row[f'status_{out}'], row[f't_final_{out}'], clock='step')[0]}")
        return "; ".join(problems) or "ok"

    def describe(self) -> dict[str, Any]:
        described = {"experiment": "block", "mode": self.mode, "base": dataclasses.asdict(self.base)}
        # a block sweep's description is as before models existed, so its folders still resume
        return described if self.base.model.name == "block" else {**described, "model": self.base.model.name}
