"""The figure of the checkpoint study: attention entropy and MLP stable rank per layer over checkpoints."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps

from ...experiments.pretrained import PretrainedResult
from ._common import finish, save, subplots


def plot_pretrained(result: PretrainedResult, path: Path) -> None:
    """Attention entropy (left) and stable rank of the first MLP weight (right) per layer against
    the checkpoint step.

    **Arguments:**

    - `result`: the output of `jomasim.experiments.pretrained.run_pretrained`.
    - `path`: the PNG to write.
    """
    figure, axes = subplots(1, 2, figsize=(12, 4.5))
    layers = result.entropy.shape[1]
    colours = colormaps["rainbow"](np.linspace(0.0, 1.0, layers))
    for layer, colour in enumerate(colours):
        label = f"layer {layer}" if layers <= 12 else None
        axes[0].plot(result.steps, result.entropy[:, layer], "o-", color=colour, label=label)
        axes[1].plot(result.steps, result.stable_rank[:, layer], "o-", color=colour, label=label)
    finish(axes[0], "checkpoint step", "attention entropy (nats)", "attention entropy per layer")
    finish(axes[1], "checkpoint step", "‖W‖_F² / ‖W‖₂²", "stable rank of the MLP's first weight")
    save(figure, path)
