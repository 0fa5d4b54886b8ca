"""The character tokenizer: one token per character of ``VOCAB``.

``VOCAB`` is the character vocabulary every tinylora corpus is written in, so a model trained on
one corpus can be fine-tuned on another. A tokenizer saves itself as a small JSON file whose
``format`` names its kind.

>>> tok = CharTokenizer()
>>> tok.decode(tok.encode("17+25=42\\n"))
'17+25=42\\n'
"""
from __future__ import annotations

import json

import numpy as np

from .._validate import check_path
from ..backend import asnumpy
from ..io import atomic_writer

__all__ = ["VOCAB", "CharTokenizer", "unigram_distribution"]


#: The character vocabulary: newline followed by the printable ASCII characters 32 (space) .. 126 (``~``),
#: 96 characters.
VOCAB = "\n" + "".join(chr(code) for code in range(32, 127))

_CHAR_FORMAT = "tinylora-char-tokenizer"
_CHAR_VERSION = 1


def _read_json(path: str):
    """The JSON value in the file at ``path``; ValueError naming the path if it is corrupt or truncated."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is not a valid tokenizer file (corrupt or truncated): {err}") from None


class CharTokenizer:
    """One token per character. The id of a character is its position in ``chars``.

    >>> tok = CharTokenizer()
    >>> tok.vocab_size
    96
    >>> tok.encode("hi\\n").tolist()
    [73, 74, 0]
    >>> tok.decode([73, 74, 0])
    'hi\\n'
    """

    def __init__(self, chars: str = VOCAB):
        if not isinstance(chars, str):
            raise TypeError(f"chars must be a non-empty string, got {chars!r} ({type(chars).__name__})")
        if not chars:
            raise ValueError(f"chars must be a non-empty string, got {chars!r}")
        if len(set(chars)) != len(chars):
            repeated = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must not repeat a character; repeated: {repeated!r}")
        self.chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def encode(self, text: str) -> np.ndarray:
        """``text`` (str of length T) -> ids, an int64 array of shape (T,).

        >>> CharTokenizer().encode("ab").tolist()
        [66, 67]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        unknown = set(text) - self._stoi.keys()
        if unknown:
            shown = ", ".join(repr(c) for c in sorted(unknown)[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            described = ("printable ASCII (codes 32..126) plus newline" if self.chars == VOCAB
                         else repr(self.chars))
            raise ValueError(
                f"text contains {len(unknown)} character(s) outside the vocabulary: {shown}{more}. "
                f"The vocabulary is {described}."
            )
        return np.fromiter((self._stoi[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        """ids (list, NumPy or CuPy array of shape (T,)) -> a str of length T.

        >>> CharTokenizer().decode(np.array([41, 74]))
        'Hi'
        """
        ids = np.asarray(asnumpy(ids) if hasattr(ids, "shape") else ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(
                f"ids must lie in 0..{self.vocab_size - 1}; out of range: {bad[:5].tolist()}"
            )
        return "".join(self.chars[i] for i in ids.tolist())

    def save(self, path) -> None:
        """Write the vocabulary as JSON, atomically (``tinylora.io.atomic_writer``).

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "tok.json")
        >>> CharTokenizer().save(path)
        >>> CharTokenizer.load(path) == CharTokenizer()
        True
        """
        path = check_path("path", path, where="CharTokenizer.save")
        payload = {"format": _CHAR_FORMAT, "version": _CHAR_VERSION, "chars": self.chars}
        with atomic_writer(path) as f:
            f.write(json.dumps(payload).encode("utf-8"))

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        """Read a tokenizer written by ``save``. A corrupt or truncated file -> ValueError.

        (Example: see ``save``.)
        """
        path = check_path("path", path, where="CharTokenizer.load")
        payload = _read_json(path)
        if not (isinstance(payload, dict) and payload.get("format") == _CHAR_FORMAT
                and isinstance(payload.get("chars"), str)):
            raise ValueError(
                f"{path!r} is not a tinylora tokenizer file: expected a JSON object with "
                f"format={_CHAR_FORMAT!r} and a 'chars' string"
            )
        if payload.get("version") != _CHAR_VERSION:
            raise ValueError(
                f"{path!r} has tokenizer version {payload.get('version')!r}; "
                f"this tinylora reads version {_CHAR_VERSION}"
            )
        return cls(payload["chars"])


def unigram_distribution(text: str, chars: str = VOCAB) -> np.ndarray:
    """How often each character of ``chars`` occurs in ``text``: float64 of shape (len(chars),), summing to 1.

    Entry i is the share of token id i under ``CharTokenizer(chars)``. Comparing two of these
    shows how far apart two corpora are, e.g. by total variation:

    >>> from tinylora.corpora import load_corpus
    >>> p = unigram_distribution(load_corpus("fables", n_chars=5000))
    >>> q = unigram_distribution(load_corpus("arithmetic", n_chars=5000))
    >>> bool(0.5 * np.abs(p - q).sum() > 0.9)
    True
    """
    if not text:
        raise ValueError("unigram_distribution needs a non-empty text")
    counts = np.bincount(CharTokenizer(chars).encode(text), minlength=len(chars))
    return counts / counts.sum()
