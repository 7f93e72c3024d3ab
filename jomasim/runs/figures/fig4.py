"""The figure of Fig. 4: the nonlinear toy, whose attention gets sparse first and dense again."""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ...experiments.fig4 import Fig4Result
from ._common import finish, save, subplots


def _snapshots(axis, vs: np.ndarray, times: np.ndarray, mu: np.ndarray, label: str) -> None:
    """v against the component index, one line per snapshot coloured by time, μ dashed."""
    colours = colormaps["rainbow"](np.linspace(0.0, 1.0, len(vs)))
    index = np.arange(len(mu))
    for v, colour in zip(vs, colours):
        axis.plot(index, v, color=colour, linewidth=0.8)
    axis.plot(index, mu, "k--", linewidth=1.5, label="μ")
    axis.figure.colorbar(ScalarMappable(norm=Normalize(times[0], times[-1]), cmap="rainbow"), ax=axis,
                         label=label)
    finish(axis, "component (sorted by μ)", "v", "")


def _entropy_curve(axis, x: np.ndarray, entropy: np.ndarray, limit: float, xlabel: str) -> None:
    """Entropy over time with its minimum marked and the limit H(softmax(μ²/T)) dotted."""
    lowest = int(np.argmin(entropy))
    axis.plot(x, entropy, color="black", label="attention entropy")
    axis.axhline(limit, color="gray", linestyle=":", label=f"limit H(softmax(μ²/T)) = {limit:.3f}")
    axis.plot([x[lowest]], [entropy[lowest]], "rv", label=f"minimum {entropy[lowest]:.3f} at {x[lowest]:.4g}")
    finish(axis, xlabel, "entropy (nats)", "")


def plot_fig4(result: Fig4Result, path: Path) -> None:
    """Fig. 4: the authors' discrete update (top, the paper's run (a)) and the paper's ODE (bottom,
    run (b)); left v snapshots with μ dashed, right the attention entropy; panels lettered (a)–(d).

    **Arguments:**

    - `result`: the output of `jomasim.experiments.fig4.run_fig4`.
    - `path`: the PNG to write.
    """
    figure, axes = subplots(2, 2, figsize=(12, 8))
    mu = result.mu
    _snapshots(axes[0, 0], result.discrete_v, result.discrete_snapshot_steps, mu, "iteration")
    axes[0, 0].set_title("(a) discrete update: v every 100 iterations")
    _entropy_curve(axes[0, 1], np.arange(len(result.discrete_entropy)), result.discrete_entropy,
                   result.discrete_entropy_limit, "iteration")
    axes[0, 1].set_title("(b) discrete update: entropy of softmax(v²/T)")
    every = max(1, len(result.ode_ts) // 50)
    _snapshots(axes[1, 0], result.ode_v[::every], result.ode_ts[::every], mu, "t")
    axes[1, 0].set_title(f"(c) ODE v̇ = (μ − v) ∘ exp(v²/2) (Diffrax): {result.ode_status}")
    _entropy_curve(axes[1, 1], result.ode_ts, result.ode_entropy, result.ode_entropy_limit, "t")
    axes[1, 1].set_title("(d) ODE: entropy of softmax(v²/2)")
    save(figure, path)
