"""Signs of life: progress bars on a terminal, nothing when piped or with --quiet."""

import io
import sys

import pytest

from jomasim._progress import progress_bar, progress_shown, showing_progress
from jomasim.cli import _main


def test_a_bar_is_drawn_only_where_progress_is_shown(capsys):
    with showing_progress(True):
        with progress_bar(3, "reach", "rung") as bar:
            bar.update(3)
    assert "reach" in capsys.readouterr().err
    with progress_bar(3, "reach", "rung") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("terminal, quiet, shown", [(True, False, True), (True, True, False), (False, False, False)])
def test_the_command_line_shows_progress_on_a_terminal_unless_quiet(monkeypatch, terminal, quiet, shown):
    seen = []
    monkeypatch.setattr(_main, "_command", lambda args: seen.append(progress_shown()))
    stderr = io.StringIO()
    stderr.isatty = lambda: terminal
    monkeypatch.setattr(sys, "stderr", stderr)
    assert _main.main(["compare"] + (["--quiet"] if quiet else [])) == 0
    assert seen == [shown] and not progress_shown()
