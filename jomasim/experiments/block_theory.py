"""The theory side of the §3.5 block for several seeds: the `jomasim simulate` job.

For every seed the joint (W, z) gradient flow and the reduced JoMA flow (attention integrated
out) are integrated from the same initial state, vmapped over seeds in one compiled call, and
compared: Theorem 1 on the joint flow (NC(ẑ, z), NC(ẑ₁, z), NC(ẑ₂, z), the Fig. 2 curves), the
reduced flow against the joint flow, and the attention entropy of both.
"""

import dataclasses

import numpy as np

from .._errors import at_least, check_positive
from .._memory import check_fits
from .._settings import setting
from .block import BlockResults, BlockSetting, run_members


@dataclasses.dataclass(frozen=True)
class BlockTheoryConfig(BlockSetting):
    """A theory-only run: the flows with rates (η_w, η_z) up to `t_end`, saved at `saves` times.
    Rates 1 up to t = 200 are SGD with learning rate 0.1 for 2000 steps."""

    eta_w: float = setting(1.0, "flow rate of the MLP weights W", check=check_positive)
    eta_z: float = setting(1.0, "flow rate of the attention logits z", check=check_positive)
    t_end: float = setting(200.0, "end time (rates 1, t = 200: 2000 SGD steps at lr 0.1)", check=check_positive)
    saves: int = setting(101, "number of save times", check=at_least(2))


def run_block_theory(config: BlockTheoryConfig) -> BlockResults:
    """Integrates the joint and the reduced flow for every seed and measures them.

    **Arguments:**

    - `config`: a `BlockTheoryConfig`.

    **Returns:**

    The `BlockResults` of `theory` mode (runs `joint` and `reduced`; the joint flow is the
    reference), saved at the times `steps` (clock `t`).
    """
    check_fits(config.seeds * config.member_bytes(0, config.saves, "theory"),
               f"{config.seeds} seeds with {config.saves} saves",
               "--seeds, --saves or the sizes (--dim, --n-classes, --n-distinct, --n-common)")
    ts = np.linspace(0.0, config.t_end, config.saves)
    return run_members(config, config.members(config.eta_w, config.eta_z), 0, ts, "theory", clock="t")
