"""Tokenizers: text (str) to token ids (int64 arrays) and back.

- ``char.py``: ``CharTokenizer``, one token per character of ``VOCAB`` (the tinylora corpora).
- ``bpe.py``: ``BPETokenizer``, byte-level BPE as real LLMs use it (GPT-2, SmolLM2, ...).

>>> tok = CharTokenizer()
>>> tok.decode(tok.encode("hi"))
'hi'
"""
from .bpe import GGUF_PRE_SPLITS, GPT2_SPLIT, LLAMA3_SPLIT, QWEN2_SPLIT, BPETokenizer, bytes_to_unicode
from .char import VOCAB, CharTokenizer, unigram_distribution

__all__ = ["VOCAB", "CharTokenizer", "unigram_distribution", "BPETokenizer", "bytes_to_unicode", "GPT2_SPLIT",
           "LLAMA3_SPLIT", "QWEN2_SPLIT", "GGUF_PRE_SPLITS"]
