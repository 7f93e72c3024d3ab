"""Theory against training on the §3.5 block: the `jomasim compare` job.

For every seed the JoMA block (a Flax NNX model) is trained with full-batch SGD at rates
(η_w, η_z) while Diffrax integrates the joint gradient flow and the reduced JoMA flow from the
same data and initial state, all seeds in one compiled, vmapped call
(`jomasim.experiments.block.measure_member`). The flows run at the training's rates with SGD steps as
their clock, so step k of training sits at flow time k. At every saved step the job measures

1. Theorem 1 on the trained model: NC(ẑ(V_k), z_k), NC(ẑ₁, z_k), NC(ẑ₂, z_k) and the residual;
2. theory against training: z and V of the joint and of the reduced flow against z_k and V_k;
3. the attention entropy of all three.
"""

import dataclasses
from typing import ClassVar

import numpy as np

from .._errors import OutOfRangeError, at_least, check_positive
from .._memory import check_fits
from .._settings import setting
from ..train import every_steps
from .block import BlockResults, BlockSetting, run_members


@dataclasses.dataclass(frozen=True)
class CompareConfig(BlockSetting):
    """Settings of a comparison. Defaults are the paper's Fig. 2 setting: SGD with
    η_w = η_z = 0.1 for 2000 steps, parameters saved every 20 steps."""

    eta_w: float = setting(0.1, "SGD learning rate of the MLP weights W", check=check_positive)
    eta_z: float = setting(0.1, "SGD learning rate of the attention logits z", check=check_positive)
    steps: int = setting(2000, "number of SGD steps", check=at_least(1))
    save_every: int = setting(20, "keep the parameters every N steps (and at the last step, when N does not "
                              "divide the steps)", check=at_least(1))

    def check_fields(self):
        super().check_fields()
        if self.save_every > self.steps:
            raise OutOfRangeError(f"save_every={self.save_every} is not allowed; it must be <= steps={self.steps}")

    @property
    def save_steps(self) -> np.ndarray:
        """The training steps kept: 0, save_every, 2·save_every, …, and always the last step."""
        return every_steps(self.steps, self.save_every)

    @property
    def save_count(self) -> int:
        """How many steps `save_steps` holds, without making it."""
        return self.steps // self.save_every + 1 + (self.steps % self.save_every != 0)

    def check_memory(self, mode: str = "both") -> None:
        """Refuses, before anything is allocated or compiled, a run in `mode` that needs more
        memory than the machine has (`member_bytes` for every seed)."""
        check_fits(self.seeds * self.member_bytes(self.steps, self.save_count, mode),
                   f"{self.seeds} seeds × {self.steps} steps with {self.save_count} saves",
                   f"--seeds, --steps, the saves (raise --save-every) or the sizes ({', '.join(self.size_options)})")

    size_options: ClassVar[tuple[str, ...]] = ("--dim", "--n-classes", "--n-distinct", "--n-common")
    """The options that size a member's arrays (the memory check names them)."""


def run_compare(config: CompareConfig) -> BlockResults:
    """Trains the block and integrates both flows for every seed, and measures them step by step,
    in one compiled call.

    **Arguments:**

    - `config`: a `CompareConfig`.

    **Returns:**

    The `BlockResults` of mode `both` (runs `train`, `joint`, `reduced`, `tracked`, and a
    Transformer's `preconditioned`; training is the reference), saved at `config.save_steps`.
    """
    config.check_memory("both")
    return run_members(config, config.members(config.eta_w, config.eta_z), config.steps, config.save_steps, "both")
