"""The figure of the ladder: JoMA against a one-layer Transformer, one idealisation dropped per rung."""

from pathlib import Path

import numpy as np

from ...comparison import AGREEMENT
from ...experiments.reach import ReachResult
from ._common import save, subplots


def plot_reach(result: ReachResult, path: Path) -> None:
    """The ladder of `reproduce reach`: one row per rung (the matched-progress rungs last), three
    columns with one y-range each: the direction (NC of Theorem 1's ẑ with the trained z, solid;
    of the reduced flow's z, dashed), the size (‖Δẑ‖/‖Δz‖ and the reduced flow's, log scale) and
    the attention entropy; one colour per activation (thin: seeds, thick: their mean).

    **Arguments:**

    - `result`: the output of `jomasim.experiments.reach.run_reach`.
    - `path`: the PNG to write.
    """
    rungs, activations, steps = result.rungs, result.config.activations, result.steps
    figure, axes = subplots(len(rungs), 3, figsize=(12.5, 2.1 * len(rungs)), squeeze=False, sharex=True, sharey="col")
    panels = ((("nc_zhat_z", "-", "Theorem 1"), ("nc_reduced_z", "--", "reduced flow")), "normalized correlation",
              "(a) direction: NC with trained z"), \
             ((("size_zhat_z", "-", "Theorem 1"), ("size_reduced_z", "--", "reduced flow")), "‖Δẑ‖/‖Δz‖",
              "(b) size of the change (1: right)"), \
             ((("entropy_train", "-", "trained"),), "entropy (nats)", "(c) attention entropy (frequency bags)")
    colours = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
    for row, rung in enumerate(rungs):
        for column, (curves, ylabel, title) in enumerate(panels):
            axis = axes[row, column]
            for key, linestyle, what in curves:
                for index, activation in enumerate(activations):
                    values = result.curves[key][row, index]
                    if np.all(np.isnan(values)):
                        continue
                    colour = colours[index % len(colours)]
                    axis.plot(steps, values.T, color=colour, alpha=0.2, linewidth=0.6, linestyle=linestyle)
                    axis.plot(steps, np.nanmean(values, axis=0), color=colour, linewidth=1.8, linestyle=linestyle,
                              label=f"{what}, {activation}" if row == 0 else None)
            if column == 1:
                axis.set_yscale("log")
                axis.axhline(1.0, color="gray", linewidth=0.8)
            if column == 0:
                axis.axhline(AGREEMENT, color="gray", linestyle=":", linewidth=0.8)
            axis.set_ylabel(f"{rung}\n{ylabel}" if column == 0 else ylabel, fontsize=8)
            axis.set_title(title if row == 0 else "")
            if row == 0:
                axis.legend(loc="best", fontsize=7)
    for axis in axes[-1]:
        axis.set_xlabel("step")
    save(figure, path)

