"""Regenerates the runs whose figures and numbers the documentation shows, into `docs/results/`.

Every number a page of the documentation states about a run is read at build time from a
`summary.json` this script wrote (`docs/hooks.py`); the figures are the runs' own PNGs. Run it
after a change that moves the numbers:

    python docs/make_results.py                      # everything (about 25 min on 2 CPU cores)
    python docs/make_results.py compare fig4         # some of them
    python docs/make_results.py --corpus DIR         # with the WikiText reproduction (--small), the bounce
                                                     # search (its WikiText settings) and the checkpoint
                                                     # series (the [pretrained] extra)

Each run goes through the `jomasim` command, as a user would run it, into a scratch folder; its
`summary.json`, `config.json`, figure and table are copied into `docs/results/NAME/` (not its
arrays, which stay out of the repository).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

RUNS = {
    "compare": (["compare"], "fig2.png"),
    "compare-transformer": (["compare", "--model", "transformer"], "fig2.png"),
    "compare-layernorm": (["compare", "--model", "transformer", "--norm", "post", "--eta-w", "0.002", "--eta-z", "1"],
                          "fig2.png"),
    "compare-layernorm-closure": (["compare", "--model", "transformer", "--norm", "post", "--eta-w", "0.002", "--eta-z",
                                   "1", "--scale-closure", "true"], "fig2.png"),
    "compare-adam": (["compare", "--model", "transformer", "--attention-params", "logits", "--sequence-length", "0",
                      "--optimizer", "adam", "--eta-w", "1e-4", "--eta-z", "3e-2", "--solver", "euler", "--dt0", "30"],
                     "fig2.png"),
    "compare-adam-exp": (["compare", "--model", "transformer", "--attention", "exp", "--attention-params", "logits",
                          "--sequence-length", "0", "--optimizer", "adam", "--eta-w", "1e-4", "--eta-z", "3e-2",
                          "--solver", "euler", "--dt0", "30"], "fig2.png"),
    "simulate": (["simulate"], "theory.png"),
    "fig3": (["reproduce", "fig3"], "fig3.png"),
    "fig4": (["reproduce", "fig4"], "fig4.png"),
    "scan-snap": (["reproduce", "scan-snap", "--panels", "1,3,5,10"], "scan-snap.png"),
    "reach": (["reproduce", "reach", "--set", "calibrate=true"], "reach.png"),
    "bounce": (["reproduce", "bounce"], "bounce.png"),
    "table1": (["reproduce", "table1"], "table1.png"),
    "table1-control": (["reproduce", "table1", "--paper-sizes", "--set", "steps=1", "--set", "n_classes=20"], "table1.png"),
    "wikitext": (["reproduce", "wikitext", "--small", "--set", "train_split=valid", "--set", "valid_split=test"],
                 "wikitext.png"),
    "wikitext-linear": (["reproduce", "wikitext", "--small", "--set", "train_split=valid", "--set", "valid_split=test",
                         "--set", "ffn_activation=linear"], "wikitext.png"),
    "wikitext-no-dropout": (["reproduce", "wikitext", "--small", "--set", "train_split=valid", "--set",
                             "valid_split=test", "--set", "dropout=0"], "wikitext.png"),
}
"""Each documented run: its `jomasim` arguments and its figure. `compare` is also fitted (`fit`)."""

SERIES = ("--layers", "4", "--width", "128", "--heads", "4", "--length", "64", "--batch", "16", "--steps", "3000",
          "--save-every", "150")
"""The sizes of the checkpoint series (`examples/checkpoint_series.py`) the pretrained page shows;
each layout's study goes to `docs/results/pretrained-KIND/`, with a linear MLP to
`docs/results/pretrained-KIND-linear/` (needs the `[pretrained]` extra)."""

KEPT = ("summary.json", "config.json", "fit.json", "fit.png")


def _run(name: str, arguments: list[str], figure: str, scratch: Path) -> None:
    """Runs one entry of `RUNS` and copies what the documentation reads."""
    command = [sys.executable, "-m", "jomasim.cli", *arguments, "--out", str(scratch)]
    if arguments[0] != "reproduce":
        command += ["--name", name]
    print("$ jomasim " + " ".join(arguments), flush=True)
    subprocess.run(command, check=True)
    folder = scratch / (name if arguments[0] != "reproduce" else f"reproduce-{arguments[1]}")
    if name == "compare":
        subprocess.run([sys.executable, "-m", "jomasim.cli", "fit", str(folder)], check=True)
    _store(name, [folder / figure, *folder.glob(f"{Path(figure).stem}_*.png"), *folder.glob("*_table.csv"),
                  *(folder / kept for kept in KEPT),
                  *(folder / "fit" / kept for kept in KEPT)])


def _store(name: str, paths) -> None:
    """Replaces `docs/results/NAME/` by the files of `paths` that exist."""
    target = RESULTS / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in paths:
        if path.exists():
            shutil.copy(path, target / path.name)


def _series(corpus: str, scratch: Path) -> None:
    """Trains the checkpoint series, with the layouts' own MLP activations and with a linear MLP,
    and copies each series' study."""
    script = Path(__file__).parent.parent / "examples" / "checkpoint_series.py"
    for activation in ([], ["--activation", "linear"]):
        print("$ python examples/checkpoint_series.py " + " ".join((*SERIES, *activation)), flush=True)
        subprocess.run([sys.executable, str(script), "--corpus", corpus, "--out", str(scratch / "series"), *SERIES,
                        *activation], check=True)
    for study in sorted((scratch / "series").glob("*/reproduce-pretrained")):
        _store(f"pretrained-{study.parent.name}", [study / kept for kept in ("summary.json", "config.json", "pretrained.png")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"the runs to regenerate, of {', '.join(RUNS)} (default: all)")
    parser.add_argument("--corpus", default=None, help="a folder in the WikiText layout (without it, no wikitext and no "
                        "checkpoint series)")
    args = parser.parse_args()
    known = (*RUNS, "pretrained-series")
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(known)}")
    needs_corpus = {name for name in known if name.startswith(("wikitext", "pretrained-series", "bounce"))}
    names = args.names or [name for name in known if name not in needs_corpus or args.corpus]
    if args.corpus is None and needs_corpus & set(names):
        parser.error(f"{', '.join(sorted(needs_corpus))} need --corpus DIR")
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            if name == "pretrained-series":
                _series(args.corpus, Path(scratch))
                continue
            arguments, figure = RUNS[name]
            if name in needs_corpus:
                arguments = [*arguments, "--corpus", args.corpus]
            _run(name, arguments, figure, Path(scratch))


if __name__ == "__main__":
    main()
