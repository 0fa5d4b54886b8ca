"""Splitting and batching (tinylora.data), and the names it re-exports (host NumPy only)."""
from __future__ import annotations

import numpy as np
import pytest

import tinylora.corpora
import tinylora.data
import tinylora.tokenizers
from tinylora.data import CharTokenizer, get_batch, load_corpus, train_val_split


def test_data_re_exports_the_tokenizer_and_corpora_names_it_had():
    """``from tinylora.data import X`` keeps working for every name it offered before the split."""
    for name in ["VOCAB", "CharTokenizer", "unigram_distribution"]:
        assert getattr(tinylora.data, name) is getattr(tinylora.tokenizers, name)
    for name in ["Corpus", "CORPORA", "load_corpus", "arithmetic_answer", "make_arithmetic_problems",
                 "score_arithmetic"]:
        assert getattr(tinylora.data, name) is getattr(tinylora.corpora, name)
    assert set(tinylora.data.__all__) >= {"VOCAB", "CharTokenizer", "load_corpus", "get_batch"}


def test_train_val_split_is_contiguous():
    train, val = train_val_split(np.arange(100), val_fraction=0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_train_val_split_rejects_a_fraction_outside_zero_one(fraction):
    with pytest.raises(ValueError, match=repr(fraction)):
        train_val_split(np.arange(100), val_fraction=fraction)


def test_train_val_split_rejects_a_fraction_that_is_not_a_number():
    with pytest.raises(TypeError, match="val_fraction must be a number, got True"):
        train_val_split(np.arange(100), val_fraction=True)


def test_train_val_split_rejects_a_split_with_an_empty_part():
    with pytest.raises(ValueError, match="empty"):
        train_val_split(np.arange(5), val_fraction=0.01)


def test_get_batch_returns_int64_windows_with_y_shifted_by_one():
    ids = CharTokenizer().encode(load_corpus("fables", n_chars=5000))
    x, y = get_batch(ids, batch_size=8, block_size=32, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all()


def test_get_batch_rows_are_contiguous_windows_of_the_text():
    x, _ = get_batch(np.arange(1000), batch_size=8, block_size=32, rng=np.random.default_rng(1))
    assert (np.diff(x, axis=1) == 1).all()


def test_get_batch_can_reach_the_last_token():
    ids = np.arange(5)
    rng = np.random.default_rng(0)
    last_targets = {int(get_batch(ids, 1, 4, rng)[1][0, -1]) for _ in range(20)}
    assert last_targets == {4}  # only one window fits, and it ends on the last id


def test_get_batch_is_reproducible_with_the_same_seed():
    ids = np.arange(1000)
    a = get_batch(ids, 4, 16, np.random.default_rng(5))
    b = get_batch(ids, 4, 16, np.random.default_rng(5))
    c = get_batch(ids, 4, 16, np.random.default_rng(6))
    assert all((u == v).all() for u, v in zip(a, b)) and not (a[0] == c[0]).all()


def test_get_batch_rejects_a_text_shorter_than_a_window():
    with pytest.raises(ValueError, match=r"has 8 ids.*block_size \+ 1 = 9"):
        get_batch(np.arange(8), batch_size=2, block_size=8, rng=np.random.default_rng(0))


@pytest.mark.parametrize("batch_size, block_size, bad", [(0, 4, "batch_size"), (2, -1, "block_size")])
def test_get_batch_rejects_non_positive_sizes(batch_size, block_size, bad):
    with pytest.raises(ValueError, match=rf"{bad} must be a positive int, got -?\d"):
        get_batch(np.arange(100), batch_size, block_size, np.random.default_rng(0))


@pytest.mark.parametrize("batch_size, block_size, bad", [(2.0, 4, "batch_size"), (2, True, "block_size")])
def test_get_batch_rejects_non_integer_sizes_with_a_type_error(batch_size, block_size, bad):
    with pytest.raises(TypeError, match=rf"{bad} must be an int, got"):
        get_batch(np.arange(100), batch_size, block_size, np.random.default_rng(0))


def test_get_batch_asks_for_a_numpy_generator():
    with pytest.raises(TypeError, match="default_rng"):
        get_batch(np.arange(100), 2, 4, rng=0)
