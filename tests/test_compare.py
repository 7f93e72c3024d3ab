"""Theory against training on the §3.5 block (`jomasim compare`), at reduced sizes."""

import numpy as np
import pytest

import jomasim as js
from jomasim._compile import LIGHT_CPU_COMPILE, block_compiler_options, known_cpu_option
from jomasim.comparison import parting_index
from jomasim.experiments.block import run_members
from jomasim.experiments.compare import CompareConfig, run_compare


def _run(**settings):
    results = run_compare(CompareConfig(seeds=3, **settings))
    return results, results.summary()


@pytest.fixture(scope="module")
def softmax_runs():
    """The Fig. 2 setting for 800 SGD steps at η = 0.1 and for 8000 steps at η = 0.01 (same t = 80)."""
    return {
        0.1: _run(steps=800, save_every=100),
        0.01: _run(eta_w=0.01, eta_z=0.01, steps=8000, save_every=1000),
    }


@pytest.mark.parametrize("eta", [0.1, 0.01])
def test_sgd_follows_the_joint_gradient_flow(softmax_runs, eta):
    results, summary = softmax_runs[eta]
    assert summary["status_ode"] == ["ok"] * 3 and summary["status_train"] == ["ok"] * 3
    assert min(results.members.joint.agreement.nc_z.min(), results.members.joint.agreement.nc_V.min()) >= 0.9999
    assert summary["parted_step_ode"] == [None] * 3
    assert results.members.joint.agreement.relerr_z.max() <= 1e-2
    np.testing.assert_allclose(results.members.train.entropy, results.members.joint.entropy, atol=1e-2)


def test_discretisation_error_is_first_order_in_the_step(softmax_runs):
    """SGD is explicit Euler on the flow: its error at fixed t is first order in η."""
    coarse = softmax_runs[0.1][0].members.joint.agreement.relerr_z[:, -1]
    fine = softmax_runs[0.01][0].members.joint.agreement.relerr_z[:, -1]
    np.testing.assert_allclose(coarse / fine, 10.0, rtol=0.15)


def test_theorem1_predicts_the_trained_logits(softmax_runs):
    results, summary = softmax_runs[0.1]
    assert np.mean(summary["nc_zhat_z"]) >= 0.98
    assert set(summary) >= {"nc_zhat_z", "nc_zhat1_z", "nc_zhat2_z", "nc_ode_z", "nc_reduced_z", "compile_seconds"}
    assert all(len(summary[key]) == 3 for key in ("nc_zhat_z", "nc_zhat1_z", "nc_zhat2_z", "nc_ode_z", "nc_reduced_z"))
    assert results.members.train.z.shape == (3, 9, 20) and results.members.train.V.shape == (3, 9, 20, 20)
    assert summary["last_step"] == [800] * 3


@pytest.fixture(scope="module")
def exp_run():
    """Exp attention up to t = 60, before its finite-time blow-up."""
    return _run(attention="exp", steps=600, save_every=100)


def test_softmax_invariant_leaks_as_the_mean_attention_drifts(softmax_runs):
    """Theorem 1's softmax assumption of a constant b̄ fails as the attention sharpens."""
    results, summary = softmax_runs[0.1]
    drift, leak = results.members.leaks.bbar_drift, results.members.leaks.leak_bbar
    assert (np.diff(drift[:, 1:], axis=1) > 0).all() and (drift[:, -1] > 0.2).all()
    assert (leak[:, -1] > 10 * leak[:, 1]).all() and (results.members.leaks.invariant_leak[:, -1] > 0.2).all()
    assert summary["bbar_drift"] == drift[:, -1].tolist()
    for row, index in enumerate(results.members.reduced.agreement.parted_index):
        assert summary["bbar_drift_parted_reduced"][row] == (drift[row, index] if index >= 0 else None)


def test_reduced_flow_tracks_training_with_exp_attention(exp_run):
    results, summary = exp_run
    assert min(summary["nc_reduced_z"]) >= 0.999
    assert max(summary["invariant_leak"]) <= 1e-12 and results.members.leaks.bbar_drift is None, "exp: Theorem 1 is exact"
    sharpened = np.asarray(summary["entropy_train"]) < np.asarray(summary["entropy_initial"]) - 0.05
    assert sharpened.all(), "attention sharpened"


def _trained_only(**settings):
    """Training alone (no ODEs to compile), with Theorem 1 measured on the trained model."""
    config = CompareConfig(seeds=3, **settings)
    return run_members(config, config.members(config.eta_w, config.eta_z), config.steps, config.save_steps, "train")


@pytest.mark.parametrize("attention", ["exp", "linear"])
def test_invariant_holds_on_the_trained_model(exp_run, attention):
    results = exp_run[0] if attention == "exp" else _trained_only(attention="linear", steps=400, save_every=100)
    scale = np.abs(results.members.train.z).max() ** (2 if attention == "linear" else 1)
    assert np.abs(results.members.train.theorem1.invariant_residual).max() <= 2e-3 * scale


def test_a_run_parts_at_its_first_save_below_agreement():
    nc = np.array([[1.0, 0.995, 0.98, 0.999], [1.0, 0.999, 0.995, 0.991], [1.0, np.nan, 1.0, 1.0], [1.0, 0.999, 0.5, 0.5]])
    assert np.asarray(parting_index(nc, np.array([3, 3, 3, 1]))).tolist() == [2, -1, 1, -1]
    assert int(parting_index(nc[0], 1)) == -1


def test_config_validation_names_the_value():
    with pytest.raises(js.OutOfRangeError, match="seeds=0"):
        CompareConfig(seeds=0)
    with pytest.raises(js.InvalidChoiceError, match="'tanh'"):
        CompareConfig(activation="tanh")


@pytest.mark.slow
def test_default_fig2_setting_headline_numbers():
    """The issue's numbers at the default size (8 seeds, 2000 SGD steps at η = 0.1)."""
    summary = run_compare(CompareConfig()).summary()
    assert np.mean(summary["nc_zhat_z"]) >= 0.98
    assert min(summary["nc_ode_z"]) >= 0.9999 and min(summary["nc_ode_V"]) >= 0.9999
    assert summary["parted_step_ode"] == [None] * 8
    # the reduced flow follows training closely until the attention snaps, past step 600 on every seed
    assert min(summary["parted_step_reduced"]) >= 600
    assert max(summary["relerr_ode_z"]) <= 1e-2
    # the tracked-b̄ closure (issue 27's goal, measured 0.998 on 2026-12-03)
    assert np.mean(summary["nc_tracked_z"]) >= 0.99
    # the reduced softmax flow (J13b, b̄ fixed at x̄) sparsifies earlier than training; on seed 1 it
    # picks a different winning token (NC 0.65), on the other seven NC >= 0.98
    assert np.median(summary["nc_reduced_z"]) >= 0.98


def test_block_programs_compile_lighter_on_cpu_unless_xla_flags_say_otherwise(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    assert block_compiler_options("cpu") == LIGHT_CPU_COMPILE
    assert block_compiler_options("gpu") == {} and block_compiler_options("tpu") == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
    assert block_compiler_options("cpu") == {"xla_cpu_use_fusion_emitters": False}
    assert not known_cpu_option("xla_no_such_option", False)  # an XLA without the option: not passed


def test_the_tracked_closure_follows_training_closer_than_j11(softmax_runs, exp_run):
    """Holding b̄ at x̄ (J11's reduced flow) costs most of the reduced flow's error: the tracked-b̄
    closure, which keeps only the factorisation assumption, stays within a third of the reduced
    flow's largest relative error of z on every seed; with exp attention (no b̄) the two coincide."""
    results, summary = softmax_runs[0.1]
    tracked, reduced = results.members.tracked.agreement, results.members.reduced.agreement
    assert summary["status_tracked"] == ["ok"] * 3 and len(summary["nc_tracked_z"]) == 3
    assert (tracked.relerr_z.max(axis=1) < reduced.relerr_z.max(axis=1) / 3).all()
    assert min(summary["nc_tracked_z"]) >= 0.99
    exp = exp_run[0].members
    np.testing.assert_allclose(exp.tracked.z, exp.reduced.z, rtol=1e-5, atol=1e-5)
