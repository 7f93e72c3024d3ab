"""The figures of a sweep: a result over one or two axes of its grid."""

from pathlib import Path

import numpy as np

from ._common import save, subplots


def _cell_mean(table: dict, value: str, selections: list[np.ndarray]) -> tuple[float, int]:
    """Mean of `value` over the non-failed rows selected by all masks, and the count of failed rows."""
    rows = np.logical_and.reduce(selections)
    good = rows & ~table["failed"]
    values = table[value][good].astype(float)
    finite = values[np.isfinite(values)]
    return (float(finite.mean()) if finite.size else np.nan), int(np.sum(rows & table["failed"]))


def _sweep_title(table: dict, value: str) -> str:
    """What a sweep plot averages, and how many points it leaves out for having no value (NaN:
    e.g. a parting or blow-up step where the event never happened)."""
    values = table[value].astype(float)
    valid = np.isfinite(values) & ~table["failed"]
    valueless = int(np.sum(~np.isfinite(values) & ~table["failed"]))
    title = f"{value}, mean over the other axes"
    if valid.sum() > 1 and np.ptp(values[valid]) <= 1e-12 * max(1.0, float(np.max(np.abs(values[valid])))):
        title += f"\n(the same at every point: {values[valid][0]:.6g}; the axes do not move it)"
    if valueless:
        title += f"\n({valueless} of {len(table[value])} points have no value and are left out)"
    return title


def plot_sweep(table: dict, value: str, x: str, y: str | None, path: Path) -> None:
    """A sweep result against one or two grid axes, averaged over all other axes (e.g. seeds).

    With `y`, a heat map over x × y; without, a line over x with one point per value. Failed points
    are left out of the means; cells holding any are marked with a red cross and their count, and
    cells with no valid value stay blank. Points without a value (NaN) are left out of the means
    too, and the title counts them.

    **Arguments:**

    - `table`: the merged sweep table (`SweepResult.table`).
    - `value`: the result column to show (e.g. `"entropy_train_min_step"`).
    - `x`, `y`: grid axes (columns of the table).
    - `path`: the PNG to write.
    """
    xs = np.unique(table[x])
    figure, axis = subplots(figsize=(6.5, 4.8))
    if y is None:
        cells = [_cell_mean(table, value, [table[x] == xv]) for xv in xs]
        means = np.asarray([mean for mean, _ in cells])
        axis.plot(range(len(xs)), means, "o-", color="black")
        for position, (mean, failed) in enumerate(cells):
            if failed:
                axis.plot([position], [np.nanmin(means) if np.isfinite(means).any() else 0], "rx", markersize=10)
                axis.annotate(f"{failed} failed", (position, mean if np.isfinite(mean) else 0), color="red", fontsize=8)
        axis.set_ylabel(value)
    else:
        ys = np.unique(table[y])
        cells = [[_cell_mean(table, value, [table[x] == xv, table[y] == yv]) for xv in xs] for yv in ys]
        means = np.asarray([[mean for mean, _ in row] for row in cells])
        image = axis.imshow(np.ma.masked_invalid(means), origin="lower", aspect="auto", cmap="viridis")
        figure.colorbar(image, ax=axis, label=value)
        for row, line in enumerate(cells):
            for column, (mean, failed) in enumerate(line):
                if np.isfinite(mean) and len(xs) * len(ys) <= 144:
                    axis.text(column, row, f"{mean:.3g}", ha="center", va="center", fontsize=7, color="white")
                if failed:
                    axis.plot([column], [row], "rx", markersize=12)
                    axis.text(column, row - 0.3, f"{failed} failed", ha="center", fontsize=6, color="red")
        axis.set_yticks(range(len(ys)), [str(v) for v in ys])
        axis.set_ylabel(y)
    axis.set_xticks(range(len(xs)), [str(v) for v in xs])
    axis.set_xlabel(x)
    axis.set_title(_sweep_title(table, value))
    save(figure, path)

