"""`jomasim reproduce bounce`: the rebound measures, the verdict, the fixed-gradient block and a reduced run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jomasim._errors import OutOfRangeError
from jomasim.experiments.block import MemberNumbers
from jomasim.experiments.bounce import (
    BounceConfig,
    FixedGradientConfig,
    RunMeasures,
    Toy,
    Trained,
    ingredient_verdicts,
    pair_outcome,
    rebound_measures,
    run_status,
    token_order,
    verdict,
)
from jomasim.experiments.compare import CompareConfig
from jomasim.experiments.fig4 import Fig4Config, discrete_toy
from jomasim.models import JoMABlock
from jomasim.runs import REPRODUCTIONS, reproduce

STEPS = np.arange(0, 101, 10)
FALLING = 2.5 - 1.5 * (1 - np.exp(-STEPS / 30))                     # sparser and sparser: no rebound
DIP_AND_RISE = 2.5 - 2.0 * np.sin(np.pi * STEPS / 140)               # a minimum at step 70, then up


def test_rebound_measures_of_constructed_curves():
    falling = rebound_measures(STEPS, FALLING[None], 0.02)
    assert falling.rebound == 0 and falling.entropy_min_step == 100
    assert falling.dip == pytest.approx(FALLING[0] - FALLING[-1])
    both = rebound_measures(STEPS, np.stack([DIP_AND_RISE, DIP_AND_RISE + 0.1, np.full(11, np.nan)]), 0.02)
    assert both.runs == 2, "a run that went non-finite is left out"
    assert both.entropy_min_step == 70
    assert both.rebound == pytest.approx(DIP_AND_RISE[-1] - DIP_AND_RISE[7])
    assert both.entropy_min == pytest.approx(DIP_AND_RISE[7] + 0.05)
    assert rebound_measures(STEPS, np.full((2, 11), np.nan), 0.02).runs == 0
    assert falling.censored == 1 and both.censored == 0, "a minimum at the last save is censored"
    # a minimum one save (10 % of the run) before the end counts as censored only within 10 %
    near = np.concatenate([FALLING[:-1], [FALLING[-2] + 0.01]])
    assert rebound_measures(STEPS, near[None], 0.02).censored == 0
    assert rebound_measures(STEPS, near[None], 0.1).censored == 1


def _verdict(measures, margin):
    """The verdict of settings without an MLP (the attention's measures alone)."""
    return verdict({name: RunMeasures(found) for name, found in measures.items()}, margin)


def test_verdict_both_ways():
    linear, bouncing = rebound_measures(STEPS, FALLING[None], 0.02), rebound_measures(STEPS, DIP_AND_RISE[None], 0.02)
    found = _verdict({"linear": linear, "gelu": bouncing, "relu": linear}, margin=0.1)
    assert found.bounce and found.activation_max == "gelu" and found.sparsified
    assert found.excess == pytest.approx(bouncing.rebound)
    # the same rebound for the linear MLP: the nonlinearity is not what makes it
    assert not _verdict({"linear": bouncing, "gelu": bouncing}, margin=0.1).bounce
    # a rebound within the seeds' scatter does not count: one seed rebounds, the other does not
    scattered = rebound_measures(STEPS, np.stack([DIP_AND_RISE, FALLING]), 0.02)
    assert scattered.rebound_se == pytest.approx(bouncing.rebound / 2)
    unsure = _verdict({"linear": linear, "gelu": scattered}, margin=0.1)
    assert unsure.excess > 0.1 and unsure.excess == pytest.approx(unsure.excess_se) and not unsure.bounce
    assert np.isnan(found.excess_se), "one run each: no standard error, the margin alone decides"
    # a rebound below the margin does not count
    assert not _verdict({"linear": linear, "gelu": bouncing}, margin=bouncing.rebound + 0.01).bounce
    flat = rebound_measures(STEPS, np.full((1, 11), 2.5), 0.02)
    assert not _verdict({"linear": flat, "silu": flat}, margin=0.1).sparsified
    # the nonlinear runs end at their minimum: no rebound there is censored, and the verdict says so
    censored = _verdict({"linear": bouncing, "gelu": linear}, margin=0.1)
    assert not censored.bounce and censored.censored == ["gelu"]
    assert found.censored == ["linear", "relu"]
    # with an MLP the stable rank's rebound is compared too; without one its columns are empty
    ranked = verdict({"linear": RunMeasures(linear, linear), "gelu": RunMeasures(bouncing, bouncing)}, margin=0.1)
    assert ranked.stable_rank_excess == pytest.approx(bouncing.rebound - linear.rebound)
    assert found.stable_rank_excess is None
    assert RunMeasures(linear).record()["stable_rank_rebound"] is None
    assert RunMeasures(linear, bouncing).record()["stable_rank_rebound"] == bouncing.rebound


@pytest.mark.slow
def test_fixed_gradient_objective_has_the_loss_gradient_at_the_start():
    config = FixedGradientConfig(activation="gelu", seeds=1)
    numbers = MemberNumbers(*(jnp.asarray(value[0]) for value in config.members(0.1, 0.1)))
    joint, y0 = config.model.start(config, numbers)

    def gradient(objective, state):
        def block(W, z):
            return JoMABlock(joint.data, W, z, attention=joint.attention_form, activation=joint.activation,
                             temperature=joint.temperature)

        return jax.grad(lambda W, z: objective(block(W, z)), argnums=(0, 1))(*state)

    fixed = config.model.objective(joint, y0)
    for ours, theirs in zip(gradient(fixed, y0), gradient(JoMABlock.__call__, y0)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)
    moved = (y0[0] + 0.3 * jax.random.normal(jax.random.key(1), y0[0].shape), y0[1])
    assert not np.allclose(gradient(fixed, moved)[0], gradient(JoMABlock.__call__, moved)[0], rtol=1e-3), \
        "the signal is held at its initial value, not recomputed"


def _bumps(peaks: list[float], width: float = 15.0) -> np.ndarray:
    """Attention `(1, n, tokens)` on STEPS: a first token that falls from the start, then one bump
    per other token peaking at `peaks` (none: the token only falls)."""
    curves = [np.exp(-STEPS / 40)] + [0.5 + (np.exp(-((STEPS - peak) / width) ** 2) if peak is not None else -STEPS / 400)
                                      for peak in peaks]
    return np.stack(curves, axis=1)[None]


def test_token_order_of_constructed_curves_both_ways():
    salience = np.array([[0.1, 4.0, 3.0, 2.0, 1.0]])  # tokens 1..4 from most to least salient; token 0 the least
    later, measures_peak = token_order(STEPS, _bumps([20, 40, 60, 80]), salience, gain=0.1)
    assert later.rank_correlation == pytest.approx(1.0) and later.later_share == 1.0 and later.cases == 1
    assert later.gaining == 4 and later.tokens == 5
    np.testing.assert_array_equal(measures_peak[0], [-1, 20, 40, 60, 80])
    sooner, _ = token_order(STEPS, _bumps([80, 60, 40, 20]), salience, gain=0.1)
    assert sooner.rank_correlation == pytest.approx(-1.0) and sooner.later_share == 0.0
    # two gaining tokens are too few for a correlation, and a token that only falls never gains
    few, _ = token_order(STEPS, _bumps([20, 40, None, None]), salience, gain=0.1)
    assert few.cases == 0 and np.isnan(few.rank_correlation) and few.gaining == 2
    # a token that loses attention and wins some back recovers; its peak is the top of the recovery
    dip = np.where(STEPS < 50, 1.0 - STEPS / 100, 0.5 + (STEPS - 50) / 100)[None, :, None]
    recovered, peak = token_order(STEPS, dip, np.ones((1, 1)), gain=0.1)
    assert recovered.recovering == 1 and peak[0, 0] == 100 and recovered.peaks_at_end == 1.0
    assert token_order(STEPS, 1.0 - STEPS[None, :, None] / 200, np.ones((1, 1)), gain=0.1)[0].recovering == 0


def test_run_status_and_pair_outcome():
    falling, bouncing = rebound_measures(STEPS, FALLING[None], 0.02), rebound_measures(STEPS, DIP_AND_RISE[None], 0.02)
    flat = rebound_measures(STEPS, np.full((1, 11), 2.5), 0.02)
    early = rebound_measures(STEPS, np.concatenate([FALLING[:5], np.full(6, FALLING[4])])[None], 0.02)
    assert [run_status(found, 0.1) for found in (bouncing, falling, flat, early)] == [
        "rebounds", "censored", "no dip", "no rebound"]
    assert run_status(rebound_measures(STEPS, np.full((1, 11), np.nan), 0.02), 0.1) == "no runs"
    assert pair_outcome("rebounds", "no rebound") == "needed"
    assert pair_outcome("no rebound", "rebounds") == pair_outcome("rebounds", "rebounds") == "not needed"
    assert pair_outcome("no rebound", "no rebound") == "no rebound either way"
    assert pair_outcome("rebounds", "censored") == pair_outcome("no dip", "no rebound") == "untested"


def test_ingredient_verdicts_pair_settings_that_differ_in_one_ingredient():
    bouncing, early = (rebound_measures(STEPS, curve[None], 0.02) for curve in (
        DIP_AND_RISE, np.concatenate([FALLING[:5], np.full(6, FALLING[4])])))
    cases = (Trained("A: both", CompareConfig, {}, family="f", ingredients={"Adam": True, "LayerNorm": True}),
             Trained("B: no Adam", CompareConfig, {}, family="f", ingredients={"Adam": False, "LayerNorm": True}),
             Trained("C: neither", CompareConfig, {}, family="f", ingredients={"Adam": False, "LayerNorm": False}),
             Trained("D: other family", CompareConfig, {}, family="g", ingredients={"Adam": False, "LayerNorm": True}))
    activations = [("linear", "relu")] * 4
    measures = [{"linear": bouncing, "relu": bouncing}, {"linear": early, "relu": early},
                {"linear": early, "relu": bouncing}, {"linear": bouncing, "relu": bouncing}]
    found = {entry["ingredient"]: entry for entry in ingredient_verdicts(cases, activations, measures, 0.1)}
    # Adam: A against B only (C differs in LayerNorm too, D is another family); B never rebounds
    assert [(pair["with"], pair["without"]) for pair in found["Adam"]["pairs"]] == [
        ("A: both (linear)", "B: no Adam (linear)"), ("A: both (relu)", "B: no Adam (relu)")]
    assert found["Adam"]["verdict"] == "needed"
    # LayerNorm: B against C; C's ReLU run rebounds without it, its linear run does not with or without
    assert found["LayerNorm"]["verdict"] == "depends on the setting"
    assert [found["LayerNorm"][key] for key in ("needed", "not_needed", "neither", "untested")] == [0, 1, 1, 0]
    # the nonlinearity: only C's ReLU rebounds where its linear run does not
    assert found["nonlinearity"]["needed"] == found["nonlinearity"]["neither"] == 1
    assert found["nonlinearity"]["verdict"] == "depends on the setting"
    # the rebound without Adam: Adam is not needed
    without = ingredient_verdicts(cases[:2], activations[:2], [measures[0], measures[0]], 0.1)
    assert {entry["ingredient"]: entry["verdict"] for entry in without} == {"nonlinearity": "not needed",
                                                                           "Adam": "not needed"}
    flat = rebound_measures(STEPS, np.full((1, 11), 2.5), 0.02)
    assert ingredient_verdicts(cases[:1], activations[:1], [{"linear": flat, "relu": bouncing}], 0.1)[0]["verdict"] == \
        "undecided"


def test_toy_keeps_the_attention_on_every_component():
    curves = Toy().curves(BounceConfig(text=False), Toy.nonlinear)
    toy = Fig4Config()
    assert curves.attention.shape == (1, len(curves.steps), len(toy.targets()))
    np.testing.assert_allclose(curves.attention.sum(axis=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(curves.salience[0], toy.targets())
    assert curves.stable_rank is None, "the toy has no MLP"


def test_missing_corpus_is_named_unless_the_text_settings_are_chosen(monkeypatch):
    monkeypatch.delenv("JOMASIM_WIKITEXT", raising=False)
    missing = REPRODUCTIONS["bounce"].missing
    assert "text=false" in missing(set()) and missing({"corpus"}) is None and missing({"text"}) is None


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
                dict(margin=0.0), dict(length=0), dict(text_activations=("relu",)), dict(text_steps=50),
                dict(weight_decay=0.0), dict(corpus="")):
        with pytest.raises(OutOfRangeError):
            BounceConfig(**bad)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    config = BounceConfig(activations=("linear", "silu"), seeds=2, steps=300, ladder=False, text_seeds=1, text_steps=60,
                          text_eval_every=20, text_width=16)
    return reproduce("bounce", config, tmp_path_factory.mktemp("bounce"))


@pytest.mark.slow
def test_reduced_run_reports_its_numbers(reduced):
    folder, summary = reduced
    assert {path.name for path in folder.iterdir()} == {"bounce.png", "bounce_tokens.png", "bounce.npz", "bounce_table.csv",
                                                         "summary.json", "config.json"}
    assert json.loads((folder / "summary.json").read_text())["verdict"] == summary["verdict"]
    assert len(summary["settings"]) == 14 and len(summary["table"]) == 28
    rows = {(row["setting"], row["activation"]): row for row in summary["table"]}
    for found in summary["verdicts"]:
        linear = rows[(found["setting"], "linear")]["rebound"]
        assert found["rebound_linear"] == linear
        spread = found["excess_se"]  # none where no activation ran more than once (the toy)
        assert found["bounce"] == (found["excess"] > summary["margin"] and (spread is None or found["excess"] > 2 * spread))
    # the toy rebounds for the nonlinear drive only, whatever the block does
    assert "nonlinear toy (Fig. 4)" in summary["bounce_settings"]
    assert summary["verdict"].startswith(f"rebound larger for a nonlinear φ than for the linear one by more than 0.1 nats "
                                         f"and twice the seeds' standard error in {len(summary['bounce_settings'])} of 14 settings")
    # the real-data settings: the WikiText model's entropy and stable rank, one checkpoint every 20 minibatches
    text = [index for index, name in enumerate(summary["settings"]) if name.startswith("WikiText")]
    assert len(text) == 4 and tuple(summary["activations"][text[0]]) == ("linear", "relu")
    ingredients = {entry["ingredient"]: entry for entry in summary["ingredients"]}
    assert set(ingredients) == {"nonlinearity", "weight decay", "Adam", "LayerNorm", "dropout"}
    assert len(ingredients["Adam"]["pairs"]) == len(ingredients["dropout"]["pairs"]) == 2
    assert all(entry["verdict"] in ("needed", "not needed", "no rebound either way", "depends on the setting", "undecided")
               for entry in ingredients.values())
    assert [row["setting"] for row in summary["tokens"]][::2] == [summary["settings"][index] for index in (0, 8, 9)]
    with np.load(folder / "bounce.npz") as data:
        assert data["entropy_0"].shape == (2, 2, 7) and data["entropy_9"].shape == (2, 1, 500)
        assert data["token_attention_0"].shape == (2, 7, 20) and data["token_peak_step_9"].shape == (2, 1, 10)
        assert data[f"entropy_{text[0]}"].shape == data[f"stable_rank_{text[0]}"].shape == (2, 1, 4)
        for index in text:
            for activation, curves in zip(summary["activations"][index], data[f"entropy_{index}"]):
                row = rows[(summary["settings"][index], activation)]
                assert row["entropy_initial"] == pytest.approx(curves[:, 0].mean())
                assert row["rebound"] == pytest.approx(curves[0, -1] - curves[0].min())
