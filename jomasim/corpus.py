"""Text corpora in the WikiText layout: finding the split files, tokenising, the vocabulary, a cache,
and the language-model batches of the PyTorch tutorial the authors' WikiText code follows.

A corpus folder holds `train`, `valid` and `test` files named either `wiki.SPLIT.tokens` (the
WikiText release) or `SPLIT.txt`; without one, WikiText-2 can come from the `datasets` library. Any
split can play any role (tests train on `valid` and validate on `test`, the two splits shipped with
the project's CI data). Tokens are the `basic_english` rules of torchtext (lower case, punctuation
split off, `<unk>` kept as a word); the vocabulary comes from the training split, most frequent
first, with `<unk>` (id 0) for everything below the frequency cut-off or unseen. Token ids are
cached on disk per corpus, split choice and cut-off.
"""

import collections
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._errors import InvalidPathError, OutOfRangeError, check_integer
from .io import arrays_digest, write_npz, write_text

SPLITS = ("train", "valid", "test")
UNKNOWN = "<unk>"
CORPUS_VARIABLE = "JOMASIM_WIKITEXT"
"""The environment variable naming a corpus folder when no folder is given."""

_RULES = [(re.compile(pattern), replacement) for pattern, replacement in (
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "), (r"\(", " ( "), (r"\)", " ) "),
    (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "), (r"\s+", " "))]


def tokenize(line: str) -> list[str]:
    """The words of one line by torchtext's `basic_english` rules."""
    line = line.lower()
    for pattern, replacement in _RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def split_files(folder: str | Path | None) -> dict[str, Path]:
    """The `train`, `valid` and `test` files of a corpus folder (either naming; missing splits left out).

    **Arguments:**

    - `folder`: the corpus folder; `None` reads it from the `JOMASIM_WIKITEXT` environment variable,
      or, when that is unset, fetches WikiText-2 (raw) with the `datasets` library if it is
      installed and can reach its hub, writing it once into the cache as a corpus folder.

    **Raises:**

    `InvalidPathError` when there is no folder, it is not a folder, or it holds no split file.
    """
    if folder is None:
        folder = os.environ.get(CORPUS_VARIABLE) or _from_datasets()
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidPathError(f"corpus folder {str(folder)!r} does not exist or is not a folder")
    found = {}
    for split in SPLITS:
        for name in (f"wiki.{split}.tokens", f"{split}.txt"):
            if (folder / name).is_file():
                found[split] = folder / name
                break
    if not found:
        raise InvalidPathError(
            f"no WikiText split files in {str(folder)!r}: put wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens "
            "(or train.txt, valid.txt, test.txt) there, e.g. from the WikiText-2 release"
        )
    return found


def _cache_root() -> Path:
    return Path(os.environ.get("JOMASIM_CACHE", Path.home() / ".cache" / "jomasim"))


def _from_datasets() -> Path:
    """WikiText-2 (raw) from the `datasets` library, written once under the cache as `SPLIT.txt`."""
    target = _cache_root() / "wikitext-2-raw-v1"
    if all((target / f"{split}.txt").is_file() for split in SPLITS):
        return target
    where = f"pass a folder in the WikiText layout (--corpus) or set {CORPUS_VARIABLE}"
    try:
        import datasets
    except ImportError:
        raise InvalidPathError(f"no corpus given: {where} (or install the datasets library to fetch WikiText-2)") from None
    try:
        loaded = datasets.load_dataset("wikitext", "wikitext-2-raw-v1")
    except Exception as error:  # noqa: BLE001 (network and hub failures come in many types)
        raise InvalidPathError(f"no corpus given and the datasets library could not fetch WikiText-2 "
                               f"({' '.join(str(error).split())}); {where}") from None
    target.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        write_text(target / f"{name}.txt", "\n".join(loaded[split]["text"]))
    return target


class Corpus(NamedTuple):
    """Token ids of a training and a validation split and the vocabulary they share."""

    train: np.ndarray
    valid: np.ndarray
    vocabulary: tuple[str, ...]


def _read_tokens(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidPathError(f"cannot read {str(path)!r}: {getattr(error, 'strerror', None) or error}") from None
    return [words for words in map(tokenize, text.splitlines()) if words]


def _ids(lines: list[list[str]], index: dict[str, int]) -> np.ndarray:
    return np.asarray([index.get(word, 0) for words in lines for word in words], dtype=np.int32)


def _cache_file(files: dict[str, Path], train_split: str, valid_split: str, min_count: int) -> Path:
    identity = {"files": {split: [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns]
                          for split, path in files.items() if split in (train_split, valid_split)},
                "train": train_split, "valid": valid_split, "min_count": min_count, "rules": 1}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return _cache_root() / f"corpus-{digest}.npz"


def _read_cache(path: Path) -> Corpus | None:
    """The corpus stored at `path`, or None (then it is rebuilt) if the entry is missing,
    unreadable, or its arrays do not match the SHA-256 written with them (a damaged or edited
    entry)."""
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in ("train", "valid", "vocabulary")}
            recorded = str(stored["sha256"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if arrays_digest(arrays) != recorded:
        return None
    return Corpus(arrays["train"], arrays["valid"], tuple(arrays["vocabulary"].tolist()))


def load_corpus(folder: str | Path | None = None, *, train_split: str = "train", valid_split: str = "valid",
                min_count: int = 1, cache: bool = True) -> Corpus:
    """The token ids of two splits of a corpus and the training split's vocabulary.

    **Arguments:**

    - `folder`: the corpus folder (`None`: the `JOMASIM_WIKITEXT` environment variable).
    - `train_split`, `valid_split`: which files to train and validate on (`train`, `valid`, `test`).
    - `min_count`: words seen fewer times than this in the training split become `<unk>`.
    - `cache`: read and write the ids under `$JOMASIM_CACHE` (default `~/.cache/jomasim`).

    **Returns:**

    A `Corpus` (ids as int32 arrays; `vocabulary[0]` is `<unk>`).
    """
    for name, split in (("train_split", train_split), ("valid_split", valid_split)):
        if split not in SPLITS:
            raise OutOfRangeError(f"{name}={split!r} is not allowed; choose one of {list(SPLITS)}")
    check_integer("min_count", min_count, least=1)
    files = split_files(folder)
    for split in (train_split, valid_split):
        if split not in files:
            raise InvalidPathError(f"the corpus in {str(Path(files[next(iter(files))]).parent)!r} has no {split} split "
                                   f"(wiki.{split}.tokens or {split}.txt); it has {sorted(files)}")
    path = _cache_file(files, train_split, valid_split, min_count)
    stored = _read_cache(path) if cache else None
    if stored is not None:
        return stored
    train_lines = _read_tokens(files[train_split])
    counts = collections.Counter(word for words in train_lines for word in words)
    counts.pop(UNKNOWN, None)
    words = sorted((word for word, count in counts.items() if count >= min_count), key=lambda word: (-counts[word], word))
    vocabulary = (UNKNOWN, *words)
    index = {word: number for number, word in enumerate(vocabulary)}
    corpus = Corpus(_ids(train_lines, index), _ids(_read_tokens(files[valid_split]), index), vocabulary)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            arrays = {"train": corpus.train, "valid": corpus.valid, "vocabulary": np.asarray(vocabulary)}
            write_npz(path, **arrays, sha256=arrays_digest(arrays))
        except (OSError, InvalidPathError):
            pass  # caching is an optimisation: an unwritable cache folder only costs the next load
    return corpus


def batchify(ids: np.ndarray, columns: int) -> np.ndarray:
    """The token stream cut into `columns` parallel streams, `(length, columns)` (the tutorial's
    `batchify`: the tail that does not fill a row is dropped)."""
    check_integer("columns", columns, least=1)
    rows = len(ids) // columns
    if rows < 2:
        raise OutOfRangeError(f"a stream of {len(ids)} tokens is too short for {columns} columns")
    return np.asarray(ids[: rows * columns]).reshape(columns, rows).T
