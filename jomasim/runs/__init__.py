"""Runs: what a command runs and what it writes — the registry of experiments (the block's
commands and every reproduction), the one writer of a run folder (timed once), and the figures.
Above `experiments` (the studies), below the command line."""

from ._writer import RunFiles as RunFiles
from ._writer import run_and_write as run_and_write
from .registry import COMMANDS as COMMANDS
from .registry import REPRODUCTIONS as REPRODUCTIONS
from .registry import AbstractExperiment as AbstractExperiment
from .registry import Command as Command
from .registry import Reproduction as Reproduction
from .registry import run_experiment as run_experiment
from .reproduce import reproduce as reproduce
from .reproduce import reproduce_all as reproduce_all
