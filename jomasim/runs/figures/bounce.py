"""The figures of the bounce search: the attention entropy of every setting, and the attention on
each token where a setting keeps it."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ...experiments.bounce import BounceResult
from ._common import finish, panel_grid, save


def plot_bounce(result: BounceResult, path: Path) -> None:
    """The bounce search: one panel per setting, the attention entropy over training for each
    activation (seed mean), titled with the verdict's excess rebound (nonlinear − linear, ± its
    standard error over the seeds) and what it is: a bounce, no bounce, no dip (nothing tested) or
    censored (runs end at their minimum); and beside it (`PATH_tokens.png`) the attention on every token of the settings that keep it
    (`_plot_bounce_tokens`).

    **Arguments:**

    - `result`: the output of `jomasim.experiments.bounce.run_bounce`.
    - `path`: the PNG to write.
    """
    figure, axes = panel_grid(len(result.settings), 4.1, 3.3)
    colours = ("black", "tab:red", "tab:green", "tab:blue", "tab:purple", "tab:orange")
    for axis, found in zip(axes, result.settings):
        for activation, curves, colour in zip(found.activations, found.entropy, colours):
            axis.plot(found.steps, np.nanmean(curves, axis=0), color=colour, label=activation)
        verdict = found.verdict
        excess = ("—" if not np.isfinite(verdict.excess) else f"{verdict.excess:+.2f}"
                  + ("" if not np.isfinite(verdict.excess_se) else f" ± {verdict.excess_se:.2f}"))
        mark = ("bounce" if verdict.bounce else "no dip" if not verdict.sparsified
                else "censored" if verdict.censored
                else "no bounce")
        finish(axis, "step", "attention entropy (nats)" if axis.get_subplotspec().is_first_col() else "",
               f"{found.name}\nrebound excess {excess} nats: {mark}")
        axis.title.set_fontsize(8)
    save(figure, path)
    if any(found.token_attention is not None for found in result.settings):
        _plot_bounce_tokens(result, path.with_name(f"{path.stem}_tokens.png"))


def _plot_bounce_tokens(result: BounceResult, path: Path) -> None:
    """Fig. 5's question, one row per setting that keeps the attention on every token, the linear
    MLP left and the first nonlinear one right: the first run's attention on each token (mean over
    classes) over training, coloured by salience (dark: most salient), a dot where each gaining
    token's rise peaks (`token_order`), titled with the rank correlation of salience rank and peak
    step (mean over runs)."""
    kept = [found for found in result.settings if found.token_attention is not None]
    figure = Figure(figsize=(11, 3.6 * len(kept)), layout="constrained")
    axes = figure.subplots(len(kept), 2, squeeze=False)
    colours = colormaps["viridis"]
    for (left, right), found in zip(axes, kept):
        steps = found.steps
        for axis, column in ((left, 0), (right, 1)):
            attention, salience = found.token_attention[column], found.token_salience[column]
            peaks = found.token_peak_step[column][0]
            reached = np.flatnonzero(attention[0] > 0)
            order = reached[np.argsort(-salience[reached])]
            for rank, token in enumerate(order):
                colour = colours(rank / max(len(order) - 1, 1))
                axis.plot(steps, attention[:, token], color=colour, linewidth=1.2)
                if peaks[token] >= 0:
                    axis.plot([peaks[token]], [attention[np.searchsorted(steps, peaks[token]), token]], "o", color=colour,
                              markersize=4)
            activation = found.activations[column]
            measured = found.tokens[activation]
            correlation = "–" if not np.isfinite(measured.rank_correlation) else f"{measured.rank_correlation:+.2f}"
            axis.set_xlabel("step")
            axis.set_ylabel("attention on the token (mean over classes)" if column == 0 else "")
            axis.set_title(f"{found.name}, {activation}: salience rank vs peak step ρ = {correlation}\n"
                           f"tokens per run: {measured.tokens:.0f}, gaining {measured.gaining:.1f}, recovering "
                           f"{measured.recovering:.1f}", fontsize=8)
            axis.set_yscale("log")
            # a token that loses all attention would stretch the axis over tens of decades
            axis.set_ylim(max(attention[:, reached].min(), 1e-3 * attention.max()) / 1.5, 1.5 * attention.max())
    figure.colorbar(ScalarMappable(Normalize(0, 1), colours), ax=axes[:, 1].tolist(),
                    label="salience rank (0: most salient, 1: least)", shrink=0.5)
    figure.savefig(path, dpi=110)
