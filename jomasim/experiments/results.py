"""Typed results of the §3.5 block experiments, and the one place their names are flattened.

A member's runs (`train`: SGD on the block; `joint`: the joint gradient flow; `reduced`: the
reduced JoMA flow; `tracked`: Theorem 1 with the current mean attention, `TrackedMeanFlow`;
`preconditioned`: a Transformer's reduced flow driven by its measured P(t)) are each one
`RunResult`; everything a member gives is one `MemberResult`;
`compare`, `simulate`, the sweeps, the plots and the CLI read their fields. Names appear only
where results are written: `flatten` (the curves of `data.npz`) and `scalars` (the per-member
numbers of `summary.json` and of a sweep's table), with one scheme:

- a run's quantity is `QUANTITY_RUN`, the run named `train`, `ode` (the joint flow, the name the
  outputs have always had), `reduced`, `tracked` or `preconditioned`: `z_train`, `entropy_ode`,
  `nc_reduced_z` (NC of the run's z against the reference's), `nc_reduced_dz` and `size_reduced_z`
  (the same in displacement form, and the size of its change against the reference's),
  `parted_step_reduced`, `status_ode`, `t_final_ode`;
- Theorem 1 on the reference run is unsuffixed, on the joint flow in `both` mode suffixed `_ode`
  (`nc_zhat_z_ode`); each prediction (tag `TAG`: `""` the closed form, `_tracked`, `P`,
  `P_tracked`) has `nc_zhatTAG_z`, `nc_dzhatTAG_dz`, `size_zhatTAG_z`, `entropy_zhatTAG`; so are
  the residual and the leak curves (`invariant_residual`, `bbar_drift`);
- in `scalars`, a curve's name is its value at the last save every run reached; other statistics
  of a curve add a suffix: `_initial`, `_max`, `_min`, `_min_step`, `_rebound`.
"""

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ..assumptions import LeakCurves
from ..comparison import Agreement, Theorem1Curves
from ..models.one_layer import READ_PATHS
from ..theory import Status

RUNS = ("train", "joint", "reduced", "tracked", "preconditioned")
"""The runs of a member, as `MemberResult` names them."""

OUTPUT_NAMES = {"train": "train", "joint": "ode", "reduced": "reduced", "tracked": "tracked",
                "preconditioned": "preconditioned"}
"""How the outputs name each run."""


class StudyResult(Protocol):
    """What a study's typed result gives the run folder's writer: its arrays (`NAME.npz`) and its
    summary (`summary.json`, whose `table`, a list of rows, is also written as a CSV). Each study
    returns its own final result type (`Fig3Result`, `ReachResult`, …) whose fields are what it
    measured; the figures read those fields."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays the figure is drawn from, by name."""
        ...

    def summary(self) -> dict[str, Any]:
        """The numbers that carry the study's claim, as JSON values."""
        ...


SNAP_TOLERANCE = 0.01
"""A run has snapped once its attention entropy stays within this fraction of the initial entropy
of its final value until the end (having left that band before)."""


class SolveOutcome(NamedTuple):
    """How a flow's solve ended: its `Status` code, the time it reached (on the saves' clock)
    and its step counts."""

    status: jax.Array
    t_final: jax.Array
    num_steps: jax.Array
    num_rejected_steps: jax.Array


class RunResult(NamedTuple):
    """One run of a member at every save.

    **Fields:**

    - `z`: attention logits `(n, M_c)`; `V`: projected weights `(n, M_c, K)`; `entropy`: the mean
      attention entropy `(n,)`.
    - `outcome`: how the solve ended (flows); `None` for training.
    - `agreement`: against the reference run; `None` for the reference itself.
    - `theorem1`: Theorem 1 along this run (the reference, and the joint flow in `both` mode).
    """

    z: jax.Array
    V: jax.Array
    entropy: jax.Array
    outcome: SolveOutcome | None = None
    agreement: Agreement | None = None
    theorem1: Theorem1Curves | None = None


class Training(NamedTuple):
    """The SGD run's losses: before every step `(steps,)`, at the saves `(n,)`, and its first
    non-finite step (−1 if none)."""

    losses: jax.Array
    loss: jax.Array
    diverged_at: jax.Array


class TransformerProbes(NamedTuple):
    """What only a Transformer run has (`jomasim compare --model transformer`), at every save.

    **Fields:**

    - `nc_zhat_z_queries`: Theorem 1's NC(ẑ(V), z_m) for every query m, `(n, M_Q)` (each query's
      invariant fixed at its own initial logits; exact only for one query, JOMA_MATH §2.6a).
    - `attention_rate`: the factor on η_z of the logits' own motion, averaged over queries and
      tokens, `(n,)` (1 for direct logits; (‖W_Q a_m‖² + ‖W_K a_l‖²)/d_k for `qk`).
    - `entropy_sequences`: the mean attention entropy over the positions of a fixed evaluation
      batch of sampled sequences (of the frequency bags in the expectation limit), `(n,)`.
    - `preconditioner`: the first query's P(t), `(n, M_c, M_c)`, as the flows' `times` run: with
      SGD that of learned W_Q, W_K (`Probe.preconditioner`; `None` for direct logits, P = I); with
      Adam its J D⁻¹ Jᵀ (`OneLayerTransformer.scaled_preconditioner`) divided by `adam_rate_w`,
      the logits' motion per unit of the MLP's Adam clock.
    - `read_gain`: LayerNorm's gain 1/σ on JoMA's read (`OneLayerTransformer.read_gain`, 1
      without it) on the expectation bags, `(n,)`.
    - `path_shares`: the share of the first query's Δz since the start that each path of the
      LayerNorm on the MLP's input carries (`READ_PATHS`: JoMA's, the centring, the scale;
      `comparison.carried_shares` of −η_z P ∂L/∂z on the expectation bags, P SGD's or Adam's
      J D⁻¹ Jᵀ), `(n, 3)`.
    - `adam_rate`: with Adam, how far one step moves the attention parameters per unit of
      gradient against an SGD step (`train.adam_step_factor`), `(n,)` (at the start the first
      step's); `None` with SGD. `adam_clock`: its sum over the steps up to each save (trapezoid
      rule), Adam's clock in SGD steps. `adam_rate_w`, `adam_clock_w`: the same for the MLP's
      group; its clock is the flows' time (`block.Readout.clock`).
    - `weight_preconditioner`: with Adam, its D⁻¹ on the MLP's weights in the block's
      coordinates (`(n, d, K)`, per unit of `adam_clock_w`, as `preconditioner`); `None` with SGD.
    """

    nc_zhat_z_queries: jax.Array
    attention_rate: jax.Array
    entropy_sequences: jax.Array
    preconditioner: jax.Array | None = None
    read_gain: jax.Array | None = None
    path_shares: jax.Array | None = None
    adam_rate: jax.Array | None = None
    adam_clock: jax.Array | None = None
    adam_rate_w: jax.Array | None = None
    adam_clock_w: jax.Array | None = None
    weight_preconditioner: jax.Array | None = None


class MemberResult(NamedTuple):
    """Everything one member (or, with a leading member axis, a batch) gives.

    **Fields:**

    - `train`, `joint`, `reduced`, `tracked`: the runs the mode made (`None` for the others):
      training, the joint flow, the reduced flow (J11's b̄ held at x̄), the tracked-b̄ closure
      (`TrackedMeanFlow`).
    - `reference`: the name of the run the others are compared with (a field of this result).
    - `training`: the SGD run's losses (`None` without training).
    - `leaks`: Theorem 1's leak along the reference run.
    - `last_index`: the last save every run reached with finite values.
    - `bbar_drift_parted_reduced`: the reference's `bbar_drift` at the save where the reduced
      flow parts from it (NaN if it never does; `None` without both).
    - `X`: the token frequencies; `delta`: the salience Δ = E[x gᵀ].
    - `probes`: a Transformer run's own probes (`None` for the block).
    - `preconditioned`: the reduced flow driven by the trained model's measured P(t)
      (`PreconditionedReducedFlow`; only with learned W_Q, W_K).
    """

    train: RunResult | None
    joint: RunResult | None
    reduced: RunResult | None
    tracked: RunResult | None
    training: Training | None
    leaks: LeakCurves
    last_index: jax.Array
    bbar_drift_parted_reduced: jax.Array | None
    X: jax.Array
    delta: jax.Array
    probes: TransformerProbes | None = None
    preconditioned: RunResult | None = None

    def runs(self) -> dict[str, RunResult]:
        """The runs made, by their `RUNS` name."""
        return {name: run for name in RUNS if (run := getattr(self, name)) is not None}

    @property
    def reference(self) -> str:
        """The run the others are compared with: training when there is one, else the joint flow."""
        return next(name for name, run in self.runs().items() if run.agreement is None)


def _named(prefix: str, fields: tuple | None, suffix: str = "") -> dict[str, jax.Array]:
    """The non-`None` fields of `fields` as `PREFIX + field + SUFFIX`."""
    if fields is None:
        return {}
    return {f"{prefix}{name}{suffix}": value for name, value in fields._asdict().items() if value is not None}


def flatten(result: MemberResult) -> dict[str, np.ndarray]:
    """Every array of a result under its output name (the module docstring's scheme), as written
    to `data.npz`: the `save_curves`, each run's z, V, solve outcome and parting save, Theorem 1's
    residual and ẑ, the losses, `X`, `delta`, `last_index`. Arrays keep their leading member axis."""
    arrays = {**save_curves(result), "X": result.X, "delta": result.delta, "last_index": result.last_index}
    if result.bbar_drift_parted_reduced is not None:
        arrays["bbar_drift_parted_reduced"] = result.bbar_drift_parted_reduced
    if result.training is not None:
        arrays.update(losses_train=result.training.losses, diverged_at_train=result.training.diverged_at)
    if result.probes is not None:
        arrays["nc_zhat_z_queries"] = result.probes.nc_zhat_z_queries
    for name, run in result.runs().items():
        out = OUTPUT_NAMES[name]
        arrays.update({f"z_{out}": run.z, f"V_{out}": run.V, **_named("", run.outcome, f"_{out}")})
        if run.agreement is not None:
            arrays[f"parted_index_{out}"] = run.agreement.parted_index
        if run.theorem1 is not None:
            suffix = _theorem1_suffix(result, name)
            arrays[f"invariant_residual{suffix}"] = run.theorem1.invariant_residual
            arrays.update({f"z_hat{tag}{suffix}": prediction.z_hat for tag, prediction in run.theorem1.predictions().items()})
    return {name: np.asarray(value) for name, value in arrays.items()}


def _theorem1_named(curves: Theorem1Curves, suffix: str) -> dict[str, jax.Array]:
    """Theorem 1's curves with one value per save under their output names: per prediction (tag
    `TAG` of `Theorem1Curves.predictions`) `nc_zhatTAG_z`, `nc_dzhatTAG_dz`, `size_zhatTAG_z` and
    `entropy_zhatTAG`; the parts' `nc_zhat1_z`, `nc_zhat2_z`, `nc_dzhat1_dz`, `nc_dzhat2_dz`."""
    named = {}
    for tag, prediction in curves.predictions().items():
        named.update({f"nc_zhat{tag}_z": prediction.nc, f"nc_dzhat{tag}_dz": prediction.nc_displacement,
                      f"size_zhat{tag}_z": prediction.size, f"entropy_zhat{tag}": prediction.entropy})
    parts = ("nc_zhat1_z", "nc_zhat2_z", "nc_dzhat1_dz", "nc_dzhat2_dz")
    named.update({field: getattr(curves, field) for field in parts if getattr(curves, field) is not None})
    return {f"{name}{suffix}": value for name, value in named.items()}


def _theorem1_suffix(result: MemberResult, name: str) -> str:
    """Theorem 1's curves are unsuffixed on the reference run and suffixed by the run elsewhere."""
    return "" if name == result.reference else f"_{OUTPUT_NAMES[name]}"


def scalars(result: MemberResult, steps: jax.Array) -> dict[str, jax.Array]:
    """One member's numbers, read at the last save every run reached (`last_index`). Traceable
    (vmap it over members).

    **Arguments:**

    - `result`: one member's result (no member axis).
    - `steps`: the save steps (or times), `(n,)`.

    **Returns:**

    `last_step`; every NC and relative-error curve's last value (`nc_zhat_z`, `nc_ode_z`,
    `relerr_reduced_z`, `relerr_reduced_V`, `nc_zhat_z_ode`, ...; an NC is NaN when that save is the
    first, where every run starts from the same state); `invariant_residual_max`;
    `entropy_initial` (the reference's); per run `entropy_RUN` and its `_min`, `_min_step` and
    `_rebound` (final − minimum: how far the attention became dense again), `winner_RUN` (the
    token of the largest logit), `snap_step_RUN` (from when the entropy
    stays within `SNAP_TOLERANCE`·initial of its final value; NaN if it never left that band or
    entered it only at the end); per run but the reference `parted_step_RUN` (NaN if it agrees
    throughout); the leak curves' last values and `bbar_drift_parted_reduced`; per flow
    `status_RUN` (a `Status` code), `t_final_RUN`, `num_steps_RUN`, `num_rejected_steps_RUN`,
    `blowup_step_RUN` (NaN unless it blew up); with training `loss_train` and `diverged_at_train`.
    """
    steps = jnp.asarray(steps, dtype=jnp.result_type(float))
    last = result.last_index
    reached = jnp.arange(steps.shape[0]) <= last
    reference = getattr(result, result.reference)
    numbers = {"last_step": steps[last], "entropy_initial": reference.entropy[0],
               "invariant_residual_max": jnp.max(jnp.abs(reference.theorem1.invariant_residual[last]))}
    # at the first save every run starts from the same state: an NC there compares nothing
    numbers.update({name: jnp.where((last == 0) & name.startswith("nc_"), jnp.nan, curve[last])
                    for name, curve in save_curves(result).items()})
    for name, run in result.runs().items():
        out = OUTPUT_NAMES[name]
        entropy = run.entropy
        lowest = jnp.argmin(jnp.where(reached, entropy, jnp.inf))
        settled = (jnp.abs(entropy - entropy[last]) <= SNAP_TOLERANCE * entropy[0]) | ~reached
        snap = jnp.argmax(jnp.cumprod(settled[::-1])[::-1])
        numbers.update({
            f"entropy_{out}_min": entropy[lowest],
            f"entropy_{out}_min_step": steps[lowest],
            f"entropy_{out}_rebound": entropy[last] - entropy[lowest],
            f"snap_step_{out}": jnp.where((snap > 0) & (snap < last), steps[snap], jnp.nan),
            f"winner_{out}": jnp.argmax(run.z[last]),
        })
        if run.agreement is not None:
            parted = run.agreement.parted_index
            numbers[f"parted_step_{out}"] = jnp.where(parted >= 0, steps[parted], jnp.nan)
        if run.outcome is not None:
            numbers.update(_named("", run.outcome, f"_{out}"))
            numbers[f"blowup_step_{out}"] = jnp.where(run.outcome.status == Status.BLOWUP, run.outcome.t_final, jnp.nan)
    if result.bbar_drift_parted_reduced is not None:
        numbers["bbar_drift_parted_reduced"] = result.bbar_drift_parted_reduced
    if result.training is not None:
        numbers["diverged_at_train"] = result.training.diverged_at
    return numbers


def save_curves(result: MemberResult) -> dict[str, jax.Array]:
    """The curves with one value per save, whose last value `scalars` reports: entropies, NC and
    relative errors, Theorem 1's NC, the leak curves and the training loss at the saves."""
    curves = {}
    for name, run in result.runs().items():
        out = OUTPUT_NAMES[name]
        curves[f"entropy_{out}"] = run.entropy
        if run.agreement is not None:
            curves.update({f"nc_{out}_z": run.agreement.nc_z, f"nc_{out}_V": run.agreement.nc_V,
                           f"relerr_{out}_z": run.agreement.relerr_z, f"relerr_{out}_V": run.agreement.relerr_V,
                           f"nc_{out}_dz": run.agreement.nc_dz, f"size_{out}_z": run.agreement.size_z})
        if run.theorem1 is not None:
            curves.update(_theorem1_named(run.theorem1, _theorem1_suffix(result, name)))
    curves.update(_named("", result.leaks))
    if result.training is not None:
        curves["loss_train"] = result.training.loss
    if result.probes is not None:
        probes = result.probes
        curves.update(nc_zhat_z_worst_query=jnp.min(probes.nc_zhat_z_queries, axis=-1),
                      attention_rate=probes.attention_rate, entropy_sequences_train=probes.entropy_sequences,
                      read_gain=probes.read_gain)
        if probes.adam_rate is not None:
            curves.update(adam_rate_z=probes.adam_rate, adam_clock_z=probes.adam_clock, adam_rate_w=probes.adam_rate_w,
                          adam_clock_w=probes.adam_clock_w)
        if probes.path_shares is not None:
            curves.update({f"share_{path}_path": probes.path_shares[..., index] for index, path in enumerate(READ_PATHS)})
    return curves
