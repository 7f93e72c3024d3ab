"""Attention entropy and the stable rank of the MLP's first weight across checkpoints of one model
(JOMA_MATH §4.4, §6.5): the joint dynamics predicts that the rank of the lower MLP layer first
drops and then bounces back.

Checkpoints are local folders that `transformers` can load (GPT-NeoX / Pythia and OPT layouts;
the optional extra `[pretrained]` installs it with a CPU PyTorch). For each checkpoint and layer:
the attention entropy on a given text (`mean over heads and query positions of
−Σ_j a_ij log(a_ij + 1e-8)`, causal rows, as §6.2) and the stable rank ‖W‖_F² / ‖W‖₂² of the MLP's
first weight (`gpt_neox.layers.i.mlp.dense_h_to_4h.weight`, `model.decoder.layers.i.fc1.weight`).
Which checkpoints, text and weight the paper used are not published; these are the natural choices.
"""

import dataclasses
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._errors import InvalidChoiceError, InvalidPathError, OutOfRangeError, at_least
from .._settings import Settings, setting
from ..metrics import attention_map_entropy, stable_rank

LAYOUTS = {
    "gpt_neox": lambda model: [layer.mlp.dense_h_to_4h.weight for layer in model.gpt_neox.layers],
    "opt": lambda model: [layer.fc1.weight for layer in model.model.decoder.layers],
}
"""Per supported `model_type`, the first MLP weight of every layer."""


def _transformers():
    try:
        import torch
        import transformers
    except ImportError:
        raise InvalidChoiceError("the pretrained reproduction needs transformers and PyTorch: "
                                 "pip install -e \".[pretrained]\"") from None
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


def checkpoint_step(folder: str | Path, fallback: int) -> int:
    """The training step in a checkpoint folder's name (`step1000`, `checkpoint-1000`, `...-1000`),
    or `fallback` when the name has no number."""
    numbers = re.findall(r"\d+", Path(folder).name)
    return int(numbers[-1]) if numbers else fallback


def _folders(name: str, folders: tuple[str, ...]) -> None:
    if not folders:
        raise OutOfRangeError(f"{name}=() is not allowed; give the checkpoint folders of one model (--checkpoints)")
    for folder in folders:
        if not Path(folder).is_dir():
            raise InvalidPathError(f"checkpoint folder {str(folder)!r} does not exist or is not a folder")


def _file_or_none(name: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise InvalidPathError(f"text file {str(path)!r} does not exist")


@dataclasses.dataclass(frozen=True)
class PretrainedConfig(Settings):
    """Settings of the checkpoint study: the attention on one text and the MLP's stable rank, per
    layer, at every checkpoint of one model."""

    checkpoints: tuple[str, ...] = setting((), "checkpoint folders of one model (read in the order of the step in "
                                           "their names)", check=_folders)
    text: str | None = setting(None, "a UTF-8 text file to measure the attention on, tokenised by each checkpoint's "
                               "tokenizer (none: token_ids)", check=_file_or_none)
    token_ids: tuple[int, ...] = setting((), "the token ids to measure on when there is no text (for checkpoints "
                                         "without a tokenizer)")
    max_tokens: int = setting(512, "the text is cut to this many tokens (one sequence)", check=at_least(2))

    def check_fields(self):
        if self.text is None and not self.token_ids:
            raise OutOfRangeError("give a text file (--text) or token_ids to measure the attention on")


def measure_checkpoint(folder: str | Path, config: PretrainedConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the attention entropy on the config's text and the stable rank of the first MLP weight.

    **Returns:**

    `(entropy, stable_ranks)`, each `(n_layers,)`.
    """
    torch, transformers = _transformers()
    from safetensors import SafetensorError

    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    # a missing, cut short, random or wrong-shaped weights file: whatever the loaders raise for it
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, SafetensorError) as error:
        raise InvalidPathError(f"cannot load a checkpoint from {str(folder)!r}: {' '.join(str(error).split())[:300]}") from None
    broken = [name for name, weight in model.named_parameters() if not bool(torch.isfinite(weight).all())]
    if broken:
        raise InvalidPathError(f"checkpoint {str(folder)!r} has weights that are not finite in {len(broken)} tensors "
                               f"(first: {broken[0]})")
    kind = model.config.model_type
    if kind not in LAYOUTS:
        raise InvalidChoiceError(f"model_type={kind!r} in {str(folder)!r} is not supported; supported: {sorted(LAYOUTS)}")
    if config.text is not None:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as error:
            raise InvalidPathError(f"no tokenizer in {str(folder)!r} for the text: {' '.join(str(error).split())}") from None
        try:
            text = Path(config.text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidPathError(f"cannot read the text file {str(config.text)!r} as UTF-8 text: {error}") from None
        ids = tokenizer(text)["input_ids"][: config.max_tokens]
    else:
        ids = list(config.token_ids[: config.max_tokens])
    if len(ids) < 2 or max(ids) >= model.config.vocab_size or min(ids) < 0:
        raise OutOfRangeError(f"the measured text must be at least 2 token ids in [0, {model.config.vocab_size}); got {len(ids)}")
    with torch.no_grad():
        attentions = model(torch.tensor([ids]), output_attentions=True).attentions
    entropy = np.asarray(attention_map_entropy(np.stack([maps[0].double().numpy() for maps in attentions])))
    weights = [weight.detach().double().numpy() for weight in LAYOUTS[kind](model)]
    return entropy, np.asarray([float(stable_rank(weight)) for weight in weights])


class PretrainedResult(NamedTuple):
    """What the checkpoints of one model measured, in step order (a listing such as `step0,
    step100, step20` is read as 0, 20, 100).

    **Fields:**

    - `steps`: each checkpoint's step (from the folder names, else the position given).
    - `checkpoints`: the folders in that order.
    - `entropy`: each layer's attention entropy on the text `(n_checkpoints, n_layers)`.
    - `stable_rank`: the stable rank of each layer's first MLP weight `(n_checkpoints, n_layers)`.
    """

    steps: np.ndarray
    checkpoints: list[str]
    entropy: np.ndarray
    stable_rank: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """`steps`, `entropy`, `stable_rank`."""
        return {"steps": self.steps, "entropy": self.entropy, "stable_rank": self.stable_rank}

    def summary(self) -> dict:
        """`steps`, `checkpoints`, and per layer `entropy_min_step`, `stable_rank_min_step` and
        `stable_rank_v_shape` (the minimum lies strictly inside the series and the last value is
        above it), and how far each rose again by the end, `stable_rank_rebound` and
        `entropy_rebound` (last − minimum)."""
        steps, ranks, entropy = self.steps, self.stable_rank, self.entropy
        lowest = ranks.argmin(axis=0)
        return {
            "steps": steps.tolist(),
            "checkpoints": self.checkpoints,
            "entropy_min_step": steps[entropy.argmin(axis=0)].tolist(),
            "stable_rank_min_step": steps[lowest].tolist(),
            "stable_rank_v_shape": [bool(0 < low < len(steps) - 1 and ranks[-1, layer] > ranks[low, layer])
                                    for layer, low in enumerate(lowest)],
            "stable_rank_rebound": (ranks[-1] - ranks.min(axis=0)).tolist(),
            "entropy_rebound": (entropy[-1] - entropy.min(axis=0)).tolist(),
        }


def run_pretrained(config: PretrainedConfig) -> PretrainedResult:
    """Measures every checkpoint.

    **Returns:**

    The `PretrainedResult`.
    """
    given = np.asarray([checkpoint_step(folder, index) for index, folder in enumerate(config.checkpoints)])
    order = np.argsort(given, kind="stable")
    steps, folders = given[order], [config.checkpoints[index] for index in order]
    measured = [measure_checkpoint(folder, config) for folder in folders]
    if len({len(entropy) for entropy, _ in measured}) != 1:
        raise OutOfRangeError("the checkpoints have different numbers of layers; give checkpoints of one model")
    return PretrainedResult(steps=steps, checkpoints=[str(folder) for folder in folders],
                            entropy=np.stack([entropy for entropy, _ in measured]),
                            stable_rank=np.stack([rank for _, rank in measured]))
