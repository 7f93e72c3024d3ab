"""Signs of life for long runs: a progress bar over a study's own units (rungs, settings, panels,
runs), shown on standard error only where the caller asked for it.

The command line turns it on for its own run when standard error is a terminal and `--quiet` is
not given (`showing_progress`); a library call, a pipe or a benchmark sees nothing. The switch is
a context variable, so nothing changes at import and concurrent callers do not see each other's.
"""

import contextlib
import contextvars
import sys

from tqdm import tqdm

_SHOWN = contextvars.ContextVar("jomasim_progress_shown", default=False)


@contextlib.contextmanager
def showing_progress(shown: bool):
    """Within the block, `progress_bar`s are drawn if `shown`."""
    token = _SHOWN.set(shown)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress_shown() -> bool:
    """Whether progress is drawn here (`showing_progress`)."""
    return _SHOWN.get()


def progress_bar(total: int, description: str, unit: str) -> tqdm:
    """A bar over `total` units (a context manager; `update()` after each), drawn on standard error
    inside `showing_progress(True)`, silent otherwise.

    **Arguments:**

    - `total`: how many units the work has.
    - `description`: what is running, in words.
    - `unit`: the unit's name (singular).
    """
    return tqdm(total=total, desc=description, unit=f" {unit}", disable=not progress_shown(), file=sys.stderr, leave=False,
                dynamic_ncols=True)
