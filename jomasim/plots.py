"""Matplotlib figures of jomasim runs, written to files.

Figures are `matplotlib.figure.Figure`s drawn on their own canvas, without pyplot: no screen is
needed and the user's pyplot backend and open figures are left as they are.
"""

import itertools
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from .comparison import AGREEMENT
from .experiments.block import BlockResults
from .metrics import normalized_correlation
from .theory import Status


def _subplots(*grid, **options):
    """A new figure and its axes, as `pyplot.subplots` gives them, without pyplot."""
    figsize = options.pop("figsize", None)
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*grid, **options)


def _panel_grid(count: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of `count` panels of `width` × `height` inches, at most three to a row (a page's
    width) and the rows as even as that allows (four panels: two by two), the unused places of the
    last row left empty; returns the figure and its `count` axes."""
    rows = -(-count // 3)
    columns = -(-count // rows)
    figure, axes = _subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat)[:count]


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _mark_failures(axis, outcome) -> None:
    """Draws a red cross at the end time of every trajectory of a flow's `SolveOutcome` that did not finish."""
    for time, code in zip(outcome.t_final, outcome.status):
        if code != Status.OK:
            axis.axvline(time, color="red", linestyle=":", linewidth=1)
            axis.plot([time], [axis.get_ylim()[0]], "rx")


def _frequency_map(figure, axis, results: BlockResults) -> None:
    """Heat map of the first seed's token frequencies X (tokens × classes)."""
    image = axis.imshow(results.members.X[0], aspect="auto", cmap="viridis")
    axis.set_xlabel("class y")
    axis.set_ylabel("contextual token l")
    axis.set_title(f"X (seed {int(results.seeds[0])})")
    figure.colorbar(image, ax=axis)


def _reached(results: BlockResults) -> np.ndarray:
    """`(seeds, saves)`: the saves up to the last one every run of a seed reached (`last_index`)."""
    return np.arange(len(results.steps))[None, :] <= results.members.last_index[:, None]


def _seed_curves(axis, x, curves, reached, label, **style) -> None:
    """One line per seed, each drawn only where `reached` is true; the first carries the label."""
    for seed, curve in enumerate(curves):
        axis.plot(x[reached[seed]], curve[reached[seed]], alpha=0.6, label=label if seed == 0 else None, **style)


def _mark_partings(axis, x, agreement, color, label) -> None:
    """A triangle on each seed's NC(z) curve at the save where its run parts from the reference
    (`Agreement.parted_index`, −1 where they agree throughout); the label only if some seed parts."""
    parted = agreement.parted_index
    seeds = np.flatnonzero(parted >= 0)
    axis.plot(x[parted[seeds]], agreement.nc_z[seeds, parted[seeds]], "v", color=color, markersize=6,
              label=label if len(seeds) else None)


THEOREM1_STYLES = {
    "nc_zhat_z": dict(color="red", linestyle="-", label="NC(ẑ, z)"),
    "nc_zhat1_z": dict(color="green", linestyle="--", label="NC(ẑ₁, z)"),
    "nc_zhat2_z": dict(color="blue", linestyle="--", label="NC(ẑ₂, z)"),
}
"""How each `Theorem1Curves` curve is drawn."""


def _theorem1_panel(axis, x, curves, reached, run: str = "", **style) -> None:
    """The NC curves of `Theorem1Curves` (those the form has), labelled with `run`."""
    for name, base in THEOREM1_STYLES.items():
        if getattr(curves, name) is not None:
            label = f"{base['label']} {run}".strip()
            _seed_curves(axis, x, getattr(curves, name), reached, **{**base, "label": label, **style})


LEAK_STYLES = {
    "invariant_leak": dict(color="black", label="leak ‖ṙ‖ / ‖ż‖ of the invariant"),
    "bbar_drift": dict(color="tab:green", label="drift ‖b̄(t) − x̄‖ / ‖x̄‖"),
    "leak_bbar": dict(color="tab:green", linestyle="--", label="leak from b̄ held fixed"),
    "leak_factorization": dict(color="tab:brown", linestyle=":", label="leak from the factorisation"),
}


def _leak_panel(axis, x, results: BlockResults, reached, xlabel: str, run: str) -> None:
    """How fast the reference run leaves Theorem 1's invariant and, for softmax, why (log scale)."""
    for name, style in LEAK_STYLES.items():
        curve = getattr(results.members.leaks, name)
        if curve is not None:
            _seed_curves(axis, x, np.maximum(curve, 1e-17), reached, **style)
    axis.set_yscale("log")
    _finish(axis, xlabel, "relative size", f"Theorem 1's assumptions along {run}")


def _finish(axis, xlabel: str, ylabel: str, title: str) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(loc="best", fontsize=8)


def plot_block_theory(results: BlockResults, path: Path) -> None:
    """Token frequencies, the Theorem 1 correlation curves, attention entropy and Theorem 1's
    assumptions (`jomasim.assumptions`) over time.

    Curves are drawn only up to the time each trajectory reached; trajectories that stopped early
    are marked with a red dotted line and a cross.

    **Arguments:**

    - `results`: the output of `run_block_theory`.
    - `path`: the PNG to write.
    """
    ts = results.steps
    joint, reduced, tracked = results.members.joint, results.members.reduced, results.members.tracked
    reached = _reached(results)
    figure, ((left, middle), (right, leaks)) = _subplots(2, 2, figsize=(12.5, 8.4))
    _frequency_map(figure, left, results)

    _theorem1_panel(middle, ts, joint.theorem1, reached)
    _seed_curves(middle, ts, reduced.agreement.nc_z, reached, "NC(z reduced ODE, z joint ODE)", color="black",
                 linestyle=":")
    _mark_partings(middle, ts, reduced.agreement, "black", f"reduced ODE parts from the joint (NC < {AGREEMENT})")
    _seed_curves(middle, ts, tracked.agreement.nc_z, reached, "NC(z tracked-b̄ ODE, z joint ODE)", color="tab:green",
                 linestyle=":")
    middle.axhline(1.0, color="gray", linewidth=0.8)
    middle.axhline(AGREEMENT, color="gray", linestyle=":", linewidth=0.8)
    _finish(middle, "t", "normalized correlation", "Theorem 1 on the joint flow")
    _mark_failures(middle, joint.outcome)

    _seed_curves(right, ts, joint.entropy, reached, "joint flow", color="tab:orange")
    _seed_curves(right, ts, reduced.entropy, reached, "reduced JoMA flow", color="tab:purple", linestyle="--")
    _seed_curves(right, ts, tracked.entropy, reached, "tracked-b̄ flow", color="tab:green", linestyle=":")
    _finish(right, "t", "attention entropy (nats)", "attention entropy, mean over classes")
    _mark_failures(right, reduced.outcome)
    _leak_panel(leaks, ts, results, reached, "t", "the joint flow")
    _save(figure, path)


FLOW_STYLES = {
    "joint": dict(label="joint ODE", color="#E69F00", linestyle="--"),
    "reduced": dict(label="reduced JoMA ODE", color="#CC79A7", linestyle=":"),
    "tracked": dict(label="tracked-b̄ ODE", color="#009E73", linestyle="-."),
    "preconditioned": dict(label="P(t) reduced ODE", color="#0072B2", linestyle=(0, (5, 1))),
}
"""How each flow of a comparison is drawn (Okabe–Ito colours, a line style each, so overlapping
curves stay apart without colour)."""

PREDICTION_STYLES = {
    "": dict(label="closed form, b̄ held (paper)", color="#D55E00", linestyle="-"),
    "_tracked": dict(label="differential, b̄ tracked", color="#009E73", linestyle="-."),
    "P": dict(label="differential with P(t)", color="#0072B2", linestyle="--"),
    "P_tracked": dict(label="with P(t), b̄ tracked", color="#56B4E9", linestyle=":"),
}
"""How each Theorem 1 prediction (`Theorem1Curves.predictions`) is drawn."""


def _size_panel(axis, x, curves, reached) -> None:
    """Theorem 1's size: ‖Δẑ‖ / ‖Δz‖ (centred over tokens) of every prediction, log scale, 1 marked."""
    for tag, prediction in curves.predictions().items():
        _seed_curves(axis, x, prediction.size, reached, **PREDICTION_STYLES[tag])
    axis.axhline(1.0, color="gray", linewidth=0.8)
    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axis.yaxis.set_minor_formatter(NullFormatter())
    _finish(axis, "training step", "‖Δẑ‖ / ‖Δz‖ (centred, log scale)", "(c) Theorem 1's size (1: the right size)")


def plot_compare(results: BlockResults, path: Path) -> None:
    """The Fig. 2 picture with theory overlaid, two rows of three panels: (a) X; (b) Theorem 1's
    direction on the trained model (solid) and on the joint ODE (dotted); (c) its size, every
    prediction; (d) each flow's NC with the trained logits; (e) the attention entropy of training,
    the flows and the attention Theorem 1's ẑ implies; (f) Theorem 1's assumptions along training
    (`jomasim.assumptions`). With Adam the flows run on its clock and are drawn at the steps
    whose clock time they were saved at.

    A seed whose flow stopped early or whose training diverged is drawn only up to where all
    sides are valid, and the stop is marked with a red dotted line.

    **Arguments:**

    - `results`: the output of `run_compare`.
    - `path`: the PNG to write.
    """
    steps = results.steps
    members = results.members
    last = members.last_index
    reached = _reached(results)
    flows = {name: run for name, run in members.runs().items() if name != "train"}
    figure, grid = _subplots(2, 3, figsize=(12.5, 7.6))
    axes = list(grid.flat)
    _frequency_map(figure, axes[0], results)
    axes[0].set_title("(a) token frequencies X (seed 0)")

    _theorem1_panel(axes[1], steps, members.train.theorem1, reached, "trained")
    if "joint" in flows:
        _theorem1_panel(axes[1], steps, members.joint.theorem1, reached, "joint ODE", linestyle=":", linewidth=2.0)
    axes[1].axhline(1.0, color="gray", linewidth=0.8)
    _finish(axes[1], "training step", "normalized correlation", "(b) Theorem 1's direction: ẑ(V) vs z")
    _size_panel(axes[2], steps, members.train.theorem1, reached)

    for name, run in flows.items():
        style = FLOW_STYLES[name]
        _seed_curves(axes[3], steps, run.agreement.nc_z, reached, style["label"], color=style["color"],
                     linestyle=style["linestyle"])
        _mark_partings(axes[3], steps, run.agreement, style["color"], None)
    axes[3].axhline(AGREEMENT, color="gray", linestyle=":", linewidth=0.8)
    _finish(axes[3], "training step", "NC(z flow, z trained)", f"(d) flows vs training (▼: NC < {AGREEMENT})")

    _seed_curves(axes[4], steps, members.train.entropy, reached, "trained", color="black", linewidth=2.0)
    for name, run in flows.items():
        _seed_curves(axes[4], steps, run.entropy, reached, **FLOW_STYLES[name])
    _seed_curves(axes[4], steps, members.train.theorem1.closed.entropy, reached, "implied by ẑ (paper)",
                 **{key: value for key, value in PREDICTION_STYLES[""].items() if key != "label"})
    if members.probes is not None:
        _seed_curves(axes[4], steps, members.probes.entropy_sequences, reached, "trained, over sampled positions",
                     color="gray")
    _finish(axes[4], "training step", "attention entropy (nats)", "(e) attention entropy, mean over classes")
    _leak_panel(axes[5], steps, results, reached, "training step", "training")
    axes[5].set_title("(f) " + axes[5].get_title())

    for axis in axes[1:]:
        for stop in steps[last[last < len(steps) - 1]]:
            axis.axvline(stop, color="red", linestyle=":", linewidth=1)
    _save(figure, path)


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
    figure, axis = _subplots(figsize=(6.5, 4.8))
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
    _save(figure, path)


def _snapshots(axis, vs: np.ndarray, times: np.ndarray, mu: np.ndarray, label: str) -> None:
    """v against the component index, one line per snapshot coloured by time, μ dashed."""
    colours = colormaps["rainbow"](np.linspace(0.0, 1.0, len(vs)))
    index = np.arange(len(mu))
    for v, colour in zip(vs, colours):
        axis.plot(index, v, color=colour, linewidth=0.8)
    axis.plot(index, mu, "k--", linewidth=1.5, label="μ")
    axis.figure.colorbar(ScalarMappable(norm=Normalize(times[0], times[-1]), cmap="rainbow"), ax=axis,
                         label=label)
    _finish(axis, "component (sorted by μ)", "v", "")


def _entropy_curve(axis, x: np.ndarray, entropy: np.ndarray, limit: float, xlabel: str) -> None:
    """Entropy over time with its minimum marked and the limit H(softmax(μ²/T)) dotted."""
    lowest = int(np.argmin(entropy))
    axis.plot(x, entropy, color="black", label="attention entropy")
    axis.axhline(limit, color="gray", linestyle=":", label=f"limit H(softmax(μ²/T)) = {limit:.3f}")
    axis.plot([x[lowest]], [entropy[lowest]], "rv", label=f"minimum {entropy[lowest]:.3f} at {x[lowest]:.4g}")
    _finish(axis, xlabel, "entropy (nats)", "")


def plot_fig4(data: dict, summary: dict, path: Path) -> None:
    """Fig. 4: the authors' discrete update (top, the paper's run (a)) and the paper's ODE (bottom,
    run (b)); left v snapshots with μ dashed, right the attention entropy; panels lettered (a)–(d).

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.fig4.run_fig4`.
    - `path`: the PNG to write.
    """
    figure, axes = _subplots(2, 2, figsize=(12, 8))
    mu = data["mu"]
    _snapshots(axes[0, 0], data["discrete_v"], data["discrete_snapshot_steps"], mu, "iteration")
    axes[0, 0].set_title("(a) discrete update: v every 100 iterations")
    _entropy_curve(axes[0, 1], np.arange(len(data["discrete_entropy"])), data["discrete_entropy"],
                   summary["discrete"]["entropy_limit"], "iteration")
    axes[0, 1].set_title("(b) discrete update: entropy of softmax(v²/T)")
    every = max(1, len(data["ode_ts"]) // 50)
    _snapshots(axes[1, 0], data["ode_v"][::every], data["ode_ts"][::every], mu, "t")
    axes[1, 0].set_title(f"(c) ODE v̇ = (μ − v) ∘ exp(v²/2) (Diffrax): {summary['ode']['status']}")
    _entropy_curve(axes[1, 1], data["ode_ts"], data["ode_entropy"], summary["ode"]["entropy_limit"], "t")
    axes[1, 1].set_title("(d) ODE: entropy of softmax(v²/2)")
    _save(figure, path)


def plot_reach(data: dict, summary: dict, path: Path) -> None:
    """The ladder of `reproduce reach`: one row per rung (the matched-progress rungs last), three
    columns with one y-range each: the direction (NC of Theorem 1's ẑ with the trained z, solid;
    of the reduced flow's z, dashed), the size (‖Δẑ‖/‖Δz‖ and the reduced flow's, log scale) and
    the attention entropy; one colour per activation (thin: seeds, thick: their mean).

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.reach.run_reach`.
    - `path`: the PNG to write.
    """
    rungs, activations, steps = summary["rungs"], summary["activations"], data["steps"]
    figure, axes = _subplots(len(rungs), 3, figsize=(12.5, 2.1 * len(rungs)), squeeze=False, sharex=True, sharey="col")
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
                    values = data[key][row, index]
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
                axis.axhline(summary["agreement"], color="gray", linestyle=":", linewidth=0.8)
            axis.set_ylabel(f"{rung}\n{ylabel}" if column == 0 else ylabel, fontsize=8)
            axis.set_title(title if row == 0 else "")
            if row == 0:
                axis.legend(loc="best", fontsize=7)
    for axis in axes[-1]:
        axis.set_xlabel("step")
    _save(figure, path)


def plot_bounce(data: dict, summary: dict, path: Path) -> None:
    """The bounce search: one panel per setting, the attention entropy over training for each
    activation (seed mean), titled with the verdict's excess rebound (nonlinear − linear, ± its
    standard error over the seeds) and what it is: a bounce, no bounce, no dip (nothing tested) or
    censored (runs end at their minimum); and beside it (`PATH_tokens.png`) the attention on every token of the settings that keep it
    (`_plot_bounce_tokens`).

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.bounce.run_bounce`.
    - `path`: the PNG to write.
    """
    settings = summary["settings"]
    figure, axes = _panel_grid(len(settings), 4.1, 3.3)
    colours = ("black", "tab:red", "tab:green", "tab:blue", "tab:purple", "tab:orange")
    for index, (axis, name, verdict) in enumerate(zip(axes, settings, summary["verdicts"])):
        for activation, curves, colour in zip(summary["activations"][index], data[f"entropy_{index}"], colours):
            axis.plot(data[f"steps_{index}"], np.nanmean(curves, axis=0), color=colour, label=activation)
        excess = ("—" if verdict["excess"] is None else f"{verdict['excess']:+.2f}"
                  + ("" if verdict["excess_se"] is None else f" ± {verdict['excess_se']:.2f}"))
        mark = ("bounce" if verdict["bounce"] else "no dip" if not verdict["sparsified"]
                else "censored" if verdict["censored"]
                else "no bounce")
        _finish(axis, "step", "attention entropy (nats)" if axis.get_subplotspec().is_first_col() else "",
                f"{name}\nrebound excess {excess} nats: {mark}")
        axis.title.set_fontsize(8)
    _save(figure, path)
    if any(key.startswith("token_attention_") for key in data):
        _plot_bounce_tokens(data, summary, path.with_name(f"{path.stem}_tokens.png"))


def _plot_bounce_tokens(data: dict, summary: dict, path: Path) -> None:
    """Fig. 5's question, one row per setting that keeps the attention on every token, the linear
    MLP left and the first nonlinear one right: the first run's attention on each token (mean over
    classes) over training, coloured by salience (dark: most salient), a dot where each gaining
    token's rise peaks (`token_order`), titled with the rank correlation of salience rank and peak
    step (mean over runs)."""
    indices = [int(key.rsplit("_", 1)[1]) for key in data if key.startswith("token_attention_")]
    rows = {(row["setting"], row["activation"]): row for row in summary["tokens"]}
    figure = Figure(figsize=(11, 3.6 * len(indices)), layout="constrained")
    axes = figure.subplots(len(indices), 2, squeeze=False)
    colours = colormaps["viridis"]
    for (left, right), index in zip(axes, indices):
        setting, activations = summary["settings"][index], summary["activations"][index]
        steps = data[f"steps_{index}"]
        for axis, column in ((left, 0), (right, 1)):
            attention = data[f"token_attention_{index}"][column]
            salience = data[f"token_salience_{index}"][column]
            peaks = data[f"token_peak_step_{index}"][column][0]
            reached = np.flatnonzero(attention[0] > 0)
            order = reached[np.argsort(-salience[reached])]
            for rank, token in enumerate(order):
                colour = colours(rank / max(len(order) - 1, 1))
                axis.plot(steps, attention[:, token], color=colour, linewidth=1.2)
                if peaks[token] >= 0:
                    axis.plot([peaks[token]], [attention[np.searchsorted(steps, peaks[token]), token]], "o", color=colour,
                              markersize=4)
            row = rows[(setting, activations[column])]
            correlation = "–" if row["rank_correlation"] is None else f"{row['rank_correlation']:+.2f}"
            axis.set_xlabel("step")
            axis.set_ylabel("attention on the token (mean over classes)" if column == 0 else "")
            axis.set_title(f"{setting}, {activations[column]}: salience rank vs peak step ρ = {correlation}\n"
                           f"tokens per run: {row['tokens']:.0f}, gaining {row['gaining']:.1f}, recovering "
                           f"{row['recovering']:.1f}", fontsize=8)
            axis.set_yscale("log")
            # a token that loses all attention would stretch the axis over tens of decades
            axis.set_ylim(max(attention[:, reached].min(), 1e-3 * attention.max()) / 1.5, 1.5 * attention.max())
    figure.colorbar(ScalarMappable(Normalize(0, 1), colours), ax=axes[:, 1].tolist(),
                    label="salience rank (0: most salient, 1: least)", shrink=0.5)
    figure.savefig(path, dpi=110)


def plot_fig3(data: dict, summary: dict, path: Path) -> None:
    """Fig. 3: V(0) and V at the end (components 0..3 of v_0 boxed), those components over time
    with the closed form (J18–J19) dotted, and the singular values of V over time.

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.fig3.run_fig3`.
    - `path`: the PNG to write.
    """
    figure, axes = _subplots(2, 2, figsize=(12, 8.4))
    axes = axes.flat
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for axis, index, title in ((axes[0], 0, "V(0) = U_Cᵀ W(0)"), (axes[1], -1, f"V after {data['steps'][-1]} steps")):
        image = axis.imshow(data["V"][index], cmap="RdBu_r", aspect="auto")
        figure.colorbar(image, ax=axis)
        _finish_image(axis, title)
    for row, colour in enumerate(colours):
        axes[1].add_patch(Rectangle((-0.5, row - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=2))
        axes[2].plot(data["steps"], data["V"][:, row, 0], color=colour, label=f"component {row}")
        axes[2].plot(data["steps"], data["closed_form_V0"][:, row], color=colour, linestyle=":", linewidth=1)
    axes[2].axhline(0.0, color="gray", linestyle="--", linewidth=0.8)
    _finish(axes[2], "SGD step", "V[i, 0]", f"v_0 (dotted: closed form J18–J19); winner token {summary['winner'][0]}")
    lines = axes[3].semilogy(data["steps"], data["singular_values"], color="black", alpha=0.5, linewidth=0.8)
    lines[0].set_label("σ_i(V), i = 1 … min(M_c, K)")
    _finish(axes[3], "SGD step", "singular values of V", f"σ₁/σ₂ = {summary['sigma_ratio']:.1f} at the end")
    _save(figure, path)


def _finish_image(axis, title: str) -> None:
    axis.set_xlabel("hidden node k")
    axis.set_ylabel("contextual token l")
    axis.set_title(title)


def plot_scan_snap(data: dict, summary: dict, path: Path) -> None:
    """Scan&Snap's Fig. 6 laid out as the paper's: one panel per number of query (last) tokens, the
    average final entropy of the attention vector against η_Y/η_Z, one curve per η_Z, mean ± std
    over seeds.

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.scan_snap.run_scan_snap`.
    - `path`: the PNG to write.
    """
    panels, eta_z, ratios = data["grid_panels"], data["grid_eta_z"], data["grid_eta_ratio"]
    figure, axes = _panel_grid(len(panels), 4.1, 3.6)
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(eta_z)))
    for p, (axis, n_queries) in enumerate(zip(axes, panels)):
        for i, (rate, colour) in enumerate(zip(eta_z, colours)):
            axis.errorbar(ratios, data["entropy_mean"][p, i], yerr=data["entropy_std"][p, i], color=colour, marker="o",
                          capsize=3, label=f"η_Z = {rate:g}")
        axis.axvline(1.0, color="black", linestyle="--", linewidth=0.5)
        _finish(axis, "η_Y / η_Z", f"average entropy of c_n ({summary['entropy_of']})" if p == 0 else "",
                f"#last/next tokens = {n_queries}/{summary['panels'][p]['n_classes']}")
        if p > 0:
            axis.get_legend().remove()
    failed = f" ({summary['failed']} runs diverged, left out)" if summary["failed"] else ""
    figure.suptitle(f"final attention entropy after training{failed}")
    _save(figure, path)


def plot_table1(data: dict, summary: dict, path: Path) -> None:
    """Table 1: best-match correlation of level-0 and level-1 latents per setting (mean ± std over
    seeds; zero-mean and raw after training, zero-mean of the untrained network, faded), and the
    latent tree's co-occurrence against (J26).

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.table1.run_table1`.
    - `path`: the PNG to write.
    """
    rows = summary["table"]
    figure, axes = _subplots(1, 2, figsize=(12.5, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    positions = np.arange(len(rows))
    # per kind: its offset on the row and marker; per level: its colour
    kinds = {"zero_mean": (-0.15, "o"), "initial_zero_mean": (0.0, "s"), "raw": (0.15, "x")}
    colours = {0: "tab:blue", 1: "tab:orange"}
    for (kind, (offset, marker)), (level, colour) in itertools.product(kinds.items(), colours.items()):
        axes[0].errorbar(positions + offset, [row[f"s{level}_{kind}_mean"] for row in rows],
                         yerr=[row[f"s{level}_{kind}_std"] for row in rows], color=colour, marker=marker, linestyle="",
                         capsize=3, alpha=0.45 if kind.startswith("initial") else 1.0,
                         label=f"s = {level}, {kind.replace('initial_', 'untrained, ').replace('_', '-')}")
    axes[0].set_xticks(positions, [f"C={r['n_classes']}\nN_ch={r['n_children']}\n({r['n0']},{r['n1']})" for r in rows],
                       fontsize=7)
    _finish(axes[0], "setting", "best-match correlation", "latent ↔ hidden node of the same layer")
    axes[1].plot(data["cooccurrence_height"], data["cooccurrence_exact"], "k-", label="exact (J26)")
    axes[1].plot(data["cooccurrence_height"], data["cooccurrence_estimate"], "ro", label="Monte Carlo")
    _finish(axes[1], "height of the common ancestor", "P[y_l = 1 | y_m = 1]", "latent-tree co-occurrence")
    _save(figure, path)


def plot_wikitext(data: dict, summary: dict, path: Path) -> None:
    """Fig. 6 / Fig. 8: one panel per (depth, learning rate), one curve per layer (seed mean of the
    attention entropy at each checkpoint, solid) and the stable rank of that layer's MLP lower layer
    (dashed, right axis), titled with the minimum validation loss.

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.wikitext.run_wikitext`.
    - `path`: the PNG to write.
    """
    runs = summary["runs"]
    figure, axes = _panel_grid(len(runs), 4.1, 3.6)
    for index, (axis, run) in enumerate(zip(axes, runs)):
        entropy = data[f"entropy_{index}"].mean(axis=0)
        colours = colormaps["rainbow"](np.linspace(0.0, 1.0, run["depth"]))
        ranks = axis.twinx()
        for layer, colour in enumerate(colours):
            axis.plot(data["steps"], entropy[:, layer], color=colour, label=f"layer {layer}" if run["depth"] <= 5 else None)
            if f"stable_rank_{index}" in data:
                ranks.plot(data["steps"], data[f"stable_rank_{index}"].mean(axis=0)[:, layer], color=colour, linestyle="--")
        ranks.set_ylabel("MLP stable rank (dashed)")
        axis.set_title(f"layers: {run['depth']}, lr: {run['lr']:g}, val loss: {run['valid_loss_min']:.2f}", fontsize=9)
        axis.set_xlabel("minibatch")
        axis.set_ylabel("attention entropy (nats, solid)")
        if run["depth"] <= 5:
            axis.legend(fontsize=7)
    _save(figure, path)


def plot_pretrained(data: dict, summary: dict, path: Path) -> None:
    """Attention entropy (left) and stable rank of the first MLP weight (right) per layer against
    the checkpoint step.

    **Arguments:**

    - `data`, `summary`: the output of `jomasim.experiments.pretrained.run_pretrained`.
    - `path`: the PNG to write.
    """
    figure, axes = _subplots(1, 2, figsize=(12, 4.5))
    layers = data["entropy"].shape[1]
    colours = colormaps["rainbow"](np.linspace(0.0, 1.0, layers))
    for layer, colour in enumerate(colours):
        label = f"layer {layer}" if layers <= 12 else None
        axes[0].plot(data["steps"], data["entropy"][:, layer], "o-", color=colour, label=label)
        axes[1].plot(data["steps"], data["stable_rank"][:, layer], "o-", color=colour, label=label)
    _finish(axes[0], "checkpoint step", "attention entropy (nats)", "attention entropy per layer")
    _finish(axes[1], "checkpoint step", "‖W‖_F² / ‖W‖₂²", "stable rank of the MLP's first weight")
    _save(figure, path)


def plot_fit(run, results, path: Path) -> None:
    """A fit of the reduced flow to a training run: the first seed's trained logits (the three that
    end largest) against the flow before (dotted) and after (dashed) the fit, and NC(z flow,
    z trained) per seed over the saves, the held-out part right of the grey line; with several
    pieces of ρ(t), ρ(t) per seed.

    **Arguments:**

    - `run`: the `TrainedRun`; `results`: its `FitResults`.
    - `path`: the PNG to write.
    """
    steps, boundary = results.steps, results.steps[results.fitted - 1]
    pieces = results.lr_ratio.shape[1]
    figure, axes = _subplots(1, 2 + (pieces > 1), figsize=(12.5, 4.5))
    logits, agreement = axes[:2]
    colours = colormaps["viridis"](np.linspace(0.0, 0.8, 3))
    for colour, token in zip(colours, np.argsort(-run.z[0, -1])[:3]):
        logits.plot(steps, run.z[0, :, token], color=colour, label=f"trained z[{token}]")
        logits.plot(steps, results.z_before[0, :, token], color=colour, linestyle=":")
        logits.plot(steps, results.z_after[0, :, token], color=colour, linestyle="--")
    logits.axvline(boundary, color="gray", linewidth=0.8)
    _finish(logits, "SGD step", "attention logit", f"seed {int(run.seeds[0])}: trained (solid), flow before (dotted) "
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
    _finish(agreement, "SGD step", "NC(z flow, z trained)", title)
    if pieces > 1:
        edges = np.concatenate([[steps[0]], results.knots, [steps[-1]]])
        for seed, ratios in enumerate(results.lr_ratio):
            axes[2].stairs(ratios, edges, label=f"seed {int(run.seeds[seed])}")
        axes[2].axvline(boundary, color="gray", linewidth=0.8)
        _finish(axes[2], "SGD step", "fitted rho(t)", f"rho(t) on {pieces} pieces (trained with "
                f"{run.config.eta_z / run.config.eta_w:.3g})")
    _save(figure, path)
