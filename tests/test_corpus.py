"""Corpora in the WikiText layout: tokens, vocabulary, cache, errors, and the real WikiText-2 files
(when `JOMASIM_WIKITEXT` names them, as `.ci/run` does)."""

import os
import sys
import types

import numpy as np
import pytest

from jomasim._errors import InvalidPathError, OutOfRangeError
from jomasim.corpus import CORPUS_VARIABLE, batchify, load_corpus, split_files, tokenize

TEXT = {"train": " = Title = \n\n The cat sat . The cat ran , the dog sat !\n odd <unk> word\n",
        "valid": " The bird sat .\n", "test": " A cat .\n"}


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JOMASIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _corpus(folder, naming):
    folder.mkdir()
    for split, text in TEXT.items():
        (folder / (f"wiki.{split}.tokens" if naming == "tokens" else f"{split}.txt")).write_text(text)
    return folder


def test_basic_english_rules():
    assert tokenize("Hello, World! It's (fine).") == ["hello", ",", "world", "!", "it", "'", "s", "(", "fine", ")", "."]
    assert tokenize(' He said "no" ; ok : <unk> @-@ ') == ["he", "said", "no", "ok", "<unk>", "@-@"]


@pytest.mark.parametrize("naming", ["tokens", "txt"])
def test_vocabulary_ids_and_cache(naming, tmp_path, cache):
    folder = _corpus(tmp_path / "corpus", naming)
    corpus = load_corpus(folder, min_count=2)
    assert corpus.vocabulary[0] == "<unk>"
    assert list(corpus.vocabulary[1:]) == ["the", "=", "cat", "sat"], "seen twice or more; by count, then alphabetically"
    words = [corpus.vocabulary[i] for i in corpus.valid]
    assert words == ["the", "<unk>", "sat", "<unk>"]
    assert len(corpus.train) == 18 and corpus.train.dtype == np.int32
    assert len(list(cache.glob("corpus-*.npz"))) == 1
    again = load_corpus(folder, min_count=2)
    np.testing.assert_array_equal(again.train, corpus.train)
    assert again.vocabulary == corpus.vocabulary
    swapped = load_corpus(folder, train_split="valid", valid_split="test")
    assert swapped.vocabulary == ("<unk>", ".", "bird", "sat", "the")


@pytest.mark.parametrize("damage", ["cut short", "ids edited beyond the vocabulary", "not a zip file"])
def test_a_damaged_cache_entry_is_rebuilt_not_fatal(damage, tmp_path, cache):
    folder = _corpus(tmp_path / "corpus", "txt")
    corpus = load_corpus(folder)
    (entry,) = cache.glob("corpus-*.npz")
    if damage == "cut short":
        entry.write_bytes(entry.read_bytes()[:60])
    elif damage == "not a zip file":
        entry.write_bytes(b"PK\x03\x04 garbage")
    else:
        arrays = dict(np.load(entry))
        arrays["train"] = arrays["train"] + 1000
        np.savez(entry, **arrays)
    again = load_corpus(folder)
    np.testing.assert_array_equal(again.train, corpus.train)
    assert again.vocabulary == corpus.vocabulary
    np.testing.assert_array_equal(load_corpus(folder).train, corpus.train)  # the rebuilt entry is read back


def test_missing_corpus_says_where_to_put_it(tmp_path, monkeypatch, cache):
    monkeypatch.delenv(CORPUS_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(InvalidPathError, match=CORPUS_VARIABLE):
        split_files(None)
    with pytest.raises(InvalidPathError, match="does not exist"):
        split_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidPathError, match="wiki.train.tokens"):
        split_files(tmp_path / "empty")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "valid.txt").write_text("a b\n")
    with pytest.raises(InvalidPathError, match="no train split"):
        load_corpus(partial)
    with pytest.raises(OutOfRangeError, match="train_split='dev'"):
        load_corpus(partial, train_split="dev")


def test_batchify_makes_parallel_columns():
    batches = batchify(np.arange(23), 4)
    assert batches.shape == (5, 4)
    np.testing.assert_array_equal(batches[:, 1], np.arange(5, 10))
    with pytest.raises(OutOfRangeError):
        batchify(np.arange(5), 4)


@pytest.mark.skipif(not os.environ.get(CORPUS_VARIABLE), reason=f"set {CORPUS_VARIABLE} to a WikiText folder")
def test_real_wikitext_valid_and_test(cache):
    corpus = load_corpus(None, train_split="valid", valid_split="test")
    assert 10_000 < len(corpus.vocabulary) < 30_000
    assert 150_000 < len(corpus.train) < 300_000 and 150_000 < len(corpus.valid) < 300_000
    assert corpus.train.max() < len(corpus.vocabulary) and "the" in corpus.vocabulary[:5]


def _fake_datasets(monkeypatch, load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_without_a_folder_the_datasets_library_is_asked_once(monkeypatch, cache):
    monkeypatch.delenv(CORPUS_VARIABLE, raising=False)
    calls = []

    def load_dataset(name, config):
        calls.append((name, config))
        return {split: {"text": [TEXT[key]]} for split, key in (("train", "train"), ("validation", "valid"), ("test", "test"))}

    _fake_datasets(monkeypatch, load_dataset)
    corpus = load_corpus(None, min_count=2)
    assert calls == [("wikitext", "wikitext-2-raw-v1")] and corpus.vocabulary[1] == "the"
    assert split_files(None)["test"].read_text().strip() == TEXT["test"].strip()
    assert len(calls) == 1, "the fetched corpus is kept in the cache"


def test_a_failing_hub_is_one_clear_error(monkeypatch, cache):
    monkeypatch.delenv(CORPUS_VARIABLE, raising=False)

    def load_dataset(name, config):
        raise ConnectionError("hub\nunreachable")

    _fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(InvalidPathError, match="could not fetch WikiText-2 \\(hub unreachable\\); pass a folder"):
        split_files(None)
