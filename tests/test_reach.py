"""`jomasim reproduce reach`: the ladder from the JoMA block to a Transformer, at reduced sizes."""

import numpy as np
import pytest

from jomasim.experiments.compare import CompareConfig, run_compare
from jomasim.experiments.reach import ReachConfig, _reach, run_reach

SIZES = dict(n_distinct=4, n_common=4, n_classes=5, dim=12)


@pytest.fixture(scope="module")
def ladder():
    config = ReachConfig(activations=("linear",), seeds=2, steps=60, save_every=20, length=8, short_length=4,
                         matched_adam=None, calibrate=True, search_points=4, search_seeds=1, **SIZES)
    result = run_reach(config)
    return config, result.arrays(), result.summary()


@pytest.mark.slow
def test_every_rung_is_measured(ladder):
    config, data, summary = ladder
    rungs = summary["rungs"]
    assert len(rungs) == 9 and rungs[0] == "block" and rungs[7] == "+ Adam"
    assert summary["matched"] == rungs[8:] == ["+ LayerNorm (post), matched"]
    assert data["nc_zhat_z"].shape == (9, 1, 2, 4) and data["nc_reduced_z"].shape == (9, 1, 2, 4)
    assert [row["rung"] for row in summary["table"]] == rungs
    table = summary["table"]
    search, = summary["calibration"]
    assert (table[8]["eta_w"], table[8]["eta_z"]) == (config.matched_layernorm[0], search["chosen"])
    # Adam's flows run on Adam's clock, which runs ahead of its steps (per unit of gradient)
    assert np.isfinite(data["nc_reduced_z"][7][..., :2]).all() and table[7]["adam_clock_w"] > config.steps
    assert table[6]["adam_clock_w"] is None
    assert np.isfinite(data["size_zhat_z"][7][..., 1:]).all()
    for row in table:
        assert row["regime"].startswith("MLP-first") == (row["nc_dzhat2_dz"] > row["nc_dzhat1_dz"])
    # direct logits move at eta_z, W_Q and W_K at eta_z times the measured factor
    rates = [row["attention_rate"] for row in summary["table"]]
    np.testing.assert_allclose(rates[:3], 1.0)
    assert all(0 < rate < 1 for rate in rates[3:])
    # the diagnostic rung is the W_Q, W_K rung's training, with other flows
    np.testing.assert_allclose(data["entropy_train"][4], data["entropy_train"][3], atol=1e-12)
    assert not np.allclose(data["nc_reduced_z"][4], data["nc_reduced_z"][3])


@pytest.mark.slow
def test_the_calibration_reaches_the_blocks_entropy_drop_or_says_it_did_not(ladder):
    config, _, summary = ladder
    search, = summary["calibration"]
    block, *_, matched = summary["table"]
    assert search["target"] == block["entropy_drop"] and len(search["eta_z"]) == 4 == len(search["drops"])
    low, high = config.matched_layernorm[1] / config.search_span, config.matched_layernorm[1] * config.search_span
    np.testing.assert_allclose([search["eta_z"][0], search["eta_z"][-1]], [low, high])
    drops = np.asarray(search["drops"])
    assert search["bracketed"] == bool(np.any((drops[:-1] - search["target"]) * (drops[1:] - search["target"]) <= 0))
    assert min(search["eta_z"]) <= search["chosen"] <= max(search["eta_z"])
    off = abs(matched["entropy_drop"] - search["target"])
    if matched["progress"] == "calibrated":
        assert off <= config.tolerance * search["target"]
    else:
        assert off > config.tolerance * search["target"] and matched["progress"].startswith("not calibrated (entropy drop")


@pytest.mark.slow
def test_the_first_rung_is_the_block(ladder):
    config, data, summary = ladder
    block = run_compare(CompareConfig(seeds=2, steps=60, save_every=20, **SIZES))
    np.testing.assert_allclose(data["nc_zhat_z"][0, 0], block.members.train.theorem1.nc_zhat_z, atol=1e-10)
    np.testing.assert_allclose(data["nc_reduced_z"][0, 0], block.members.reduced.agreement.nc_z, atol=1e-10)
    np.testing.assert_allclose(summary["table"][0]["nc_reduced_z"], np.mean(block.scalars["nc_reduced_z"]), atol=1e-10)


def test_reach_is_the_last_rung_before_the_theory_parts():
    rungs = [("a", {}), ("b", {}), ("c", {})]
    rows = lambda *values: [{"nc_reduced_z": value} for value in values]  # noqa: E731
    assert _reach(rungs, rows(1.0, 0.9, 0.5), 0.9) == "b"
    assert _reach(rungs, rows(1.0, 0.9, 0.5), 0.95) == "a"
    assert _reach(rungs, rows(1.0, 0.2, 1.0), 0.9) == "a", "a rung that parts ends the reach"
    assert _reach(rungs, rows(0.8, 1.0, 1.0), 0.9) is None
    assert _reach(rungs, rows(1.0, 1.0, 1.0), 0.9) == "c"
    assert _reach(rungs, rows(1.0, None, 1.0), 0.9) == "a", "no value (every seed failed) is no agreement"
    sized = [{"nc_reduced_z": 1.0, "size_reduced_z": size} for size in (1.2, 0.4, 1.0)]
    assert _reach(rungs, sized, 0.9) == "c"
    assert _reach(rungs, sized, 0.9, size_within=2.0) == "a", "a flow 2.5× too small is not described in size"
    assert _reach(rungs, sized, 0.9, size_within=3.0) == "c"


@pytest.mark.parametrize("settings, message", [
    (dict(activations=()), "activations=()"),
    (dict(activations=("tanh",)), "'tanh'"),
    (dict(dim=5), "dim=5"),
])
def test_bad_ladder_settings_name_the_value(settings, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReachConfig(**settings)
