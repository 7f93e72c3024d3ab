"""The figure of Scan&Snap's Fig. 6: a larger attention learning rate gives sparser attention."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps

from ...experiments.scan_snap import ScanSnapResult
from ._common import finish, panel_grid, save


def plot_scan_snap(result: ScanSnapResult, path: Path) -> None:
    """Scan&Snap's Fig. 6 laid out as the paper's: one panel per number of query (last) tokens, the
    average final entropy of the attention vector against η_Y/η_Z, one curve per η_Z, mean ± std
    over seeds.

    **Arguments:**

    - `result`: the output of `jomasim.experiments.scan_snap.run_scan_snap`.
    - `path`: the PNG to write.
    """
    config = result.config
    figure, axes = panel_grid(len(result.panels), 4.1, 3.6)
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(config.eta_z)))
    for p, (axis, panel) in enumerate(zip(axes, result.panels)):
        for i, (rate, colour) in enumerate(zip(config.eta_z, colours)):
            axis.errorbar(config.eta_ratio, result.entropy_mean[p, i], yerr=result.entropy_std[p, i], color=colour,
                          marker="o", capsize=3, label=f"η_Z = {rate:g}")
        axis.axvline(1.0, color="black", linestyle="--", linewidth=0.5)
        finish(axis, "η_Y / η_Z", f"average entropy of c_n ({config.entropy_of})" if p == 0 else "",
               f"#last/next tokens = {panel.n_queries}/{panel.n_classes}")
        if p > 0:
            axis.get_legend().remove()
    failed = f" ({result.failed} runs diverged, left out)" if result.failed else ""
    figure.suptitle(f"final attention entropy after training{failed}")
    save(figure, path)
