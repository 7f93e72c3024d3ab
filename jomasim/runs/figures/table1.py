"""The figure of Table 1: MLP hidden nodes of each layer match the latents of its level."""

import itertools
from pathlib import Path

import numpy as np

from ...experiments.table1 import Table1Result
from ._common import finish, save, subplots


def plot_table1(result: Table1Result, path: Path) -> None:
    """Table 1: best-match correlation of level-0 and level-1 latents per setting (mean ± std over
    seeds; zero-mean and raw after training, zero-mean of the untrained network, faded), and the
    latent tree's co-occurrence against (J26).

    **Arguments:**

    - `result`: the output of `jomasim.experiments.table1.run_table1`.
    - `path`: the PNG to write.
    """
    rows = result.rows
    figure, axes = subplots(1, 2, figsize=(12.5, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    positions = np.arange(len(rows))
    # per kind: its offset on the row and marker; per level: its colour
    kinds = {"zero_mean": (-0.15, "o"), "initial_zero_mean": (0.0, "s"), "raw": (0.15, "x")}
    colours = {0: "tab:blue", 1: "tab:orange"}
    for (kind, (offset, marker)), (level, colour) in itertools.product(kinds.items(), colours.items()):
        axes[0].errorbar(positions + offset, [row.mean(level, kind) for row in rows],
                         yerr=[row.std(level, kind) for row in rows], color=colour, marker=marker, linestyle="",
                         capsize=3, alpha=0.45 if kind.startswith("initial") else 1.0,
                         label=f"s = {level}, {kind.replace('initial_', 'untrained, ').replace('_', '-')}")
    axes[0].set_xticks(positions, [f"C={row.setting.n_classes}\nN_ch={row.setting.n_children}\n"
                                   f"({row.setting.n0},{row.setting.n1})" for row in rows], fontsize=7)
    finish(axes[0], "setting", "best-match correlation", "latent ↔ hidden node of the same layer")
    axes[1].plot(result.cooccurrence_height, result.cooccurrence_exact, "k-", label="exact (J26)")
    axes[1].plot(result.cooccurrence_height, result.cooccurrence_estimate, "ro", label="Monte Carlo")
    finish(axes[1], "height of the common ancestor", "P[y_l = 1 | y_m = 1]", "latent-tree co-occurrence")
    save(figure, path)
