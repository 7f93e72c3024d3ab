"""The JoMA theory: vector fields, closed forms and `simulate`."""

from ._closed_forms import blowup_time as blowup_time
from ._closed_forms import convergence_time as convergence_time
from ._closed_forms import erf_solution as erf_solution
from ._closed_forms import matrix_solution as matrix_solution
from ._flows import AbstractFlow as AbstractFlow
from ._flows import JointFlow as JointFlow
from ._flows import PreconditionedReducedFlow as PreconditionedReducedFlow
from ._flows import ReducedFlow as ReducedFlow
from ._flows import ScheduledReducedFlow as ScheduledReducedFlow
from ._flows import TrackedMeanFlow as TrackedMeanFlow
from ._options import SolverOptions as SolverOptions
from ._options import check_precision as check_precision
from ._simulate import simulate as simulate
from ._simulate import solve as solve
from ._simulate import stack as stack
from ._toy_flows import NonlinearToyFlow as NonlinearToyFlow
from ._toy_flows import SalienceFlow as SalienceFlow
from ._trajectory import Status as Status
from ._trajectory import Trajectory as Trajectory
from ._trajectory import status_messages as status_messages
from ._unrolled import UnrolledERK as UnrolledERK
