"""The theory side of the §3.5 block for several seeds: the `jomasim simulate` job.

For every seed the joint (W, z) gradient flow and the reduced JoMA flow (attention integrated
out) are integrated from the same initial state, vmapped over seeds in one compiled call, and
compared: Theorem 1 on the joint flow (NC(ẑ, z), NC(ẑ₁, z), NC(ẑ₂, z), the Fig. 2 curves), the
reduced flow against the joint flow, and the attention entropy of both.
"""

import dataclasses

import numpy as np

from .._errors import check_integer, check_positive
from .block import BlockResults, BlockSetting, run_members


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


def run_block_theory(config: BlockTheoryConfig) -> BlockResults:
    """Integrates the joint and the reduced flow for every seed and measures them.

    **Arguments:**

    - `config`: a `BlockTheoryConfig`.

    **Returns:**

    The `BlockResults` of `theory` mode (runs `joint` and `reduced`; the joint flow is the
    reference), saved at the times `steps` (clock `t`).
    """
    ts = np.linspace(0.0, config.t_end, config.saves)
    return run_members(config, config.members(config.eta_w, config.eta_z), 0, ts, "theory", clock="t")
