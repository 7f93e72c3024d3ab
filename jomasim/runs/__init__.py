"""Runs: what a command runs and what it writes — the registry of reproductions and the one
writer of a run folder. Above `experiments` (the studies) and `plots`, below the command line."""

from ._writer import write_run as write_run
from .reproduce import REPRODUCTIONS as REPRODUCTIONS
from .reproduce import Reproduction as Reproduction
from .reproduce import reproduce as reproduce
from .reproduce import reproduce_all as reproduce_all
