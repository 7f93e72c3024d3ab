"""The figures of the §3.5 block's runs: `simulate` (theory only) and `compare` (training against
the flows)."""

from pathlib import Path

import numpy as np
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ...comparison import AGREEMENT
from ...experiments import BlockResults
from ...theory import Status
from ._common import finish, save, subplots


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
    finish(axis, xlabel, "relative size", f"Theorem 1's assumptions along {run}")


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
    figure, ((left, middle), (right, leaks)) = subplots(2, 2, figsize=(12.5, 8.4))
    _frequency_map(figure, left, results)

    _theorem1_panel(middle, ts, joint.theorem1, reached)
    _seed_curves(middle, ts, reduced.agreement.nc_z, reached, "NC(z reduced ODE, z joint ODE)", color="black",
                 linestyle=":")
    _mark_partings(middle, ts, reduced.agreement, "black", f"reduced ODE parts from the joint (NC < {AGREEMENT})")
    _seed_curves(middle, ts, tracked.agreement.nc_z, reached, "NC(z tracked-b̄ ODE, z joint ODE)", color="tab:green",
                 linestyle=":")
    middle.axhline(1.0, color="gray", linewidth=0.8)
    middle.axhline(AGREEMENT, color="gray", linestyle=":", linewidth=0.8)
    finish(middle, "t", "normalized correlation", "Theorem 1 on the joint flow")
    _mark_failures(middle, joint.outcome)

    _seed_curves(right, ts, joint.entropy, reached, "joint flow", color="tab:orange")
    _seed_curves(right, ts, reduced.entropy, reached, "reduced JoMA flow", color="tab:purple", linestyle="--")
    _seed_curves(right, ts, tracked.entropy, reached, "tracked-b̄ flow", color="tab:green", linestyle=":")
    finish(right, "t", "attention entropy (nats)", "attention entropy, mean over classes")
    _mark_failures(right, reduced.outcome)
    _leak_panel(leaks, ts, results, reached, "t", "the joint flow")
    save(figure, path)


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
    finish(axis, "training step", "‖Δẑ‖ / ‖Δz‖ (centred, log scale)", "(c) Theorem 1's size (1: the right size)")


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
    figure, grid = subplots(2, 3, figsize=(12.5, 7.6))
    axes = list(grid.flat)
    _frequency_map(figure, axes[0], results)
    axes[0].set_title("(a) token frequencies X (seed 0)")

    _theorem1_panel(axes[1], steps, members.train.theorem1, reached, "trained")
    if "joint" in flows:
        _theorem1_panel(axes[1], steps, members.joint.theorem1, reached, "joint ODE", linestyle=":", linewidth=2.0)
    axes[1].axhline(1.0, color="gray", linewidth=0.8)
    finish(axes[1], "training step", "normalized correlation", "(b) Theorem 1's direction: ẑ(V) vs z")
    _size_panel(axes[2], steps, members.train.theorem1, reached)

    for name, run in flows.items():
        style = FLOW_STYLES[name]
        _seed_curves(axes[3], steps, run.agreement.nc_z, reached, style["label"], color=style["color"],
                     linestyle=style["linestyle"])
        _mark_partings(axes[3], steps, run.agreement, style["color"], None)
    axes[3].axhline(AGREEMENT, color="gray", linestyle=":", linewidth=0.8)
    finish(axes[3], "training step", "NC(z flow, z trained)", f"(d) flows vs training (▼: NC < {AGREEMENT})")

    _seed_curves(axes[4], steps, members.train.entropy, reached, "trained", color="black", linewidth=2.0)
    for name, run in flows.items():
        _seed_curves(axes[4], steps, run.entropy, reached, **FLOW_STYLES[name])
    _seed_curves(axes[4], steps, members.train.theorem1.closed.entropy, reached, "implied by ẑ (paper)",
                 **{key: value for key, value in PREDICTION_STYLES[""].items() if key != "label"})
    if members.probes is not None:
        _seed_curves(axes[4], steps, members.probes.entropy_sequences, reached, "trained, over sampled positions",
                     color="gray")
    finish(axes[4], "training step", "attention entropy (nats)", "(e) attention entropy, mean over classes")
    _leak_panel(axes[5], steps, results, reached, "training step", "training")
    axes[5].set_title("(f) " + axes[5].get_title())

    for axis in axes[1:]:
        for stop in steps[last[last < len(steps) - 1]]:
            axis.axvline(stop, color="red", linestyle=":", linewidth=1)
    save(figure, path)

