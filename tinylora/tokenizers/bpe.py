"""Byte-level BPE, the tokenizer of GPT-2, SmolLM2, Llama 3 and Qwen 2, written out step by step.

A ``BPETokenizer`` is built from GGUF metadata (``from_gguf_fields``), a Hugging Face
``tokenizer.json`` (``from_tokenizer_json``) or GPT-2's ``vocab.json`` + ``merges.txt``
(``from_vocab_and_merges``); the class docstring has a worked example.
"""
from __future__ import annotations

import numpy as np

from .._validate import check_path, is_int
from ..backend import asnumpy
from .char import _read_json

__all__ = ["BPETokenizer", "bytes_to_unicode", "merge_pair", "GPT2_SPLIT", "LLAMA3_SPLIT", "QWEN2_SPLIT",
           "GGUF_PRE_SPLITS"]


# ---------------------------------------------------------------------------------------------------------
# Byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen 2): text -> UTF-8 bytes -> printable stand-in characters ->
# pre-tokens (a regex split) -> merges applied by rank within each pre-token -> vocabulary ids.
# ---------------------------------------------------------------------------------------------------------

#: GPT-2's pre-tokenizer: contractions, letter runs, digit runs, other runs, each with one optional leading
#: space, then whitespace. The ``(?!\S)`` leaves the last space of a run to start the next word.
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: Llama 3's: case-insensitive contractions, at most three digits per pre-token, newlines kept apart.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: Qwen 2's: like Llama 3's, but one digit per pre-token.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

#: ``tokenizer.ggml.pre`` -> the split regex. "smollm" gets GPT-2's regex because that is what transformers
#: builds from a SmolLM2 GGUF (llama.cpp also splits digits apart first; SmolLM2 has no merge that joins a
#: digit to anything, so both give the same ids).
GGUF_PRE_SPLITS = {"default": GPT2_SPLIT, "gpt2": GPT2_SPLIT, "smollm": GPT2_SPLIT,
                   "llama3": LLAMA3_SPLIT, "llama-v3": LLAMA3_SPLIT, "llama-bpe": LLAMA3_SPLIT,
                   "qwen2": QWEN2_SPLIT}

_GGUF_CONTROL = 3  # llama.cpp's token_type for control tokens such as <|im_start|>
_GGUF_USER_DEFINED = 4  # ... and for added tokens that are not special, such as <think>

_CHATML_TEMPLATE_MARK = "'<|im_start|>' + message['role']"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each of the 256 byte values to a printable character.

    Printable bytes stand for themselves; the others (control characters, space, ...) are moved to
    code points 256 and up, so every token of the vocabulary is a readable string: a space is ``Ġ``.

    >>> table = bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {char: byte for byte, char in _BYTE_TO_CHAR.items()}


def _byte_spelling(text: str) -> str:
    """``text`` as its UTF-8 bytes, each written as its stand-in character: ``" é"`` -> ``"ĠÃ©"``."""
    return "".join(_BYTE_TO_CHAR[byte] for byte in text.encode("utf-8"))


def _in_byte_alphabet(token: str) -> bool:
    return all(char in _CHAR_TO_BYTE for char in token)


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Split a byte-spelled ``word`` into characters, then merge the adjacent pair of lowest rank until
    no adjacent pair has a rank. Returns the final pieces.

    >>> _bpe("hello", {("l", "l"): 0, ("h", "e"): 1, ("he", "ll"): 2})
    ['hell', 'o']
    """
    parts = list(word)
    while len(parts) > 1:
        pairs = zip(parts, parts[1:])
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        parts = merge_pair(parts, best)
    return parts


def merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """``parts`` with every non-overlapping occurrence of ``pair``, left to right, joined into one piece."""
    merged, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


def _parse_merge(line: str, where: str) -> tuple[str, str]:
    """``"a b"`` -> ``("a", "b")``; anything else is a ValueError naming ``where`` (file and line)."""
    pieces = line.split(" ")
    if len(pieces) != 2 or not all(pieces):
        raise ValueError(f"{where}: a merge must be two tokens separated by one space, got {line!r}")
    return pieces[0], pieces[1]


def _split_keeping(text: str, pattern) -> list[str]:
    """``text`` cut at each match of ``pattern``, the matches kept as pieces of their own, empties dropped."""
    if pattern is None:
        return [text] if text else []
    return [piece for piece in pattern.split(text) if piece]


def _chatml_system_prompt(template: str | None) -> str | None:
    """The default system prompt a SmolLM-style ChatML Jinja template writes when none is given, or None."""
    import re

    if not template:
        return None
    if _CHATML_TEMPLATE_MARK not in template:
        raise ValueError(
            "apply_chat_template only writes ChatML (<|im_start|>role\\ncontent<|im_end|>); the stored "
            f"chat template is another kind: {template[:120]!r}..."
        )
    # The newline may be stored as a real newline or as Jinja's escape \n.
    found = re.search(r"'<\|im_start\|>system(?:\\n|\n)(.*?)<\|im_end\|>", template, flags=re.S)
    return found.group(1).replace("\\'", "'") if found else None


def _check_messages(messages) -> list[dict]:
    """A list of {"role": str, "content": str} dicts; TypeError/ValueError naming the first bad entry."""
    if not isinstance(messages, (list, tuple)):
        raise TypeError(f"messages must be a list of dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages must hold at least one message")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise TypeError(f"messages[{i}] must be a dict with 'role' and 'content', got {message!r}")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"messages[{i}] has no {key!r}: {message!r}")
            if not isinstance(message[key], str):
                raise TypeError(f"messages[{i}][{key!r}] must be a str, got {type(message[key]).__name__}")
    return list(messages)


class BPETokenizer:
    """Byte-level BPE, as in GPT-2 and SmolLM2.

    ``vocab`` maps each byte-spelled token (``"Ġthe"``) to its id; ``merges`` lists the pairs in the order
    they were learned (rank 0 first); ``special_tokens`` (dropped by ``skip_special_tokens``) and
    ``added_tokens`` (kept) are matched whole in the text before anything else;
    ``split`` is the pre-tokenizer regex. ``encode`` returns an int64 array, like ``CharTokenizer``.

    >>> vocab = {c: i for i, c in enumerate("abĠ")} | {"ab": 3, "Ġab": 4, "<|end|>": 5}
    >>> tok = BPETokenizer(vocab, [("a", "b"), ("Ġ", "ab")], special_tokens=["<|end|>"])
    >>> tok.encode("ab ab<|end|>").tolist()
    [3, 4, 5]
    >>> tok.decode([3, 4, 5], skip_special_tokens=True)
    'ab ab'
    """

    def __init__(self, vocab: dict[str, int], merges, *, special_tokens=(), added_tokens=(),
                 split: str = GPT2_SPLIT,
                 bos_token_id: int | None = None, eos_token_id: int | None = None,
                 unk_token_id: int | None = None, pad_token_id: int | None = None,
                 add_bos_token: bool = False, chat_template: str | None = None):
        import regex  # \p{L} and \p{N}, which the standard re module lacks

        self._token_to_id = dict(vocab)
        self._id_to_token = {i: token for token, i in self._token_to_id.items()}
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(merges):
            self.ranks.setdefault(tuple(pair), rank)  # a repeated merge keeps its first (best) rank
        self._check_merges()
        self.special_tokens = [token for token in special_tokens if token in self._token_to_id]
        self.added_tokens = [token for token in added_tokens if token in self._token_to_id]
        self._whole_set = set(self.special_tokens) | set(self.added_tokens)
        self._special_ids = {self._token_to_id[token] for token in self.special_tokens}
        self.split = split
        self._split_re = regex.compile(split)
        self._whole_re = self._whole_token_pattern(self._whole_set)
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id
        self.unk_token_id, self.pad_token_id = unk_token_id, pad_token_id
        self.add_bos_token = add_bos_token
        self.chat_template = chat_template
        self._cache: dict[str, tuple[int, ...]] = {}

    def _check_merges(self):
        """Every merge must join two tokens of the vocabulary into a third, as the tokenizers library asks."""
        for (left, right), rank in self.ranks.items():
            missing = [t for t in (left, right, left + right) if t not in self._token_to_id]
            if missing:
                raise ValueError(f"merge {rank} ({left!r} {right!r}) uses {missing[0]!r}, which is not in "
                                 "the vocabulary")

    @staticmethod
    def _whole_token_pattern(tokens):
        """One regex matching any of ``tokens``, longest first (so ``<a><b>`` never loses to ``<a>``)."""
        import regex

        if not tokens:
            return None
        alternatives = "|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True))
        return regex.compile(f"({alternatives})")

    # ----- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_gguf_fields(cls, fields: dict) -> "BPETokenizer":
        """Build from GGUF metadata (key -> plain Python value), as llama.cpp stores a byte-level BPE.

        Tokens marked CONTROL (token_type 3), such as ``<|im_start|>``, become special tokens, and those
        marked USER_DEFINED (4), such as ``<think>``, added tokens, as transformers does.
        """
        model = fields.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"BPETokenizer reads byte-level BPE (tokenizer.ggml.model 'gpt2'), "
                             f"got {model!r}")
        pre = fields.get("tokenizer.ggml.pre", "default")
        if pre not in GGUF_PRE_SPLITS:
            raise ValueError(f"unknown tokenizer.ggml.pre {pre!r}; known: {sorted(GGUF_PRE_SPLITS)}")
        tokens = list(fields["tokenizer.ggml.tokens"])
        types = list(fields.get("tokenizer.ggml.token_type") or [])
        # A token outside the byte alphabet (e.g. one with a real space) is respelled, as transformers does.
        vocab = {(t if _in_byte_alphabet(t) else _byte_spelling(t)): i for i, t in enumerate(tokens)}
        merges = [_parse_merge(m, f"tokenizer.ggml.merges[{i}]")
                  for i, m in enumerate(fields.get("tokenizer.ggml.merges", []))]
        special = [t for t, kind in zip(tokens, types) if kind == _GGUF_CONTROL and _in_byte_alphabet(t)]
        added = [t for t, kind in zip(tokens, types) if kind == _GGUF_USER_DEFINED and t in vocab]
        return cls(vocab, merges, special_tokens=special, added_tokens=added, split=GGUF_PRE_SPLITS[pre],
                   bos_token_id=fields.get("tokenizer.ggml.bos_token_id"),
                   eos_token_id=fields.get("tokenizer.ggml.eos_token_id"),
                   unk_token_id=fields.get("tokenizer.ggml.unknown_token_id"),
                   pad_token_id=fields.get("tokenizer.ggml.padding_token_id"),
                   add_bos_token=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=fields.get("tokenizer.chat_template"))

    @classmethod
    def from_tokenizer_json(cls, path) -> "BPETokenizer":
        """Build from a Hugging Face ``tokenizer.json`` whose model is byte-level BPE.

        Its ``added_tokens`` marked ``special`` are special tokens, the others added tokens (all matched
        whole; their lstrip/rstrip/single_word options are not read); the split regex comes from its
        ``pre_tokenizer`` (a ByteLevel with ``use_regex``, or a Split by a regex followed by a ByteLevel).
        """
        path = check_path("path", path, where="BPETokenizer.from_tokenizer_json")
        spec = _read_json(path)
        model = spec.get("model") if isinstance(spec, dict) else None
        if not isinstance(model, dict) or model.get("type") != "BPE":
            raise ValueError(f"{path!r}: expected a tokenizer.json with model.type 'BPE'")
        merges = [tuple(m) if isinstance(m, list) else _parse_merge(m, f"{path}: model.merges[{i}]")
                  for i, m in enumerate(model.get("merges", []))]
        added = spec.get("added_tokens") or []
        vocab = dict(model["vocab"]) | {t["content"]: t["id"] for t in added}
        special = [t["content"] for t in added if t.get("special")]
        plain = [t["content"] for t in added if not t.get("special")]
        split = _split_from_json(spec.get("pre_tokenizer"), path)
        return cls(vocab, merges, special_tokens=special, added_tokens=plain, split=split)

    @classmethod
    def from_vocab_and_merges(cls, vocab_json_path, merges_txt_path) -> "BPETokenizer":
        """Build from GPT-2's two files: ``vocab.json`` (token -> id) and ``merges.txt`` (one "a b" a line,
        after an optional ``#version`` line). ``<|endoftext|>``, when present, is special, and is both BOS
        and EOS.
        """
        vocab_json_path = check_path("vocab_json_path", vocab_json_path, where="BPETokenizer")
        merges_txt_path = check_path("merges_txt_path", merges_txt_path, where="BPETokenizer")
        vocab = _read_vocab_json(vocab_json_path)
        merges = _read_merges_txt(merges_txt_path)
        end = vocab.get("<|endoftext|>")
        return cls(vocab, merges, special_tokens=["<|endoftext|>"], bos_token_id=end, eos_token_id=end)

    # ----- the vocabulary ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def token_to_id(self, token: str) -> int | None:
        """The id of a byte-spelled token (``"Ġthe"``), or None, like ``tokenizers.Tokenizer.token_to_id``."""
        return self._token_to_id.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The byte-spelled token of an id, or None."""
        return self._id_to_token.get(int(token_id))

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.ranks)}, "
                f"special_tokens={len(self.special_tokens)})")

    # ----- encode -----------------------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> np.ndarray:
        """``text`` (str) -> ids, an int64 array of shape (T,).

        Special tokens written in the text are always matched whole; ``add_special_tokens`` only says
        whether to put BOS in front when the model asks for it (``add_bos_token``), as transformers does.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids = [self.bos_token_id] if add_special_tokens and self.add_bos_token else []
        for piece in _split_keeping(text, self._whole_re):
            if piece in self._whole_set:
                ids.append(self._token_to_id[piece])
            else:
                ids.extend(self._encode_ordinary(piece))
        return np.array(ids, dtype=np.int64)

    def _encode_ordinary(self, text: str) -> list[int]:
        """Ids of text holding no special or added token: pre-tokenize, then BPE each pre-token (cached)."""
        ids = []
        for word in self._split_re.findall(text):
            cached = self._cache.get(word)
            if cached is None:
                cached = self._cache[word] = self._word_ids(word)
            ids.extend(cached)
        return ids

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """Ids of one pre-token: its bytes spelled as characters, merged by rank, looked up.

        A byte with no token of its own (SmolLM2 has none for 0xF1, say) is dropped before merging, as the
        ``tokenizers`` library does for a BPE model without an unknown token -- which is how transformers
        builds one from a GGUF. So such text does not survive ``decode(encode(text))``.
        """
        known = "".join(char for char in _byte_spelling(word) if char in self._token_to_id)
        return tuple(self._token_to_id[piece] for piece in _bpe(known, self.ranks))

    # ----- decode -----------------------------------------------------------------------------------------

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """ids (list, NumPy or CuPy array of shape (T,)) -> str. Bytes that are not valid UTF-8 (a token
        cut mid-character) become U+FFFD, as in transformers.
        """
        ids = np.asarray(asnumpy(ids) if hasattr(ids, "shape") else ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}")
        unknown = [i for i in ids.tolist() if i not in self._id_to_token]
        if unknown:
            raise ValueError(f"ids {unknown[:5]} are not in the vocabulary (vocab_size {self.vocab_size}, "
                             f"ids 0..{self.vocab_size - 1})")
        text, pending = [], bytearray()
        for i in ids.tolist():
            token = self._id_to_token[i]
            if token in self._whole_set or not _in_byte_alphabet(token):
                text.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
                if not (skip_special_tokens and i in self._special_ids):
                    text.append(token)
            else:
                pending.extend(_CHAR_TO_BYTE[char] for char in token)
        text.append(pending.decode("utf-8", errors="replace"))
        return "".join(text)

    # ----- chat -------------------------------------------------------------------------------------------

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, tokenize: bool = False):
        """Write a conversation in ChatML, as SmolLM2's template does:
        ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, the template's default system prompt
        first when the first message is not a system one, and ``<|im_start|>assistant\\n`` at the end when
        ``add_generation_prompt``. Returns the text, or its ids (int64 array) when ``tokenize``.
        """
        messages = _check_messages(messages)
        parts = []
        default_system = _chatml_system_prompt(self.chat_template)
        if default_system is not None and messages[0]["role"] != "system":
            parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
        parts += [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        text = "".join(parts)
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _split_from_json(pre_tokenizer, path: str) -> str:
    """The split regex a tokenizer.json ``pre_tokenizer`` describes (ByteLevel, or Split + ByteLevel)."""
    is_sequence = isinstance(pre_tokenizer, dict) and pre_tokenizer.get("type") == "Sequence"
    steps = pre_tokenizer.get("pretokenizers", []) if is_sequence else [pre_tokenizer]
    kinds = [step.get("type") if isinstance(step, dict) else None for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True) and not steps[0].get("add_prefix_space"):
        return GPT2_SPLIT
    if kinds == ["Split", "ByteLevel"] and "Regex" in steps[0].get("pattern", {}) \
            and steps[0].get("behavior") == "Isolated" and not steps[1].get("use_regex", True):
        return steps[0]["pattern"]["Regex"]
    raise ValueError(f"{path!r}: BPETokenizer reads a ByteLevel pre-tokenizer (or Split by a regex, then "
                     f"ByteLevel without its regex); this file has {kinds}")


def _read_vocab_json(path: str) -> dict[str, int]:
    """GPT-2's vocab.json: a JSON object token -> distinct int id; ValueError naming the file otherwise."""
    vocab = _read_json(path)
    if not isinstance(vocab, dict):
        raise ValueError(f"{path!r}: a vocab.json must hold a JSON object token -> id")
    for token, i in vocab.items():
        if not is_int(i) or i < 0:
            raise ValueError(f"{path!r}: the id of {token!r} must be a non-negative int, got {i!r}")
    if len(set(vocab.values())) != len(vocab):
        raise ValueError(f"{path!r}: two tokens share an id")
    return vocab


def _read_merges_txt(path: str) -> list[tuple[str, str]]:
    """GPT-2's merges.txt: an optional ``#version`` line, then one ``a b`` a line; ValueError naming the
    file and line otherwise."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = []
    for number, line in enumerate(lines, start=1):
        if (number == 1 and line.startswith("#version")) or not line:
            continue
        merges.append(_parse_merge(line, f"{path}, line {number}"))
    return merges
