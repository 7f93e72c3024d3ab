"""Experiments: each module runs one study and returns its typed result (its fields what it
measured; `arrays()` and `summary()` what a run folder holds).

The public face of the §3.5 block's studies is here (what the command line and a user script
need); each reproduction's config and run function live in its own module (`fig3`, `reach`, …) and
are registered in `jomasim.runs`.
"""

from .block import MODES as MODES
from .block import AbstractTrainedModel as AbstractTrainedModel
from .block import BlockResults as BlockResults
from .block import FixedGradientBlock as FixedGradientBlock
from .block import Mode as Mode
from .block import TrainedBlock as TrainedBlock
from .block import run_members as run_members
from .block_sweep import SWEEP_PER_POINT as SWEEP_PER_POINT
from .block_sweep import BlockSweep as BlockSweep
from .block_theory import BlockTheoryConfig as BlockTheoryConfig
from .block_theory import run_block_theory as run_block_theory
from .compare import CompareConfig as CompareConfig
from .compare import run_compare as run_compare
from .fit import FitConfig as FitConfig
from .fit import FitResults as FitResults
from .fit import FittedRun as FittedRun
from .fit import TrainedRun as TrainedRun
from .fit import fit_run as fit_run
from .fit import read_run as read_run
from .results import OUTPUT_NAMES as OUTPUT_NAMES
from .transformer import COMPARE_MODELS as COMPARE_MODELS
from .transformer import TrainedTransformer as TrainedTransformer
from .transformer import TransformerCompareConfig as TransformerCompareConfig
