"""jomasim: the JoMA training dynamics of Transformers, simulated with Diffrax and checked against training.

Importing jomasim turns on JAX's float64 support (`jax_enable_x64`): the theory and the comparisons
are done in float64 unless an array is given in float32 explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

from . import metrics as metrics  # noqa: E402
from ._errors import InvalidChoiceError as InvalidChoiceError  # noqa: E402
from ._errors import InvalidPathError as InvalidPathError  # noqa: E402
from ._errors import JomasimError as JomasimError  # noqa: E402
from ._errors import NonFiniteError as NonFiniteError  # noqa: E402
from ._errors import OutOfRangeError as OutOfRangeError  # noqa: E402
from ._errors import ShapeMismatchError as ShapeMismatchError  # noqa: E402
from .activation import Activation as Activation  # noqa: E402
from .activation import get_activation as get_activation  # noqa: E402
from .attention import LogitInvariant as LogitInvariant  # noqa: E402
from .attention import attention_distribution as attention_distribution  # noqa: E402
from .attention import attention_jacobian as attention_jacobian  # noqa: E402
from .attention import attention_weights as attention_weights  # noqa: E402
from .block import block_loss as block_loss  # noqa: E402
from .data import TokenData as TokenData  # noqa: E402
from .data import make_token_data as make_token_data  # noqa: E402
from .theory import AbstractFlow as AbstractFlow  # noqa: E402
from .theory import JointFlow as JointFlow  # noqa: E402
from .theory import NonlinearToyFlow as NonlinearToyFlow  # noqa: E402
from .theory import ReducedFlow as ReducedFlow  # noqa: E402
from .theory import SalienceFlow as SalienceFlow  # noqa: E402
from .theory import Status as Status  # noqa: E402
from .theory import Trajectory as Trajectory  # noqa: E402
from .theory import UnrolledERK as UnrolledERK  # noqa: E402
from .theory import blowup_time as blowup_time  # noqa: E402
from .theory import convergence_time as convergence_time  # noqa: E402
from .theory import erf_solution as erf_solution  # noqa: E402
from .theory import matrix_solution as matrix_solution  # noqa: E402
from .theory import simulate as simulate  # noqa: E402
from .theory import stack as stack  # noqa: E402

__version__ = "0.1.0"
