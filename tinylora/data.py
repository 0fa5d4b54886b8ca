"""Text in, integer batches out: splitting token ids and drawing training batches.

The tokenizer lives in ``tinylora.tokenizers`` and the generated corpora in ``tinylora.corpora``;
their public names are re-exported here, so ``from tinylora.data import CharTokenizer, load_corpus``
keeps working.

>>> tok = CharTokenizer()
>>> ids = tok.encode(load_corpus("fables", n_chars=200))
>>> x, y = get_batch(ids, batch_size=4, block_size=8, rng=np.random.default_rng(0))
>>> x.shape, y.shape
((4, 8), (4, 8))
>>> bool((x[:, 1:] == y[:, :-1]).all())
True
"""
from __future__ import annotations

import numpy as np

from ._validate import check_int, check_real
from .corpora import (
    CORPORA,
    Corpus,
    arithmetic_answer,
    load_corpus,
    make_arithmetic_problems,
    score_arithmetic,
)
from .tokenizers import VOCAB, CharTokenizer, unigram_distribution

__all__ = ["train_val_split", "get_batch",
           # re-exported from tinylora.tokenizers and tinylora.corpora
           "VOCAB", "CharTokenizer", "unigram_distribution", "Corpus", "CORPORA", "load_corpus",
           "arithmetic_answer", "make_arithmetic_problems", "score_arithmetic"]


def _as_ids(ids, what: str = "ids") -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must be a 1-D integer array, got shape {ids.shape} and dtype {ids.dtype}")
    return ids


def train_val_split(ids, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split (N,) ids into (train, val): the first part and the last ``val_fraction`` of it.

    The split is contiguous (not shuffled), so no window of validation text leaks into training.

    >>> train, val = train_val_split(np.arange(10), val_fraction=0.2)
    >>> train.tolist(), val.tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    ids = _as_ids(ids)
    check_real("val_fraction", val_fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    n_val = int(round(len(ids) * val_fraction))
    if n_val == 0 or n_val == len(ids):
        raise ValueError(
            f"val_fraction={val_fraction!r} of {len(ids)} ids leaves an empty train or val part"
        )
    return ids[:-n_val], ids[-n_val:]


def get_batch(ids, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of the (N,) ids: x and y, int64 of shape (batch_size, block_size).

    ``y`` is ``x`` shifted by one: the model reads ``x[b, :t+1]`` and must predict ``y[b, t]``.
    The arrays are host NumPy; the training loop moves them to the model's device.

    >>> x, y = get_batch(np.arange(100), batch_size=2, block_size=4, rng=np.random.default_rng(0))
    >>> x.shape, (y - x).tolist()
    ((2, 4), [[1, 1, 1, 1], [1, 1, 1, 1]])
    """
    ids = _as_ids(ids)
    batch_size = check_int("batch_size", batch_size, low=1)
    block_size = check_int("block_size", block_size, low=1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), "
                        f"got {type(rng).__name__}")
    if len(ids) < block_size + 1:
        raise ValueError(
            f"the text has {len(ids)} ids but a window needs block_size + 1 = {block_size + 1}; "
            f"use a longer corpus or a smaller block_size"
        )
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)   # (B,)
    offsets = starts[:, None] + np.arange(block_size)                   # (B, T)
    x = ids[offsets].astype(np.int64)                                    # (B, T)
    y = ids[offsets + 1].astype(np.int64)                                # (B, T)
    return x, y
