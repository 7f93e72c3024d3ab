"""The figure of `jomasim fit`: the reduced flow before and after its fit to a training run."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps

from ...experiments import FittedRun
from ...metrics import normalized_correlation
from ._common import finish, save, subplots


def plot_fit(fitted: FittedRun, path: Path) -> None:
    """A fit of the reduced flow to a training run: the first seed's trained logits (the three that
    end largest) against the flow before (dotted) and after (dashed) the fit, and NC(z flow,
    z trained) per seed over the saves, the held-out part right of the grey line; with several
    pieces of ρ(t), ρ(t) per seed.

    **Arguments:**

    - `fitted`: the run and its fit.
    - `path`: the PNG to write.
    """
    run, results = fitted
    steps, boundary = results.steps, results.steps[results.fitted - 1]
    pieces = results.lr_ratio.shape[1]
    figure, axes = subplots(1, 2 + (pieces > 1), figsize=(12.5, 4.5))
    logits, agreement = axes[:2]
    colours = colormaps["viridis"](np.linspace(0.0, 0.8, 3))
    for colour, token in zip(colours, np.argsort(-run.z[0, -1])[:3]):
        logits.plot(steps, run.z[0, :, token], color=colour, label=f"trained z[{token}]")
        logits.plot(steps, results.z_before[0, :, token], color=colour, linestyle=":")
        logits.plot(steps, results.z_after[0, :, token], color=colour, linestyle="--")
    logits.axvline(boundary, color="gray", linewidth=0.8)
    finish(logits, "SGD step", "attention logit", f"seed {int(run.seeds[0])}: trained (solid), flow before (dotted) "
            f"and after (dashed) the fit")
    converged = results.status == 0
    for label, z, style in (("before", results.z_before, ":"), ("after", results.z_after, "-")):
        nc = np.asarray(normalized_correlation(z, run.z))
        for seed, curve in enumerate(nc):
            # a seed whose fit did not converge is drawn grey, and left out of the title's means
            colour = ("tab:blue" if label == "after" else "tab:orange") if converged[seed] else "lightgray"
            agreement.plot(steps, curve, linestyle=style, color=colour,
                           label=f"{label} the fit" if seed == int(np.argmax(converged)) else None)
    if not converged.all():
        agreement.plot([], [], color="lightgray", label=f"not converged ({int((~converged).sum())} seeds)")
    agreement.axvline(boundary, color="gray", linewidth=0.8)
    title = "no seed's fit converged"
    if converged.any():
        scale = (f", time scale = {np.mean(results.time_scale[converged]):.3g}" if results.time_scale_fitted
                 else " (time scale held)")
        title = f"rho = {np.mean(results.lr_ratio[converged]):.3g}{scale}, mean over {int(converged.sum())} converged seeds"
    finish(agreement, "SGD step", "NC(z flow, z trained)", title)
    if pieces > 1:
        edges = np.concatenate([[steps[0]], results.knots, [steps[-1]]])
        for seed, ratios in enumerate(results.lr_ratio):
            axes[2].stairs(ratios, edges, label=f"seed {int(run.seeds[seed])}")
        axes[2].axvline(boundary, color="gray", linewidth=0.8)
        finish(axes[2], "SGD step", "fitted rho(t)", f"rho(t) on {pieces} pieces (trained with "
                f"{run.config.eta_z / run.config.eta_w:.3g})")
    save(figure, path)

