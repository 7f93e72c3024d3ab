"""A real series of trained checkpoints for `jomasim reproduce pretrained`, made on a CPU.

No Pythia or OPT checkpoint can be downloaded everywhere, but the claim the reproduction tests
(over training the attention entropy and the stable rank of the lower MLP weight first fall, then
rise) can be tested on checkpoints that really were trained. This script trains small GPT-NeoX
(Pythia's layout) and OPT models from scratch with `transformers` on a CPU PyTorch, on a corpus in
the WikiText layout (word-level tokens, as `jomasim.corpus` reads them), saves `step{k}/` every N
steps, and runs the checkpoint study on each series, measured on the corpus's held-out split.

Needs the `[pretrained]` extra (`pip install -e ".[pretrained]"`). Without arguments it runs a
tiny series in a scratch folder (what `.ci/run` checks); the sizes the README reports:

    python examples/checkpoint_series.py --corpus DIR --out runs/checkpoint-series \\
        --layers 4 --width 128 --heads 4 --length 64 --batch 16 --steps 3000 --save-every 150

`--activation linear` trains the same models with a linear MLP (`transformers` configs take the
activation by name) into `KIND-linear/`: the control for whether a rebound needs the MLP's
nonlinearity.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from jomasim.corpus import CORPUS_VARIABLE, load_corpus
from jomasim.experiments.pretrained import PretrainedConfig
from jomasim.runs import reproduce

KINDS = ("gpt_neox", "opt")
"""The model layouts trained: GPT-NeoX (Pythia) and OPT, the two `reproduce pretrained` reads."""

ACTIVATIONS = ("linear", "relu", "gelu", "silu")
"""MLP activations a series can be trained with instead of its layout's own (GPT-NeoX's GELU, OPT's
ReLU), by their `transformers` names."""


def make_model(kind: str, vocab_size: int, layers: int, width: int, heads: int, length: int, seed: int,
               activation: str | None = None):
    """A freshly initialised causal language model of layout `kind` (MLP width 4 × `width`, sequences
    up to `length` tokens), with the MLP `activation` (one of `ACTIVATIONS`; `None`: the layout's own)."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    sizes = dict(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                 max_position_embeddings=length)
    if kind == "gpt_neox":
        chosen = {"hidden_act": activation} if activation else {}
        return transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(intermediate_size=4 * width, **chosen, **sizes))
    chosen = {"activation_function": activation} if activation else {}
    return transformers.OPTForCausalLM(transformers.OPTConfig(ffn_dim=4 * width, word_embed_proj_dim=width, **chosen,
                                                              **sizes))


def train_series(kind: str, ids: np.ndarray, vocab_size: int, out: Path, *, layers: int = 2, width: int = 32,
                 heads: int = 2, length: int = 32, batch: int = 8, steps: int = 20, save_every: int = 5,
                 lr: float = 1e-3, seed: int = 0, positions: int | None = None,
                 activation: str | None = None) -> list[Path]:
    """Trains one model with AdamW on random windows of `length` tokens of `ids` (next-token loss),
    saving `out/step{k}` at step 0 and every `save_every` steps (and the last); the model takes up
    to `positions` tokens (default `length`) and has the MLP `activation` (`make_model`).

    **Returns:**

    The checkpoint folders, in step order.
    """
    import torch

    model = make_model(kind, vocab_size, layers, width, heads, max(length, positions or length), seed, activation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = np.random.default_rng(seed)
    folders = []
    for step in range(steps + 1):
        if step % save_every == 0 or step == steps:
            folder = out / f"step{step}"
            model.save_pretrained(folder)
            folders.append(folder)
        if step == steps:
            break
        starts = generator.integers(0, len(ids) - length, batch)
        windows = torch.tensor(np.stack([ids[start:start + length] for start in starts]), dtype=torch.long)
        loss = model(input_ids=windows, labels=windows).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 10) == 0:
            print(f"{kind} step {step}: loss {loss.item():.3f}", flush=True)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=os.environ.get(CORPUS_VARIABLE),
                        help=f"a folder in the WikiText layout (default ${CORPUS_VARIABLE})")
    parser.add_argument("--train-split", default="valid", help="the split trained on (the shipped WikiText-2 has valid, test)")
    parser.add_argument("--measure-split", default="test", help="the split the attention is measured on")
    parser.add_argument("--out", default=None, help="where the series and the studies go (default: a scratch folder)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated layouts to train")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=32, help="hidden size (the MLP is 4 × as wide)")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--length", type=int, default=64, help="tokens per training window")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-count", type=int, default=3, help="words rarer than this in the training split are <unk>")
    parser.add_argument("--measure-tokens", type=int, default=128, help="tokens of the measured split (one sequence)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activation", choices=ACTIVATIONS, default=None,
                        help="the MLP activation instead of the layout's own; the series goes to KIND-ACTIVATION/")
    args = parser.parse_args()
    if args.corpus is None:
        parser.error(f"give --corpus or set {CORPUS_VARIABLE}")
    corpus = load_corpus(args.corpus, train_split=args.train_split, valid_split=args.measure_split, min_count=args.min_count)
    measured = tuple(int(token) for token in corpus.valid[: args.measure_tokens])
    with tempfile.TemporaryDirectory(prefix="jomasim-series-") as scratch:
        out = Path(args.out or scratch)
        for kind in args.kinds.split(","):
            series = kind if args.activation is None else f"{kind}-{args.activation}"
            folders = train_series(kind, corpus.train, len(corpus.vocabulary), out / series, layers=args.layers,
                                   width=args.width, heads=args.heads, length=args.length, batch=args.batch,
                                   steps=args.steps, save_every=args.save_every, lr=args.lr, seed=args.seed,
                                   positions=len(measured), activation=args.activation)
            folder, summary = reproduce("pretrained", PretrainedConfig(checkpoints=tuple(map(str, folders)),
                                                                       token_ids=measured), out / series)
            print(f"{series}: {len(folders)} checkpoints, study in {folder}")
            for layer, (low, v_shape) in enumerate(zip(summary["stable_rank_min_step"], summary["stable_rank_v_shape"])):
                print(f"  layer {layer}: stable rank lowest at step {low} (V-shape: {v_shape}), "
                      f"attention entropy lowest at step {summary['entropy_min_step'][layer]}")


if __name__ == "__main__":
    main()
