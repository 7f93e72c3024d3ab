"""The `jomasim` command line: the parser and its handlers (`_main`), what it prints (`_print`),
and config fields read from text (`_overrides`)."""

from ._main import build_parser as build_parser
from ._main import main as main
