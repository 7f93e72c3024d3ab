"""What the `jomasim` command prints: tables of per-seed numbers and where runs part."""

from ..comparison import AGREEMENT


def without_lists(value):
    """A summary's scalars (nested dicts kept, lists dropped), for printing."""
    if isinstance(value, dict):
        return {key: without_lists(item) for key, item in value.items() if not isinstance(item, list)}
    return value


def format_rows(rows: list[dict]) -> str:
    """A list of rows (dicts with the same keys) as an aligned text table."""
    cells = [list(rows[0])] + [[f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values()]
                               for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(cells[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


def print_table(summary: dict, columns: tuple[str, ...], statuses: tuple[str, ...], ok: str = "ok") -> None:
    """One row per seed (and a mean row) of the chosen summary columns and, for each status column
    whose entry is not `ok`, what it says."""
    columns = [column for column in columns if column in summary]
    print("seed  " + "  ".join(f"{column:>14}" for column in columns) + "  status")
    for row, seed in enumerate(summary["seeds"]):
        values = "  ".join(f"{summary[column][row]:14.4f}" for column in columns)
        problems = [f"{status.removeprefix('status_')}: {summary[status][row]}" for status in statuses
                    if summary[status][row] != ok]
        print(f"{seed:4d}  {values}  {'; '.join(problems) or 'ok'}")
    means = "  ".join(f"{sum(summary[column]) / len(summary[column]):14.4f}" for column in columns)
    print(f"mean  {means}")


RUN_NAMES = {"train": "training", "ode": "the joint ODE", "reduced": "the reduced JoMA ODE",
             "tracked": "the tracked-b̄ JoMA ODE"}


def print_agreement(summary: dict, reference: str, clock: str, model: str = "block") -> None:
    """One line per run compared with the reference (output names, `RUN_NAMES`): on which seeds, and
    from where (the summary's `parted_step_RUN`), the two part; `model` is the trained model's name."""
    seeds = summary["seeds"]
    for side in (side for side in RUN_NAMES if f"parted_step_{side}" in summary):
        key = f"parted_step_{side}"
        run, other = RUN_NAMES[side], RUN_NAMES[reference]
        parted = [(seed, step, final) for seed, step, final in zip(seeds, summary[key], summary[f"nc_{side}_z"])
                  if step is not None]
        if not parted:
            print(f"{run} agrees with {other} (NC of z at least {AGREEMENT}) at every save on all {len(seeds)} seeds")
            continue
        at = "step " if clock == "step" else f"{clock} = "
        where = ", ".join(f"seed {seed} at {at}{step:g}" for seed, step, _ in parted)
        back = sum(final >= AGREEMENT for _, _, final in parted)
        print(f"{run} parts from {other} (NC of z below {AGREEMENT}) on {len(parted)} of {len(seeds)} seeds: {where}; "
              f"{back} of them end at or above {AGREEMENT} again")
        if (side, reference, model) == ("ode", "train", "block"):
            print("  (the joint ODE is SGD's limit of small steps: where they part, the learning rate is too large for "
                  "the flow to describe the training)")
        drifts = [100 * drift for drift in summary.get(f"bbar_drift_parted_{side}", []) if drift is not None]
        if drifts:
            low, high = f"{min(drifts):.0f}", f"{max(drifts):.0f}"
            span = low if low == high else f"{low}–{high}"
            print(f"  (where it parts, the mean attention b̄ of {other} has drifted {span} % from the x̄ that "
                  "Theorem 1's softmax invariant holds fixed)")
