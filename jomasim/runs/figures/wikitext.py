"""The figure of Fig. 6 / Fig. 8: Transformers on real text, per-layer attention entropy over training."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps

from ...experiments.wikitext import WikitextResult
from ._common import panel_grid, save


def plot_wikitext(result: WikitextResult, path: Path) -> None:
    """Fig. 6 / Fig. 8: one panel per (depth, learning rate), one curve per layer (seed mean of the
    attention entropy at each checkpoint, solid) and the stable rank of that layer's MLP lower layer
    (dashed, right axis), titled with the minimum validation loss.

    **Arguments:**

    - `result`: the output of `jomasim.experiments.wikitext.run_wikitext`.
    - `path`: the PNG to write.
    """
    figure, axes = panel_grid(len(result.runs), 4.1, 3.6)
    for axis, run in zip(axes, result.runs):
        entropy, ranks = run.entropy.mean(axis=0), run.stable_rank.mean(axis=0)
        colours = colormaps["rainbow"](np.linspace(0.0, 1.0, run.depth))
        right = axis.twinx()
        for layer, colour in enumerate(colours):
            axis.plot(result.steps, entropy[:, layer], color=colour, label=f"layer {layer}" if run.depth <= 5 else None)
            right.plot(result.steps, ranks[:, layer], color=colour, linestyle="--")
        right.set_ylabel("MLP stable rank (dashed)")
        axis.set_title(f"layers: {run.depth}, lr: {run.lr:g}, val loss: {run.valid_loss_min:.2f}",
                       fontsize=9)
        axis.set_xlabel("minibatch")
        axis.set_ylabel("attention entropy (nats, solid)")
        if run.depth <= 5:
            axis.legend(fontsize=7)
    save(figure, path)
