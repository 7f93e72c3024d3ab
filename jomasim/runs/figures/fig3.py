"""The figure of Fig. 3: with a linear activation the most salient token wins and V becomes low-rank."""

from pathlib import Path

from matplotlib.patches import Rectangle

from ...experiments.fig3 import Fig3Result
from ._common import finish, save, subplots


def plot_fig3(result: Fig3Result, path: Path) -> None:
    """Fig. 3: V(0) and V at the end (components 0..3 of v_0 boxed), those components over time
    with the closed form (J18–J19) dotted, and the singular values of V over time.

    **Arguments:**

    - `result`: the output of `jomasim.experiments.fig3.run_fig3`.
    - `path`: the PNG to write.
    """
    figure, axes = subplots(2, 2, figsize=(12, 8.4))
    axes = axes.flat
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for axis, index, title in ((axes[0], 0, "V(0) = U_Cᵀ W(0)"), (axes[1], -1, f"V after {result.steps[-1]} steps")):
        image = axis.imshow(result.V[index], cmap="RdBu_r", aspect="auto")
        figure.colorbar(image, ax=axis)
        axis.set_xlabel("hidden node k")
        axis.set_ylabel("contextual token l")
        axis.set_title(title)
    for row, colour in enumerate(colours):
        axes[1].add_patch(Rectangle((-0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=2))
        axes[2].plot(result.steps, result.V[:, row, 0], color=colour, label=f"component {row}")
        axes[2].plot(result.steps, result.closed_form_V0[:, row], color=colour, linestyle=":", linewidth=1)
    axes[2].axhline(0.0, color="gray", linestyle="--", linewidth=0.8)
    finish(axes[2], "SGD step", "V[i, 0]", f"v_0 (dotted: closed form J18–J19); winner token {result.winner[0]}")
    lines = axes[3].semilogy(result.steps, result.singular_values, color="black", alpha=0.5, linewidth=0.8)
    lines[0].set_label("σ_i(V), i = 1 … min(M_c, K)")
    finish(axes[3], "SGD step", "singular values of V", f"σ₁/σ₂ = {result.sigma_ratio:.1f} at the end")
    save(figure, path)
