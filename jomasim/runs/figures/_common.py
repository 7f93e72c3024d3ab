"""What every figure shares: figures drawn on their own canvas, without pyplot (no screen is
needed, and the user's pyplot backend and open figures are left as they are), panels laid out,
finished and saved one way."""

from pathlib import Path

from matplotlib.figure import Figure


def subplots(*grid, **options):
    """A new figure and its axes, as `pyplot.subplots` gives them, without pyplot."""
    figsize = options.pop("figsize", None)
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **options)


def panel_grid(count: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of `count` panels of `width` × `height` inches, at most three to a row (a page's
    width) and the rows as even as that allows (four panels: two by two), the unused places of the
    last row left empty; returns the figure and its `count` axes."""
    rows = -(-count // 3)
    columns = -(-count // rows)
    figure, axes = subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)[:count]


def save(figure: Figure, path: Path) -> None:
    """Lays the figure out and writes it to `path` (110 dots per inch)."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def finish(axis, xlabel: str, ylabel: str, title: str) -> None:
    """Labels a panel's axes, titles it and draws its legend."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(loc="best", fontsize=8)
