"""Signs of life for long runs: a progress bar over a study's own units (rungs, settings, panels,
runs), and a line saying what a long call that reports nothing itself is doing and for how long
(compiling a program, running it), shown on standard error only where the caller asked for it.

Inside a compiled program nothing is reported: a step counter would be a host callback, and JAX
keeps no program with host callbacks in its persistent compilation cache, which the command line
relies on to make its second run fast.

The command line turns it on for its own run when standard error is a terminal and `--quiet` is
not given (`showing_progress`); a library call, a pipe or a benchmark sees nothing. The switch is
a context variable, so nothing changes at import and concurrent callers do not see each other's.
"""

import contextlib
import contextvars
import sys
import threading

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


@contextlib.contextmanager
def working(description: str, every: float = 0.5):
    """A line on standard error, `description: elapsed time`, redrawn every `every` seconds while
    the block runs (a call that blocks without reporting, such as a compile); drawn only inside
    `showing_progress(True)` and removed when the block ends.

    **Arguments:**

    - `description`: what runs, in words.
    - `every`: seconds between redraws.
    """
    if not progress_shown():
        yield
        return
    line = tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False, dynamic_ncols=True)
    done = threading.Event()

    def redraw():
        while not done.wait(every):
            line.refresh()

    thread = threading.Thread(target=redraw, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        line.close()
