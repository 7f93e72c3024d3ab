"""`simulate`: batch modes against one-by-one solves, failure reporting, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jomasim as js
from jomasim.theory import _simulate

SMALL = dict(n_distinct=3, n_common=3, n_classes=4, dim=8)
TS = jnp.linspace(0.0, 6.0, 13)
TOL = dict(rtol=1e-8, atol=1e-10)


def _setting(key):
    """One of many settings: its own data, learning-rate ratio, temperature and initial state."""
    keys = jax.random.split(key, 4)
    joint = js.JointFlow(
        js.make_token_data(keys[0], **SMALL),
        attention="softmax",
        activation="silu",
        eta_z=jax.random.uniform(keys[1], minval=0.5, maxval=2.0),
        temperature=jax.random.uniform(keys[2], minval=0.3, maxval=1.5),
    )
    return joint, joint.initial_state(keys[3], scale=0.3)


@pytest.fixture(scope="module")
def batch():
    keys = jax.random.split(jax.random.key(11), 64)
    fields, y0s = jax.vmap(_setting)(keys)
    return keys, fields, y0s, js.simulate(fields, y0s, TS, options=js.SolverOptions(batch="vmap", **TOL))


def test_vmapped_batch_equals_one_by_one(batch):
    keys, _, _, batched = batch
    assert batched.ys[0].shape == (64, 13, 8, 4) and batched.status.shape == (64,)
    assert bool(jnp.all(batched.ok))
    for i, key in enumerate(keys):
        field, y0 = _setting(key)
        single = js.simulate(field, y0, TS, js.SolverOptions(**TOL))
        np.testing.assert_allclose(single.ys[0], batched.ys[0][i], rtol=0, atol=1e-10)
        np.testing.assert_allclose(single.ys[1], batched.ys[1][i], rtol=0, atol=1e-10)
        assert int(single.num_steps) == int(batched.num_steps[i])


def test_batched_ode_agrees_to_solver_tolerance(batch):
    _, fields, y0s, batched = batch
    shared = js.simulate(fields, y0s, TS, options=js.SolverOptions(batch="ode", **TOL))
    assert bool(jnp.all(shared.ok))
    for got, want in zip(shared.ys, batched.ys):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert len(set(np.asarray(shared.num_steps).tolist())) == 1  # one shared step sequence


def test_member_and_derived_quantities(batch):
    _, _, _, batched = batch
    member = batched.member(5)
    assert not member.batched
    np.testing.assert_array_equal(member.logits(), batched.logits()[5])
    attention = batched.attention()
    assert attention.shape == (64, 13, 6, 4)
    np.testing.assert_allclose(attention.sum(axis=2), 1.0, rtol=1e-12)
    assert batched.entropy().shape == (64, 13)


DELTA = jnp.array([[0.2], [0.9], [-0.4]])
RATES = jnp.array([0.1, 1.0, 0.2, 5.0])  # members 1 and 3 blow up before t = 2.5
BLOWUP = dict(batch="vmap", blowup=4.5, rtol=1e-10, atol=1e-12)


def _salience_batch():
    """Salience flows (J15) at four rates, two of which blow up before t = 2.5, and their zero start."""
    return jax.vmap(lambda eta: js.SalienceFlow(DELTA, eta_w=eta))(RATES), jnp.zeros((4, 3, 1))


def test_a_failing_member_is_reported_and_the_rest_are_unharmed():
    ts = jnp.linspace(0.0, 2.5, 11)
    traj = js.simulate(*_salience_batch(), ts, js.SolverOptions(**BLOWUP))
    assert np.asarray(traj.status).tolist() == [js.Status.OK, js.Status.BLOWUP, js.Status.OK, js.Status.BLOWUP]
    messages = traj.messages()
    assert messages[0] == "ok" and messages[1].startswith("blow-up at t = ")
    # the event fires where the logit v²/2 reaches 4.5, i.e. the erf solution reaches v = 3
    t_event = jax.scipy.special.erf(3.0 / jnp.sqrt(2.0)) / (jnp.sqrt(2.0 / jnp.pi) * RATES * 0.9)
    np.testing.assert_allclose(traj.t_final[jnp.array([1, 3])], t_event[jnp.array([1, 3])], rtol=1e-7)
    for i in (0, 2):
        np.testing.assert_allclose(traj.ys[i, :, :, 0], js.erf_solution(ts, 0.0, DELTA[:, 0], eta_w=RATES[i]), rtol=1e-7)
    assert bool(jnp.all(jnp.isinf(traj.ys[1][~traj.reached[1]])))


def test_exhausted_step_budget_is_reported_not_raised():
    flow = js.NonlinearToyFlow(jnp.array([1.0, 3.0]))
    traj = js.simulate(flow, jnp.zeros(2), jnp.linspace(0, 50, 6), options=js.SolverOptions(max_steps=5))
    assert int(traj.status) == js.Status.MAX_STEPS
    assert traj.messages()[0].startswith("max steps reached at t = ")


def _ends_case(case):
    """(fields, y0, save times with points between the ends, simulate options, statuses the case
    must show); the blow-up case shares its compiled general solve with the test above."""
    if case == "vmap-blowup":
        return *_salience_batch(), jnp.linspace(0.0, 2.5, 11), BLOWUP, {js.Status.OK, js.Status.BLOWUP}
    fields = jax.vmap(js.NonlinearToyFlow)(jnp.array([[1.0, 3.0], [2.0, 2.5]]))
    return fields, jnp.zeros((2, 2)), jnp.linspace(0.0, 3.0, 3), dict(batch="ode", max_steps=5), {js.Status.MAX_STEPS}


@pytest.mark.parametrize("case", ["vmap-blowup", "ode-max-steps"])
def test_saving_only_the_ends_skips_the_search_and_changes_nothing(case, monkeypatch):
    """Save times that are only t0 and the end are saved without Diffrax's search of ts after
    every step; states, times reached, statuses and step counts equal a solve that also saves
    points in between (Diffrax's saves never move its steps), for finished, blown-up and
    exhausted trajectories. (One trajectory without a batch: the Euler test below.)"""
    fields, y0, ts, options, statuses = _ends_case(case)
    promised = []
    for name in ("_solve_single", "_solve_batch"):
        original = getattr(_simulate, name)
        monkeypatch.setattr(_simulate, name, lambda *a, _f=original, **k: promised.append(k["endpoints"]) or _f(*a, **k))
    ends = js.simulate(fields, y0, ts[jnp.array([0, -1])], js.SolverOptions(**options))
    general = js.simulate(fields, y0, ts, js.SolverOptions(**options))
    assert promised == [True, False]
    np.testing.assert_array_equal(ends.ys, general.ys[:, jnp.array([0, -1])])
    for name in ("t_final", "status", "num_steps", "num_rejected_steps"):
        np.testing.assert_array_equal(getattr(ends, name), getattr(general, name), err_msg=name)
    assert set(np.asarray(ends.status).tolist()) == statuses


def test_fixed_step_euler_is_the_discrete_update():
    mu = jnp.array([1.2, 2.5, 3.1])
    flow = js.NonlinearToyFlow(mu, temperature=3.0, normalized=True)
    traj = js.simulate(flow, jnp.full(3, 0.05), jnp.array([0.02 * 50]), options=js.SolverOptions(solver="euler", dt0=0.02))
    v = jnp.full(3, 0.05)
    for _ in range(50):
        v = v + 0.02 * (mu - v) * jax.nn.softmax(v**2 / 3.0)
    np.testing.assert_allclose(traj.ys[0], v, rtol=1e-12)


def test_bad_simulate_inputs_are_named():
    flow = js.NonlinearToyFlow(jnp.array([1.0, 2.0]))
    y0 = jnp.zeros(2)
    with pytest.raises(js.InvalidChoiceError, match="'rk4'"):
        js.simulate(flow, y0, TS, options=js.SolverOptions(solver="rk4"))
    with pytest.raises(js.InvalidChoiceError, match="'pmap'"):
        js.simulate(flow, y0, TS, options=js.SolverOptions(batch="pmap"))
    with pytest.raises(js.OutOfRangeError, match="rtol=-1"):
        js.simulate(flow, y0, TS, options=js.SolverOptions(rtol=-1e-6))
    with pytest.raises(js.OutOfRangeError, match="non-decreasing"):
        js.simulate(flow, y0, TS[::-1])
    with pytest.raises(js.OutOfRangeError, match="dt0"):
        js.simulate(flow, y0, TS, options=js.SolverOptions(solver="euler"))
    with pytest.raises(js.ShapeMismatchError, match="y0 has shapes"):
        js.simulate(flow, jnp.zeros(3), TS)
    with pytest.raises(js.NonFiniteError, match="y0 holds 1 NaN"):
        js.simulate(flow, jnp.array([0.0, jnp.nan]), TS)
    with pytest.raises(js.ShapeMismatchError, match="leading batch axis"):
        js.simulate(js.stack([flow, flow]), jnp.zeros((3, 2)), TS, options=js.SolverOptions(batch="vmap"))
    with pytest.raises(js.ShapeMismatchError, match="stack a list of them with jomasim.stack"):
        js.simulate([flow, flow], jnp.zeros((2, 2)), TS, options=js.SolverOptions(batch="vmap"))
    with pytest.raises(js.OutOfRangeError, match="blowup"):
        js.simulate(js.stack([flow, flow]), jnp.zeros((2, 2)), TS, options=js.SolverOptions(batch="ode", blowup=5.0))
    joint = js.JointFlow(js.make_token_data(0, **SMALL))
    with pytest.raises(js.ShapeMismatchError, match=r"W has shape \(8, 5\)"):
        js.simulate(joint, (jnp.zeros((8, 5)), jnp.zeros(6)), TS)


def test_stack_checks_structure():
    a = js.NonlinearToyFlow(jnp.array([1.0, 2.0]))
    b = js.NonlinearToyFlow(jnp.array([1.0, 2.0]), normalized=True)
    with pytest.raises(js.ShapeMismatchError, match="one structure"):
        js.stack([a, b])
    stacked = js.stack([a, a, a])
    assert stacked.mu.shape == (3, 2)


@pytest.mark.slow
def test_overflowing_trial_steps_are_rejected_not_stuck():
    """exp(v²/2) overflows in a too-long trial step; the step must shrink, not turn the step size NaN."""
    mu = jnp.array([1.41, 1.54, 1.58, 1.87, 2.11, 2.44, 2.53, 3.25, 3.60, 3.93])
    trajectory = js.simulate(js.NonlinearToyFlow(mu), jnp.full(10, 0.05), jnp.linspace(0.0, 3.0, 4))
    assert trajectory.messages() == ["ok"]
    assert int(trajectory.num_accepted_steps) < 5000 and int(trajectory.num_rejected_steps) < 2000
    stiff = js.simulate(js.NonlinearToyFlow(mu), jnp.full(10, 0.05), jnp.linspace(0.0, 3.0, 4),
                        js.SolverOptions(solver="kvaerno5", rtol=1e-9, atol=1e-12))
    np.testing.assert_allclose(trajectory.ys[-1], stiff.ys[-1], rtol=1e-5)


_FLOAT32_PROGRAM = """
import json, sys
import matplotlib
backend = matplotlib.get_backend()
import jax, jax.numpy as jnp
import jomasim as js
import jomasim.runs.figures
result = {"x64": jax.config.jax_enable_x64, "backend_kept": matplotlib.get_backend() == backend}
flow = js.NonlinearToyFlow(jnp.array([1.0, 2.0, 3.0]))
try:
    js.simulate(flow, jnp.zeros(3), jnp.linspace(0.0, 2.0, 5))
except js.OutOfRangeError as error:
    result["refused"] = str(error)
loose = js.simulate(flow, jnp.zeros(3), jnp.linspace(0.0, 2.0, 5), js.SolverOptions(rtol=1e-5, atol=1e-5))
result["dtype"] = str(loose.ys.dtype)
result["ys"] = loose.ys.tolist()
result["status"] = int(loose.status)
print(json.dumps(result))
"""


@pytest.mark.slow
def test_import_changes_no_configuration_and_float32_is_refused_or_works():
    """Importing jomasim leaves float64 off and matplotlib's backend as it was; without float64
    `simulate` refuses the default tolerances in one line that names float64, and at tolerances
    float32 resolves it solves in float32, agreeing with the float64 solve to those tolerances."""
    import json
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    output = subprocess.run([sys.executable, "-c", _FLOAT32_PROGRAM], capture_output=True, text=True, env=env, check=True)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    assert result["x64"] is False and result["backend_kept"]
    assert "float64" in result["refused"] and "jax_enable_x64" in result["refused"] and "\n" not in result["refused"]
    assert result["dtype"] == "float32" and result["status"] == js.Status.OK
    flow = js.NonlinearToyFlow(jnp.array([1.0, 2.0, 3.0]))
    exact = js.simulate(flow, jnp.zeros(3), jnp.linspace(0.0, 2.0, 5), js.SolverOptions(rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(result["ys"], exact.ys, rtol=1e-3, atol=1e-4)
