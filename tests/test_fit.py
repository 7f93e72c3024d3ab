"""`jomasim fit`: the reduced flow fitted to a training run by differentiating through Diffrax."""

import dataclasses
import json
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.cli import main
from jomasim.experiments.block import build_member
from jomasim.experiments.fit import FitConfig, TrainedRun, fit_run, objective, read_run

SMALL = ["--n-distinct", "4", "--n-common", "3", "--n-classes", "5", "--dim", "10"]


@pytest.fixture(scope="module")
def exp_run(tmp_path_factory):
    """Exp attention (Theorem 1 exact) trained with eta_z / eta_w = 2, 2 seeds, 400 SGD steps."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["compare", "--attention", "exp", "--seeds", "2", "--eta-w", "0.05", "--eta-z", "0.1", "--steps", "400",
                 "--save-every", "20", *SMALL, "--out", str(out), "--name", "exp"]) == 0
    return out / "exp"


@pytest.fixture(scope="module")
def fitted(exp_run):
    assert main(["fit", str(exp_run)]) == 0
    return json.loads((exp_run / "fit" / "fit.json").read_text())


@pytest.mark.slow
def test_the_fit_recovers_the_rate_ratio_the_run_trained_with(exp_run, fitted):
    """Started at rho = 1, the fit finds the trained rho = 2 within 2 % on every seed, and the fitted
    flow predicts the held-out half of training better than the neutral one."""
    assert fitted["trained_lr_ratio"] == 2.0 and fitted["status"] == ["converged"] * 2
    np.testing.assert_allclose(fitted["fitted_lr_ratio"], 2.0, rtol=0.02)
    assert all(after > before for after, before in zip(fitted["nc_held_out"], fitted["nc_before"]))
    assert min(fitted["nc_held_out"]) >= 0.999
    assert sorted(path.name for path in (exp_run / "fit").iterdir()) == ["fit.json", "fit.npz", "fit.png"]
    with np.load(exp_run / "fit" / "fit.npz") as data:
        assert data["z_after"].shape == data["z_trained"].shape == (2, 21, 7)


@pytest.mark.slow
def test_the_clock_of_an_sgd_run_is_held_unless_asked_and_the_trade_off_is_reported(exp_run, fitted):
    """By default an SGD run's time scale is held at 1 (its steps are the flow's clock) and no
    correlation is reported; fitted too, the fit still finds rho = 2 and s = 1 and reports how
    strongly the saves couple log rho with log s (a Gauss–Newton correlation within [-1, 1])."""
    assert fitted["time_scale_fitted"] is False and fitted["fitted_time_scale"] == [1.0, 1.0]
    assert fitted["correlation_lr_ratio_time_scale"] is None
    both = fit_run(read_run(exp_run), FitConfig(clock="fitted"))
    assert both.time_scale_fitted and (both.status == 0).all()
    np.testing.assert_allclose(both.lr_ratio[:, 0], 2.0, rtol=0.02)
    np.testing.assert_allclose(both.time_scale, 1.0, rtol=0.02)
    assert np.all(np.isfinite(both.correlation)) and np.all(np.abs(both.correlation) <= 1.0 + 1e-9)


@pytest.mark.slow
def test_progress_prints_every_step(exp_run, capfd):
    assert main(["fit", str(exp_run), "--progress", "true", "--iterations", "2"]) == 0
    output = capfd.readouterr().out
    assert "Step: 1," in output and "Loss on this step" in output


@pytest.mark.slow
def test_the_objective_gradient_matches_central_differences(exp_run):
    run = read_run(exp_run)
    first = jax.tree_util.tree_map(lambda values: values[0], run.config.members(run.config.eta_w, run.config.eta_z))
    joint, y0, _ = build_member(run.config, first)
    tight = js.SolverOptions(rtol=1e-11, atol=1e-13)
    args = (joint, y0, jnp.zeros(0), jnp.asarray(run.z[0, :10]), jnp.asarray(run.steps[:10], dtype=float), tight)
    params = jnp.log(jnp.asarray([1.3, 0.9]))
    gradient = jax.grad(objective)(params, args)  # reverse mode, Diffrax's checkpointed adjoint
    forward_args = (*args[:5], js.SolverOptions(rtol=1e-11, atol=1e-13, adjoint="forward"))
    forward = jax.jacfwd(objective)(params, forward_args)  # forward mode, as the fit's Jacobian
    step, value = 1e-5, eqx.filter_jit(objective)  # one compile for the four evaluations
    for index in range(2):
        shift = step * jnp.eye(2)[index]
        central = (value(params + shift, args) - value(params - shift, args)) / (2 * step)
        np.testing.assert_allclose(gradient[index], central, rtol=1e-4)
        np.testing.assert_allclose(forward[index], central, rtol=1e-4)


@pytest.mark.slow
def test_the_vmapped_fit_equals_the_fit_of_each_seed(exp_run):
    run = read_run(exp_run)
    together = fit_run(run, FitConfig())
    for row, seed in enumerate(run.seeds):
        alone = TrainedRun(dataclasses.replace(run.config, seeds=1, first_seed=int(seed)), run.steps, run.seeds[row:row + 1],
                           run.z[row:row + 1])
        single = fit_run(alone, FitConfig())
        np.testing.assert_allclose(single.lr_ratio[0], together.lr_ratio[row], rtol=1e-8)
        np.testing.assert_allclose(single.time_scale[0], together.time_scale[row], rtol=1e-8)
        np.testing.assert_allclose(single.z_after[0], together.z_after[row], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "make, arguments, message",
    [
        (lambda tmp, run: tmp, [], "is not a run folder of jomasim"),
        (lambda tmp, run: run, ["--lr-ratio", "0"], "lr_ratio=0.0 is not allowed"),
        (lambda tmp, run: run, ["--time-scale", "-1"], "time_scale=-1.0 is not allowed"),
        (lambda tmp, run: run, ["--held-out", "1"], "held_out=1.0 is not allowed"),
        (lambda tmp, run: run, ["--knots", "100000000"], "knots=100000000 is not allowed for this run"),
        (lambda tmp, run: run, ["--rtol", "1e308"], "rtol=1e+308 is not allowed; it must lie strictly between 0 and 1"),
    ],
)
def test_bad_fits_are_one_line(make, arguments, message, exp_run, tmp_path, capsys):
    try:
        code = main(["fit", str(make(tmp_path, exp_run)), *arguments])
    except SystemExit as stop:
        code = stop.code
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0 and message in error


@pytest.mark.slow
def test_a_run_without_training_is_refused(tmp_path, capsys):
    assert main(["simulate", "--seeds", "1", "--saves", "3", "--t-end", "1", *SMALL, "--out", str(tmp_path), "--name", "s"]) == 0
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "s")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "is a 'simulate' run, not one of jomasim compare" in error


@pytest.mark.slow
def test_a_rate_ratio_on_pieces_is_flat_for_a_run_at_one_ratio(exp_run):
    """rho(t) on three pieces, fitted to a run trained at one ratio (2), is 2 on every piece."""
    results = fit_run(read_run(exp_run), FitConfig(knots=3))
    assert results.lr_ratio.shape == (2, 3) and results.knots.tolist() == [60.0, 120.0]
    np.testing.assert_allclose(results.lr_ratio, 2.0, rtol=0.03)
    assert (results.status == 0).all() and results.nc_held_out.min() >= 0.999


@pytest.mark.slow
def test_one_piece_of_the_scheduled_flow_is_the_reduced_flow():
    data = js.make_token_data(seed=3, n_distinct=4, n_common=3, n_classes=5, dim=12)
    ts, tight = jnp.linspace(0.0, 8.0, 9), js.SolverOptions(rtol=1e-10, atol=1e-12)
    for attention in ("softmax", "exp"):
        joint = js.JointFlow(data, attention=attention, activation="silu", eta_w=0.7, eta_z=1.4, temperature=0.6)
        y0 = joint.initial_state(jax.random.key(1), scale=0.3)
        reduced = js.simulate(js.ReducedFlow.from_joint(joint, y0), y0[0], ts, tight)
        scheduled = js.ScheduledReducedFlow(data, [2.0], [], attention=attention, activation="silu", eta_w=0.7,
                                            temperature=0.6)
        pieces = js.simulate(scheduled, y0, ts, tight)
        np.testing.assert_allclose(pieces.logits(), reduced.logits(), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(pieces.ys[0], reduced.ys, rtol=1e-7, atol=1e-9)
    assert float(js.ScheduledReducedFlow(data, [2.0, 0.5], [4.0]).ratio(4.1)) == 0.5


def _edit_npz(name, change):
    def edit(folder):
        arrays = dict(np.load(folder / "data.npz"))
        if change is None:
            del arrays[name]
        else:
            arrays[name] = change(arrays[name])
        np.savez(folder / "data.npz", **arrays)
    return edit


def _edit_config(change):
    def edit(folder):
        record = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(change(record)))
    return edit


DAMAGED_RUNS = {
    "a NaN in the trained logits": (_edit_npz("z_train", lambda z: np.where(z == z.flat[7], np.nan, z)),
                                    "the trained logits of seed 0 are not finite"),
    "all steps zero": (_edit_npz("steps", np.zeros_like), "steps are not the saves its config.json describes"),
    "steps reversed": (_edit_npz("steps", lambda steps: steps[::-1]), "steps are not the saves"),
    "steps as text": (_edit_npz("steps", lambda steps: steps.astype(str)), "steps are not the saves"),
    "other seeds": (_edit_npz("seeds", lambda seeds: np.full_like(seeds, 999)), "seeds [999, 999] are not its config's"),
    "logits of another shape": (_edit_npz("z_train", lambda z: z[:, :, :2]), "z_train has shape"),
    "no logits": (_edit_npz("z_train", None), "data.npz has no z_train"),
    "fewer steps in the config": (_edit_config(lambda r: {**r, "config": {**r["config"], "steps": 1000}}),
                                  "(every 20 of 1000 steps)"),
    "another model named": (_edit_config(lambda r: {**r, "model": "transformer"}), "is not one of model 'transformer'"),
    "a config that is no table": (_edit_config(lambda r: [1, 2]), "config.json holds a list"),
    "a config out of range": (_edit_config(lambda r: {**r, "config": {**r["config"], "steps": -1}}), "steps=-1"),
    "no summary (unfinished)": (lambda folder: (folder / "summary.json").unlink(), "the run did not finish"),
    "data cut short": (lambda folder: (folder / "data.npz").write_bytes((folder / "data.npz").read_bytes()[:100]),
                       "data.npz cannot be read"),
    "config nested too deeply": (lambda folder: (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000),
                                 "no readable config.json"),
}


@pytest.mark.parametrize("damage", DAMAGED_RUNS)
def test_a_damaged_run_folder_is_refused_in_one_line(damage, exp_run, tmp_path, capsys):
    """fit reads nothing it has not checked: each damage gets exit 2 and one line naming it."""
    edit, message = DAMAGED_RUNS[damage]
    folder = tmp_path / "run"
    shutil.copytree(exp_run, folder, ignore=shutil.ignore_patterns("fit"))
    edit(folder)
    assert main(["fit", str(folder), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error, error
    assert not (folder / "fit").exists()
