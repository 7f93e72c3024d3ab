"""Checkpoint study: tiny random GPT-NeoX and OPT checkpoints built here, saved, and measured; the
numbers must come from the saved weights (needs the `[pretrained]` extra; skipped without it)."""

import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

from jomasim._errors import InvalidPathError, OutOfRangeError
from jomasim.cli import main
from jomasim.experiments.pretrained import PretrainedConfig, checkpoint_step, run_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOKENS = (3, 17, 5, 9, 21, 2, 40, 11, 8, 30)


def _model(kind: str):
    sizes = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)
    if kind == "gpt_neox":
        return transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(intermediate_size=32, **sizes))
    return transformers.OPTForCausalLM(transformers.OPTConfig(ffn_dim=32, word_embed_proj_dim=16, **sizes))


def _first_weights(model, kind):
    if kind == "gpt_neox":
        return [layer.mlp.dense_h_to_4h.weight for layer in model.gpt_neox.layers]
    return [layer.fc1.weight for layer in model.model.decoder.layers]


@pytest.fixture(scope="module", params=["gpt_neox", "opt"])
def checkpoints(request, tmp_path_factory):
    """Three checkpoints whose layer-0 MLP weight is a known matrix of rank 1, 2 and 4."""
    kind, root = request.param, tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    model = _model(kind)
    folders, known = [], []
    for step, rank in ((0, 4), (1000, 1), (2000, 2)):
        matrix = np.zeros((32, 16))
        matrix[np.arange(rank), np.arange(rank)] = [3.0, 2.0, 1.0, 1.0][:rank]
        with torch.no_grad():
            _first_weights(model, kind)[0].copy_(torch.tensor(matrix, dtype=torch.float32))
        folder = root / f"step{step}"
        model.save_pretrained(folder)
        folders.append(str(folder))
        known.append(np.sum(matrix**2) / np.max(np.linalg.svd(matrix, compute_uv=False)) ** 2)
    return kind, folders, np.asarray(known)


def test_stable_rank_and_entropy_come_from_the_saved_weights(checkpoints):
    kind, folders, known = checkpoints
    result = run_pretrained(PretrainedConfig(checkpoints=tuple(folders), token_ids=TOKENS))
    data, summary = result.arrays(), result.summary()
    np.testing.assert_array_equal(data["steps"], [0, 1000, 2000])
    np.testing.assert_allclose(data["stable_rank"][:, 0], known, rtol=1e-6)  # 15/9, 1, 13/9
    assert summary["stable_rank_min_step"][0] == 1000 and summary["stable_rank_v_shape"][0]
    assert summary["stable_rank_rebound"][0] == pytest.approx(known[2] - known[1], rel=1e-6)
    for row, folder in enumerate(folders):
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        with torch.no_grad():
            attentions = model(torch.tensor([TOKENS]), output_attentions=True).attentions
        for layer, maps in enumerate(attentions):
            maps = maps[0].double().numpy()
            expected = np.mean(-np.sum(maps * np.log(maps + 1e-8), axis=-1))
            assert data["entropy"][row, layer] == pytest.approx(expected, rel=1e-5)
        other = np.linalg.svd(_first_weights(model, kind)[1].detach().double().numpy(), compute_uv=False)
        assert data["stable_rank"][row, 1] == pytest.approx(np.sum(other**2) / other[0] ** 2, rel=1e-9)
    assert checkpoint_step("checkpoint-143000", 0) == 143000 and checkpoint_step("final", 7) == 7


def test_bad_inputs_are_named(checkpoints, tmp_path, capsys):
    _, folders, _ = checkpoints
    with pytest.raises(OutOfRangeError, match="checkpoints=()"):
        PretrainedConfig()
    with pytest.raises(InvalidPathError, match="does not exist"):
        PretrainedConfig(checkpoints=(str(tmp_path / "nowhere"),), token_ids=TOKENS)
    with pytest.raises(OutOfRangeError, match="token ids in"):
        run_pretrained(PretrainedConfig(checkpoints=tuple(folders[:1]), token_ids=(1, 99)))
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["reproduce", "pretrained", "--checkpoints", str(tmp_path / "empty"), "--text", folders[0] + "/config.json",
                 "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "cannot load a checkpoint" in error


DAMAGES = {
    "cut short": lambda folder: (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:500]),
    "random bytes": lambda folder: (folder / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096)),
    "wrong shapes": lambda folder: (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace('"hidden_size": 16', '"hidden_size": 32')),
    "a weight NaN": lambda folder: safetensors_numpy.save_file(
        {name: np.where(name.endswith("fc1.weight") or name.endswith("dense_h_to_4h.weight"), np.nan, value)
         for name, value in safetensors_numpy.load_file(folder / "model.safetensors").items()},
        folder / "model.safetensors", metadata={"format": "pt"}),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoints_and_texts_are_refused_in_one_line(damage, checkpoints, tmp_path, capsys):
    """A checkpoint that cannot be read, holds the wrong shapes or non-finite weights, and a text
    that is not UTF-8: exit 2 with one line naming the file, and no run folder."""
    _, folders, _ = checkpoints
    folder = tmp_path / "step0"
    shutil.copytree(folders[0], folder)
    DAMAGES[damage](folder)
    out = tmp_path / "runs"
    assert main(["reproduce", "pretrained", "--checkpoints", str(folder), "--text", str(Path(folders[0]) / "config.json"),
                 "--out", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(folder) in error, error
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)))
    assert main(["reproduce", "pretrained", "--checkpoints", folders[0], "--text", str(binary), "--out", str(out),
                 "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "as UTF-8 text" in error, error
    assert not (out / "reproduce-pretrained").exists()


SERIES_WEIGHTS = {"gpt_neox": "gpt_neox.layers.{}.mlp.dense_h_to_4h.weight", "opt": "model.decoder.layers.{}.fc1.weight"}


@pytest.mark.parametrize("kind", ["gpt_neox", "opt"])
def test_a_trained_series_is_read_in_step_order_from_its_saved_weights(kind, tmp_path):
    script = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "checkpoint_series.py"))
    ids = np.random.default_rng(0).integers(0, 50, 2000)
    folders = script["train_series"](kind, ids, 50, tmp_path, layers=2, width=16, heads=2, length=16, batch=4,
                                     steps=100, save_every=25)
    assert [folder.name for folder in folders] == ["step0", "step25", "step50", "step75", "step100"]
    listed = sorted(map(str, folders))  # as a shell lists them: step0, step100, step25, step50, step75
    result = run_pretrained(PretrainedConfig(checkpoints=tuple(listed), token_ids=TOKENS))
    data, summary = result.arrays(), result.summary()
    np.testing.assert_array_equal(data["steps"], [0, 25, 50, 75, 100])
    assert summary["checkpoints"] == list(map(str, folders))
    for row, folder in enumerate(folders):
        tensors = safetensors_numpy.load_file(str(folder / "model.safetensors"))
        for layer in range(2):
            singular = np.linalg.svd(tensors[SERIES_WEIGHTS[kind].format(layer)].astype(float), compute_uv=False)
            assert data["stable_rank"][row, layer] == pytest.approx(np.sum(singular**2) / singular[0] ** 2, rel=1e-9)
    assert not np.allclose(data["stable_rank"][0], data["stable_rank"][-1]), "the weights were trained"


@pytest.mark.parametrize("kind", ["gpt_neox", "opt"])
def test_a_series_can_train_its_mlp_linear(kind):
    """`--activation linear` (the control for the rebound's nonlinearity): the MLP's activation is
    the identity, the layout's own (GPT-NeoX's GELU, OPT's ReLU) is not."""
    make_model = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "checkpoint_series.py"))["make_model"]
    x = torch.linspace(-3.0, 3.0, 13)
    for activation, identity in ((None, False), ("linear", True)):
        model = make_model(kind, 50, 1, 16, 2, 16, 0, activation)
        act = model.gpt_neox.layers[0].mlp.act if kind == "gpt_neox" else model.model.decoder.layers[0].activation_fn
        assert torch.allclose(act(x), x) == identity
