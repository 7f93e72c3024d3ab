"""`jomasim reproduce bounce`: the rebound measures, the verdict, the fixed-gradient block and a reduced run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jomasim._errors import OutOfRangeError
from jomasim.experiments.block import MemberNumbers
from jomasim.experiments.bounce import BounceConfig, FixedGradientConfig, rebound_measures, verdict
from jomasim.experiments.fig4 import Fig4Config, discrete_toy
from jomasim.experiments.reproduce import reproduce
from jomasim.models import JoMABlock

STEPS = np.arange(0, 101, 10)
FALLING = 2.5 - 1.5 * (1 - np.exp(-STEPS / 30))                     # sparser and sparser: no rebound
DIP_AND_RISE = 2.5 - 2.0 * np.sin(np.pi * STEPS / 140)               # a minimum at step 70, then up


def test_rebound_measures_of_constructed_curves():
    falling = rebound_measures(STEPS, FALLING[None], 0.02)
    assert falling["rebound"] == 0 and falling["entropy_min_step"] == 100
    assert falling["dip"] == pytest.approx(FALLING[0] - FALLING[-1])
    both = rebound_measures(STEPS, np.stack([DIP_AND_RISE, DIP_AND_RISE + 0.1, np.full(11, np.nan)]), 0.02)
    assert both["runs"] == 2, "a run that went non-finite is left out"
    assert both["entropy_min_step"] == 70
    assert both["rebound"] == pytest.approx(DIP_AND_RISE[-1] - DIP_AND_RISE[7])
    assert both["entropy_min"] == pytest.approx(DIP_AND_RISE[7] + 0.05)
    assert rebound_measures(STEPS, np.full((2, 11), np.nan), 0.02)["runs"] == 0
    assert falling["censored"] == 1 and both["censored"] == 0, "a minimum at the last save is censored"
    # a minimum one save (10 % of the run) before the end counts as censored only within 10 %
    near = np.concatenate([FALLING[:-1], [FALLING[-2] + 0.01]])
    assert rebound_measures(STEPS, near[None], 0.02)["censored"] == 0
    assert rebound_measures(STEPS, near[None], 0.1)["censored"] == 1


def test_verdict_both_ways():
    linear, bouncing = rebound_measures(STEPS, FALLING[None], 0.02), rebound_measures(STEPS, DIP_AND_RISE[None], 0.02)
    found = verdict({"linear": linear, "gelu": bouncing, "relu": linear}, margin=0.1)
    assert found["bounce"] and found["activation_max"] == "gelu" and found["sparsified"]
    assert found["excess"] == pytest.approx(bouncing["rebound"])
    # the same rebound for the linear MLP: the nonlinearity is not what makes it
    assert not verdict({"linear": bouncing, "gelu": bouncing}, margin=0.1)["bounce"]
    # a rebound below the margin does not count
    assert not verdict({"linear": linear, "gelu": bouncing}, margin=bouncing["rebound"] + 0.01)["bounce"]
    flat = rebound_measures(STEPS, np.full((1, 11), 2.5), 0.02)
    assert not verdict({"linear": flat, "silu": flat}, margin=0.1)["sparsified"]
    # the nonlinear runs end at their minimum: no rebound there is censored, and the verdict says so
    censored = verdict({"linear": bouncing, "gelu": linear}, margin=0.1)
    assert not censored["bounce"] and censored["censored"] == ["gelu"]
    assert found["censored"] == ["linear", "relu"]


@pytest.mark.slow
def test_fixed_gradient_objective_has_the_loss_gradient_at_the_start():
    config = FixedGradientConfig(activation="gelu", seeds=1)
    numbers = MemberNumbers(*(jnp.asarray(value[0]) for value in config.members(0.1, 0.1)))
    joint, y0 = config.member_start(numbers)

    def gradient(objective, state):
        def block(W, z):
            return JoMABlock(joint.data, W, z, attention=joint.attention_form, activation=joint.activation,
                             temperature=joint.temperature)

        return jax.grad(lambda W, z: objective(block(W, z)), argnums=(0, 1))(*state)

    fixed = config.objective(joint, y0)
    for ours, theirs in zip(gradient(fixed, y0), gradient(JoMABlock.__call__, y0)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)
    moved = (y0[0] + 0.3 * jax.random.normal(jax.random.key(1), y0[0].shape), y0[1])
    assert not np.allclose(gradient(fixed, moved)[0], gradient(JoMABlock.__call__, moved)[0], rtol=1e-3), \
        "the signal is held at its initial value, not recomputed"


def test_toy_linear_counterpart_only_sparsifies():
    toy = Fig4Config()
    mu = jnp.asarray(toy.targets())
    v0 = jnp.full(mu.shape, toy.v0)
    _, linear = discrete_toy(mu, v0, toy.step, toy.temperature, toy.iterations, relax=False)
    assert np.all(np.diff(np.asarray(linear)) <= 1e-12), "a constant drive: the entropy never rises"
    _, nonlinear = discrete_toy(mu, v0, toy.step, toy.temperature, toy.iterations)
    assert float(nonlinear[-1]) > float(np.min(nonlinear)) + 0.3


def test_bad_config_is_rejected():
    for bad in (dict(activations=("relu", "linear")), dict(activations=("linear",)), dict(activations=("linear", "tanhh")),
                dict(margin=0.0), dict(length=0)):
        with pytest.raises(OutOfRangeError):
            BounceConfig(**bad)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    config = BounceConfig(activations=("linear", "silu"), seeds=2, steps=300, ladder=False)
    return reproduce("bounce", config, tmp_path_factory.mktemp("bounce"))


@pytest.mark.slow
def test_reduced_run_reports_its_numbers(reduced):
    folder, summary = reduced
    assert {path.name for path in folder.iterdir()} == {"bounce.png", "bounce.npz", "bounce_table.csv", "summary.json",
                                                         "config.json"}
    assert json.loads((folder / "summary.json").read_text())["verdict"] == summary["verdict"]
    assert len(summary["settings"]) == 8 and len(summary["table"]) == 16
    rows = {(row["setting"], row["activation"]): row for row in summary["table"]}
    for found in summary["verdicts"]:
        linear = rows[(found["setting"], "linear")]["rebound"]
        assert found["rebound_linear"] == linear
        assert found["bounce"] == (found["excess"] > summary["margin"])
    # the toy rebounds for the nonlinear drive only, whatever the block does
    assert summary["bounce_settings"][-1] == "nonlinear toy (Fig. 4)"
    assert summary["verdict"].startswith(f"rebound larger for a nonlinear φ than for the linear one by more than 0.1 nats "
                                         f"in {len(summary['bounce_settings'])} of 8 settings")
    with np.load(folder / "bounce.npz") as data:
        assert data["entropy_0"].shape == (2, 2, 7) and data["entropy_7"].shape == (2, 1, 500)
