"""The character tokenizer (tinylora.tokenizers): vocabulary, encode/decode, save/load (host NumPy only)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tinylora.corpora import CORPORA, load_corpus
from tinylora.tokenizers import VOCAB, CharTokenizer

NAMES = sorted(CORPORA)
N = 20_000  # characters per corpus in these tests


def test_vocab_is_newline_plus_printable_ascii():
    assert len(VOCAB) == 96 and VOCAB[0] == "\n" and VOCAB[1:] == "".join(map(chr, range(32, 127)))
    assert CharTokenizer().vocab_size == 96


@pytest.mark.parametrize("name", NAMES)
def test_encode_then_decode_gives_back_every_corpus(name):
    text = load_corpus(name, n_chars=N)
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (N,)
    assert tok.decode(ids) == text


def test_decode_accepts_a_list_and_an_array():
    tok = CharTokenizer()
    assert tok.decode([41, 74]) == tok.decode(np.array([41, 74])) == "Hi"


def test_encode_names_the_unknown_characters():
    with pytest.raises(ValueError, match=r"'é'.*printable ASCII.*newline"):
        CharTokenizer().encode("café")


def test_decode_rejects_ids_out_of_range():
    with pytest.raises(ValueError, match=r"out of range: \[96, -1\]"):
        CharTokenizer().decode([3, 96, -1])


def test_save_then_load_gives_the_same_tokenizer(tmp_path):
    tok = CharTokenizer("\nabc")
    tok.save(tmp_path / "tok.json")
    assert CharTokenizer.load(tmp_path / "tok.json") == tok


def test_save_leaves_no_temp_file_behind(tmp_path):
    CharTokenizer().save(tmp_path / "tok.json")
    CharTokenizer().save(tmp_path / "tok.json")  # overwriting is atomic too
    assert os.listdir(tmp_path) == ["tok.json"]


def test_load_of_a_truncated_file_raises_valueerror_naming_the_path(tmp_path):
    path = tmp_path / "tok.json"
    CharTokenizer().save(path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"tok\.json.*corrupt or truncated"):
        CharTokenizer.load(path)


def test_load_of_a_json_file_that_is_not_a_tokenizer_raises_valueerror(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"other\.json.*not a tinylora tokenizer"):
        CharTokenizer.load(path)



def test_the_saved_file_is_the_documented_json(tmp_path):
    """The file layout is a format other tools may read: changing it needs a new version number."""
    CharTokenizer("\nab").save(tmp_path / "tok.json")
    assert json.loads((tmp_path / "tok.json").read_text()) == {
        "format": "tinylora-char-tokenizer", "version": 1, "chars": "\nab"}


def test_load_of_another_version_names_both_versions(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(json.dumps({"format": "tinylora-char-tokenizer", "version": 2, "chars": "ab"}))
    with pytest.raises(ValueError, match=r"version 2; this tinylora reads version 1"):
        CharTokenizer.load(path)


BAD_INPUTS = [  # (call, exception, message fragment)
    (lambda: CharTokenizer(5), TypeError, r"chars must be a non-empty string, got 5 \(int\)"),
    (lambda: CharTokenizer(""), ValueError, r"chars must be a non-empty string, got ''"),
    (lambda: CharTokenizer("abca"), ValueError, r"must not repeat a character; repeated: \['a'\]"),
    (lambda: CharTokenizer().encode(b"hi"), TypeError, "encode expects a str, got bytes"),
    (lambda: CharTokenizer().decode([[1, 2]]), ValueError, r"1-D sequence of ids, got shape \(1, 2\)"),
    (lambda: CharTokenizer().decode([1.5]), ValueError, "integer ids, got dtype float64"),
    (lambda: CharTokenizer().save(None), TypeError, "CharTokenizer.save: path must be a path"),
    (lambda: CharTokenizer.load(""), ValueError, "CharTokenizer.load: path must be a non-empty path"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS, ids=[m[:24] for _, _, m in BAD_INPUTS])
def test_bad_inputs_are_rejected_with_a_message_that_names_them(call, error, message):
    with pytest.raises(error, match=message):
        call()
