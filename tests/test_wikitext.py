"""WikiText runs: a tiny language model on the real WikiText-2 valid/test files (when
`JOMASIM_WIKITEXT` names them) gets sparser attention in layer 0 and a lower validation loss."""

import os

import numpy as np
import pytest

from jomasim._errors import OutOfRangeError
from jomasim.cli import main
from jomasim.corpus import CORPUS_VARIABLE
from jomasim.experiments.wikitext import WikitextConfig, run_wikitext

TINY = dict(train_split="valid", valid_split="test", min_count=100, depths=(1,), ablation_lrs=(), lr=1e-3, seeds=2,
            d_model=32, d_hidden=32, steps=300, eval_every=50, eval_windows=10)


def test_bad_settings_are_named():
    for bad, message in ((dict(depths=()), "depths=()"), (dict(eval_every=10, steps=5), "eval_every=10"),
                         (dict(ablation_lrs=(1e-3, -1.0)), "lr=-1.0"), (dict(bptt=1), "bptt=1")):
        with pytest.raises(OutOfRangeError, match=message):
            WikitextConfig(**bad)
    assert WikitextConfig(depths=(5,), lr=1e-4, ablation_lrs=(1e-4, 1e-3)).runs == [(5, 1e-4), (5, 1e-3)]


def test_missing_corpus_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "wikitext", "--corpus", str(tmp_path / "nowhere"), "--small", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "does not exist" in error


@pytest.mark.skipif(not os.environ.get(CORPUS_VARIABLE), reason=f"set {CORPUS_VARIABLE} to a WikiText folder")
def test_layer_0_attention_sparsifies_and_loss_falls(tmp_path, monkeypatch):
    monkeypatch.setenv("JOMASIM_CACHE", str(tmp_path / "cache"))
    data, summary = run_wikitext(WikitextConfig(**TINY))
    assert [run["depth"] for run in summary["runs"]] == [1]
    for index, run in enumerate(summary["runs"]):
        assert run["entropy_min"][0] < run["entropy_initial"][0] - 0.1, "layer 0 gets sparser within the run"
        valid = data[f"valid_loss_{index}"].mean(axis=0)
        assert valid[-1] < valid[0] - 1.0 and np.all(np.isfinite(data[f"losses_{index}"]))
        assert data[f"entropy_{index}"].shape == (2, len(data["steps"]), run["depth"])
