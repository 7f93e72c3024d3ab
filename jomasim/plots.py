"""Matplotlib figures of jomasim runs (written to files; no screen needed)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .theory import Status  # noqa: E402


def _mark_failures(axis, ts, t_final, status) -> None:
    """Draws a red cross at the end time of every trajectory that did not finish."""
    for time, code in zip(t_final, status):
        if code != Status.OK:
            axis.axvline(time, color="red", linestyle=":", linewidth=1)
            axis.plot([time], [axis.get_ylim()[0]], "rx")


def plot_block_theory(results: dict, path: Path) -> None:
    """Token frequencies, the Theorem 1 correlation curves, and attention entropy over time.

    Curves are drawn only up to the time each trajectory reached; trajectories that stopped early
    are marked with a red dotted line and a cross.

    **Arguments:**

    - `results`: the output of `run_block_theory`.
    - `path`: the PNG to write.
    """
    ts = results["ts"]
    reached = ts[None, :] <= np.minimum(results["t_final_joint"], results["t_final_reduced"])[:, None]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))

    image = left.imshow(results["X"][0], aspect="auto", cmap="viridis")
    left.set_xlabel("class y")
    left.set_ylabel("contextual token l")
    left.set_title(f"X (seed {int(results['seeds'][0])})")
    figure.colorbar(image, ax=left)

    styles = {
        "nc_zhat_z": ("red", "-", "NC(ẑ, z)"),
        "nc_zhat1_z": ("green", "--", "NC(ẑ₁, z)"),
        "nc_zhat2_z": ("blue", "--", "NC(ẑ₂, z)"),
        "nc_reduced_z": ("black", ":", "NC(z reduced ODE, z joint ODE)"),
    }
    for name, (color, style, label) in styles.items():
        if name not in results:
            continue
        for seed, curve in enumerate(results[name]):
            middle.plot(ts[reached[seed]], curve[reached[seed]], color=color, linestyle=style, alpha=0.6,
                        label=label if seed == 0 else None)
    middle.axhline(1.0, color="gray", linewidth=0.8)
    middle.set_xlabel("t")
    middle.set_ylabel("normalized correlation")
    middle.set_title("Theorem 1 on the joint flow")
    middle.legend(loc="lower right", fontsize=8)
    _mark_failures(middle, ts, results["t_final_joint"], results["status_joint"])

    for seed in range(len(results["seeds"])):
        mask = reached[seed]
        right.plot(ts[mask], results["entropy_joint"][seed][mask], color="tab:orange", alpha=0.7,
                   label="joint flow" if seed == 0 else None)
        right.plot(ts[mask], results["entropy_reduced"][seed][mask], color="tab:purple", linestyle="--", alpha=0.7,
                   label="reduced JoMA flow" if seed == 0 else None)
    right.set_xlabel("t")
    right.set_ylabel("attention entropy (nats)")
    right.set_title("attention entropy, mean over classes")
    right.legend(fontsize=8)
    _mark_failures(right, ts, results["t_final_reduced"], results["status_reduced"])

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
