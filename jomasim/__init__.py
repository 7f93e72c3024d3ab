"""jomasim: the JoMA training dynamics of Transformers, simulated with Diffrax and checked against training.

Importing jomasim changes nothing in JAX's or matplotlib's configuration. The theory and the
comparisons are meant for float64: turn it on once, first thing in the program, as for any JAX code

```python
import jax

jax.config.update("jax_enable_x64", True)
```

(the `jomasim` command does this itself). Without it, `simulate` and the block experiments run in
float32 where their tolerances allow it and otherwise refuse in one line that says so.
"""

from importlib import metadata as _metadata

from . import metrics as metrics
from ._errors import InvalidChoiceError as InvalidChoiceError
from ._errors import InvalidPathError as InvalidPathError
from ._errors import JomasimError as JomasimError
from ._errors import NonFiniteError as NonFiniteError
from ._errors import OutOfRangeError as OutOfRangeError
from ._errors import ShapeMismatchError as ShapeMismatchError
from .activation import AbstractActivation as AbstractActivation
from .activation import get_activation as get_activation
from .attention import ATTENTIONS as ATTENTIONS
from .attention import AbstractAdditiveAttention as AbstractAdditiveAttention
from .attention import AbstractAttention as AbstractAttention
from .attention import ExpAttention as ExpAttention
from .attention import LinearAttention as LinearAttention
from .attention import LogitInvariant as LogitInvariant
from .attention import SoftmaxAttention as SoftmaxAttention
from .attention import get_attention as get_attention
from .block import block_loss as block_loss
from .data import TokenData as TokenData
from .data import make_token_data as make_token_data
from .theory import AbstractDrive as AbstractDrive
from .theory import AbstractFlow as AbstractFlow
from .theory import AbstractHeldMean as AbstractHeldMean
from .theory import AbstractRateRatio as AbstractRateRatio
from .theory import AbstractWeightsAndLogitsFlow as AbstractWeightsAndLogitsFlow
from .theory import CurrentMean as CurrentMean
from .theory import FlowRatio as FlowRatio
from .theory import FrequencyMean as FrequencyMean
from .theory import GradientDrive as GradientDrive
from .theory import InvariantRateFlow as InvariantRateFlow
from .theory import JointFlow as JointFlow
from .theory import MeasuredDrive as MeasuredDrive
from .theory import NonlinearToyFlow as NonlinearToyFlow
from .theory import PiecewiseRatio as PiecewiseRatio
from .theory import PreconditionedReducedFlow as PreconditionedReducedFlow
from .theory import ReducedFlow as ReducedFlow
from .theory import SalienceFlow as SalienceFlow
from .theory import ScheduledReducedFlow as ScheduledReducedFlow
from .theory import SolverOptions as SolverOptions
from .theory import Status as Status
from .theory import TrackedMeanFlow as TrackedMeanFlow
from .theory import Trajectory as Trajectory
from .theory import UnrolledERK as UnrolledERK
from .theory import blowup_time as blowup_time
from .theory import convergence_time as convergence_time
from .theory import erf_solution as erf_solution
from .theory import matrix_solution as matrix_solution
from .theory import simulate as simulate
from .theory import stack as stack

__version__ = _metadata.version("jomasim")
