"""What the `jomasim` command prints: tables of per-seed numbers and where runs part."""

from ..comparison import AGREEMENT


def without_lists(value):
    """A summary's scalars (nested dicts kept, lists dropped), for printing."""
    if isinstance(value, dict):
        return {key: without_lists(item) for key, item in value.items() if not isinstance(item, list)}
    return value


def cell_text(value) -> str:
    """A table cell: a float to 4 significant digits (a whole number, such as a step, in full), None
    (no such number) as "–"."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e9 else f"{value:.4g}"
    return str(value)


def format_rows(rows: list[dict]) -> str:
    """A list of rows (dicts with the same keys) as an aligned text table, under the `HEADERS`."""
    cells = [[HEADERS.get(key, (key,))[0] for key in rows[0]]] + [[cell_text(value) for value in row.values()] for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(cells[0]))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


HEADERS = {
    "nc_zhat_z": ("NC(ẑ,z)", "Theorem 1's direction: NC of the closed-form ẑ(V) with the logits z"),
    "nc_dzhat_dz": ("NC(Δẑ,Δz)", "the same for the change since the start"),
    "size_zhat_z": ("size ẑ", "Theorem 1's size ‖Δẑ‖/‖Δz‖, centred over tokens (1: the right size)"),
    "size_zhat_tracked_z": ("size ẑ,b̄(t)", "the same with the current mean attention b̄(t) (differential form)"),
    "nc_zhatP_z": ("NC(ẑP,z)", "Theorem 1 with the measured preconditioner P(t) of W_Q, W_K: direction"),
    "size_zhatP_z": ("size ẑP", "and size"),
    "entropy_zhat": ("H(ẑ)", "attention entropy (nats) implied by ẑ"),
    "entropy_train": ("H trained", "attention entropy of the trained model"),
    "entropy_ode": ("H joint", "attention entropy of the joint ODE"),
    "nc_ode_z": ("NC joint", "NC of the joint ODE's z with the reference's"),
    "nc_reduced_z": ("NC reduced", "NC of the reduced JoMA ODE's z with the reference's"),
    "size_reduced_z": ("size reduced", "its size ‖Δz_flow‖/‖Δz‖"),
    "nc_tracked_z": ("NC tracked", "NC of the tracked-b̄ ODE's z"),
    "size_tracked_z": ("size tracked", "its size"),
    "nc_preconditioned_z": ("NC P-flow", "NC of the reduced ODE driven by the measured P(t)"),
    "size_preconditioned_z": ("size P-flow", "its size"),
    "nc_zhat_z_worst_query": ("worst query", "the lowest NC(ẑ,z) over the queries"),
    "attention_rate": ("rate", "the logits' rate factor on η_z (diagonal of P, mean)"),
    "fitted_lr_ratio": ("fitted ρ", "the fitted rate ratio η_z/η_w"),
    "fitted_time_scale": ("time scale", "the fitted factor on the flow's clock"),
    "correlation_lr_ratio_time_scale": ("corr(ρ,s)", "the fit's correlation of ρ with the time scale (near ±1: the "
                                        "saves cannot tell them apart)"),
    "nc_before": ("NC before", "NC of the flow at the start values with training, held-out saves"),
    "nc_after": ("NC fitted", "NC after the fit, fitted saves"),
    "nc_held_out": ("NC held out", "NC after the fit, held-out saves"),
    "size_held_out": ("size", "the fitted flow's ‖Δz‖/‖Δz trained‖ at the last save (1: the right size)"),
    "activation": ("MLP", "the MLP's activation"),
    "progress": ("rates", "the stored rates, or the matched rung's calibration"),
    "eta_w": ("η_w", "the MLP's learning rate"),
    "eta_z": ("η_z", "the attention's learning rate"),
    "loss_end": ("loss", "training's loss on the frequency bags at its end"),
    "entropy_drop": ("drop", "how far training's attention entropy fell by its end (nats)"),
    "setting": ("setting", "the setting searched"),
    "entropy_initial": ("H start", "the attention entropy at the start (nats)"),
    "entropy_min": ("H min", "its lowest value"),
    "entropy_min_step": ("at step", "where it is lowest"),
    "entropy_final": ("H end", "its value at the end"),
    "rebound": ("rebound", "H end − H min (nats)"),
    "stable_rank_rebound": ("srank rebound", "the stable rank of the MLP's lower layer, end − lowest (– without an MLP)"),
    "runs": ("runs", "the runs that stayed finite"),
    "ingredient": ("ingredient", "what the runs with and without it differ in"),
    "needed": ("needed", "pairs where only the run with it rebounds"),
    "not_needed": ("not needed", "pairs where the run without it rebounds"),
    "neither": ("neither", "pairs where neither run rebounds"),
    "untested": ("untested", "pairs with a run that never got sparse, is censored or failed"),
    "gaining": ("gaining", "tokens per run whose attention rises above its start by more than token_gain"),
    "recovering": ("recovering", "tokens per run that lose attention, then win some back"),
    "rank_correlation": ("ρ", "rank correlation of salience rank and peak step (+: less salient tokens peak later)"),
    "later_share": ("ρ > 0", "share of runs with a positive ρ"),
    "peaks_at_end": ("peak at end", "share of gaining tokens whose peak is the last save (still rising)"),
    "censored": ("censored", "of those, the runs whose minimum lies at their end (within censor_within, 2 % by default)"),
    "last_step": ("read at", "the step the other numbers are read at: the last save every run reached"),
}
"""The printed header of each summary column, and what it means (the legend under a table)."""


def seed_numbers(summary: dict, key: str) -> list[float]:
    """The seeds' numbers of a summary column (none where it is missing), without the missing ones."""
    return [value for value in summary.get(key, []) if value is not None]


def print_table(summary: dict, columns: tuple[str, ...], statuses: tuple[str, ...], ok: str = "ok") -> None:
    """One row per seed (and a mean row over the seeds with a number) of the chosen summary columns
    under their `HEADERS` (a missing number, e.g. a flow that never moved, prints "–"), for each
    status column whose entry is not `ok` what it says, and a legend of the headers."""
    columns = [column for column in columns if column in summary]
    statuses = [status for status in statuses if status in summary]
    headers = [HEADERS.get(column, (column, None))[0] for column in columns]
    widths = [max(len(header), 8) for header in headers]
    number = lambda value, width: f"{value:{width}.4f}" if value is not None else "–".rjust(width)  # noqa: E731
    print("seed  " + "  ".join(header.rjust(width) for header, width in zip(headers, widths)) + "  status")
    for row, seed in enumerate(summary["seeds"]):
        values = "  ".join(number(summary[column][row], width) for column, width in zip(columns, widths))
        problems = [f"{status.removeprefix('status_')}: {summary[status][row]}" for status in statuses
                    if summary[status][row] != ok]
        print(f"{seed:4d}  {values}  {'; '.join(problems) or 'ok'}")
    means = [seed_numbers(summary, column) for column in columns]
    print("mean  " + "  ".join(number(sum(values) / len(values) if values else None, width)
                               for values, width in zip(means, widths)))
    legend = [f"{HEADERS[column][0]}: {HEADERS[column][1]}" for column in columns if column in HEADERS]
    if legend:
        print("(" + "; ".join(legend) + ")")


PREDICTION_NAMES = {"": "closed form (the paper's)", "_tracked": "differential form, b̄ tracked",
                    "P": "with the measured P(t)", "P_tracked": "with P(t), b̄ tracked"}
"""Theorem 1's predictions by their output tag (`Theorem1Curves.predictions`), in words."""


def print_theorem1(summary: dict, reference: str) -> None:
    """Theorem 1 on the reference run in one line per prediction, direction beside size, and the
    attention entropy the closed form implies beside the run's: ranges over seeds."""
    print(f"Theorem 1 on {RUN_NAMES[reference]} (range over seeds at the last save every run reached):")
    for tag, name in PREDICTION_NAMES.items():
        nc, size = seed_numbers(summary, f"nc_zhat{tag}_z"), seed_numbers(summary, f"size_zhat{tag}_z")
        if nc and size:
            held = ", b̄ held at x̄" if not tag and "nc_zhat_tracked_z" in summary else ""  # forms that hold a b̄
            print(f"  {name}{held}: direction NC(ẑ, z) {_span(nc, '.3f')}, size ‖Δẑ‖/‖Δz‖ {_span(size, '.2f')}")
    if not seed_numbers(summary, "nc_zhat_z"):
        print("  – on every seed: nothing to test (no save after the start was reached by every run; above)")
        return
    # entropies only where Theorem 1 was read after the start (at the start both are the initial one)
    read = [index for index, value in enumerate(summary["nc_zhat_z"]) if value is not None]

    def at_read(key: str) -> list[float]:
        return [summary[key][index] for index in read if summary[key][index] is not None] if key in summary else []

    implied, own = at_read("entropy_zhat"), at_read(f"entropy_{reference}")
    if implied and own:
        print(f"  the attention the closed form implies has entropy {_span(implied, '.2f')} nats against "
              f"{_span(own, '.2f')} for {RUN_NAMES[reference]}")


RUN_NAMES = {"train": "training", "ode": "the joint ODE", "reduced": "the reduced JoMA ODE",
             "tracked": "the tracked-b̄ JoMA ODE", "preconditioned": "the reduced JoMA ODE driven by the measured P(t)"}


def stopped_early(summary: dict) -> dict[int, str]:
    """The seeds (by index) on which a run stopped early or diverged, with what happened in words:
    their numbers are read at the last save every run reached (`last_step`), not at the end."""
    stops = {}
    for index in range(len(summary["seeds"])):
        events = [f"{RUN_NAMES.get(key[len('status_'):], key)}: {messages[index]}" for key, messages in summary.items()
                  if key.startswith("status_") and isinstance(messages, list) and messages[index] != "ok"]
        if events:
            stops[index] = "; ".join(events)
    return stops


def _at(clock: str) -> str:
    """How a time on `clock` is introduced: "step 40", "t = 4"."""
    return "step " if clock == "step" else f"{clock} = "


def print_stops(summary: dict, clock: str) -> None:
    """One line per seed whose numbers stop before the end (`stopped_early`): where, and why."""
    for index, events in stopped_early(summary).items():
        print(f"seed {summary['seeds'][index]}: every number is read at {_at(clock)}{summary['last_step'][index]:g}, the last "
              f"save every run reached ({events})")


def print_agreement(summary: dict, reference: str, clock: str, model: str = "block") -> None:
    """One line per run compared with the reference (output names, `RUN_NAMES`): on which seeds, and
    from where (the summary's `parted_step_RUN`), the two part; `model` is the trained model's name.
    Agreement is judged only up to the last save every run reached: on a seed where a run stopped
    early (`stopped_early`) no run is said to agree "at every save"."""
    seeds = summary["seeds"]
    stops = stopped_early(summary)
    for side in (side for side in RUN_NAMES if f"parted_step_{side}" in summary):
        key = f"parted_step_{side}"
        run, other = RUN_NAMES[side], RUN_NAMES[reference]
        parted = [(seed, step, final) for seed, step, final in zip(seeds, summary[key], summary[f"nc_{side}_z"])
                  if step is not None]
        sizes = seed_numbers(summary, f"size_{side}_z")
        size = (f"; the size of its change is {_span(sizes, '.2f')}× {other}'s (1: the right size)"
                if sizes else "")
        if not seed_numbers(summary, f"nc_{side}_z"):
            print(f"{run}: no NC of z with {other} on any seed (no save after the start was reached by every run, "
                  "or the logits never moved)")
            continue
        if not parted:
            whole = len(seeds) - len(stops)
            if not stops:
                print(f"{run} agrees in direction with {other} (NC of z at least {AGREEMENT}) at every save on all "
                      f"{len(seeds)} seeds{size}")
            elif whole:
                print(f"{run} agrees in direction with {other} (NC of z at least {AGREEMENT}) at every save on {whole} of "
                      f"{len(seeds)} seeds; on {len(stops)} only up to where a run stopped early (above){size}")
            else:
                print(f"{run} agrees in direction with {other} (NC of z at least {AGREEMENT}) on every save compared, "
                      f"but on no seed to the end: a run stopped early on each (above){size}")
            continue
        where = ", ".join(f"seed {seed} at {_at(clock)}{step:g}" for seed, step, _ in parted)
        back = sum(final >= AGREEMENT for _, _, final in parted)
        print(f"{run} parts from {other} (NC of z below {AGREEMENT}) on {len(parted)} of {len(seeds)} seeds: {where}; "
              f"{back} of them end at or above {AGREEMENT} again{size}")
        if (side, reference, model) == ("ode", "train", "block"):
            print("  (the joint ODE is SGD's limit of small steps: where they part, the learning rate is too large for "
                  "the flow to describe the training)")
        drifts = [100 * drift for drift in summary.get(f"bbar_drift_parted_{side}", []) if drift is not None]
        if drifts:
            print(f"  (where it parts, the mean attention b̄ of {other} has drifted {_span(drifts, '.0f')} % from the x̄ "
                  "that Theorem 1's softmax invariant holds fixed)")


def _span(values: list[float], spec: str) -> str:
    """The range of `values` as "low–high" (one number when they print the same)."""
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low} to {high}" if min(values) < 0 else f"{low}–{high}"
