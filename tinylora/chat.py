"""Chatting with a language model: stream a reply token by token, keep the conversation, run a REPL.

``ChatSession`` holds the history (a list of {"role", "content"} messages) and writes each
prompt with the tokenizer's ChatML template; ``reply(text)`` streams the answer to ``out`` as it
is produced and stops at the end-of-turn token. ``run_repl`` is the loop behind ``tinylora chat``:
``/reset`` forgets the history, ``/quit`` (or Ctrl-D, or Ctrl-C at the prompt) leaves, and
Ctrl-C during a reply stops that reply only.

>>> import io
>>> from tinylora.models import Llama, LlamaConfig
>>> class Letters:  # a tokenizer: one id per character
...     eos_token_id = None
...     def encode(self, text): return np.array([ord(c) % 128 for c in text])
...     def decode(self, ids): return "".join(chr(65 + int(i) % 26) for i in ids)
...     def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
...         return "".join(m["content"] for m in messages)
>>> session = ChatSession(Llama(LlamaConfig.preset("tiny"), seed=0), Letters(), max_new_tokens=5)
>>> text = session.reply("hi", out=io.StringIO())
>>> len(text), [m["role"] for m in session.history]
(5, ['user', 'assistant'])
"""
from __future__ import annotations

import sys

import numpy as np

from ._validate import check_int, check_real
from .backend import asnumpy
from .models.generation import sample_next
from .tensor import no_grad

__all__ = ["ChatSession", "IncrementalDecoder", "stream_tokens", "stop_token_ids", "run_repl",
           "END_OF_TURN"]

#: ChatML's end of a turn; SmolLM2 emits it (not its EOS) after an answer.
END_OF_TURN = "<|im_end|>"

HELP = "/reset forgets the conversation, /quit leaves (or Ctrl-D); Ctrl-C stops a reply"


def stop_token_ids(tokenizer) -> set[int]:
    """The ids that end a reply: the tokenizer's EOS and ChatML's ``<|im_end|>`` when it has them."""
    stops = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        stops.add(int(tokenizer.eos_token_id))
    token_to_id = getattr(tokenizer, "token_to_id", None)
    end = token_to_id(END_OF_TURN) if token_to_id else None
    if end is not None:
        stops.add(int(end))
    return stops


def stream_tokens(model, ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = None, stop_ids=()):
    """Yield up to ``max_new_tokens`` new token ids (ints) of one prompt ``ids`` (T,), one at a time.

    The same loop as ``models.generation.generate`` for one row: a prefill through a fresh KV
    cache, then one position per token, sampled by ``sample_next``. A token in ``stop_ids`` ends
    the stream and is not yielded. Closing the generator early (``break``, Ctrl-C) restores the
    model's train/eval mode.

    >>> from tinylora.models import GPT, GPTConfig
    >>> model = GPT(GPTConfig.preset("nano"), seed=0)
    >>> len(list(stream_tokens(model, np.array([1, 2, 3]), 4)))
    4
    """
    check_int("max_new_tokens", max_new_tokens, low=0, where="stream_tokens")
    xp = next(iter(model.parameters())).xp
    ids = xp.asarray(ids).reshape(1, -1)                                    # (1, T)
    if ids.shape[1] + max_new_tokens > model.context_length:
        raise ValueError(f"the prompt ({ids.shape[1]} tokens) plus max_new_tokens ({max_new_tokens}) "
                         f"is longer than the model's context of {model.context_length} positions")
    if max_new_tokens == 0:
        return
    rng, stops = xp.random.default_rng(seed), {int(i) for i in stop_ids}
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(1, ids.shape[1] + max_new_tokens)
        with no_grad():
            logits, _ = model(ids, cache=cache)                             # (1, T, V): prefill
        for step in range(max_new_tokens):
            token = sample_next(logits.data[:, -1, :], temperature, top_k, top_p, rng=rng)  # (1, 1)
            if int(token[0, 0]) in stops:
                return
            yield int(token[0, 0])
            if step < max_new_tokens - 1:
                with no_grad():
                    logits, _ = model(token.astype(ids.dtype), cache=cache)  # (1, 1, V)
    finally:
        model.train(was_training)


class IncrementalDecoder:
    """Text of a growing list of token ids, handed out piece by piece.

    A byte-level token can end in the middle of a UTF-8 character (an emoji is often 2-4 tokens);
    decoding it alone gives U+FFFD. So each ``push`` decodes the ids since the last finished line and
    returns only the new text that is complete, holding back a trailing U+FFFD until the next token
    completes it; ``flush`` returns whatever is left. (Decoding a window, not every id so far, keeps
    each step short; it restarts after a newline, as transformers' TextStreamer does.)

    >>> class Bytes:
    ...     def decode(self, ids): return bytes(ids.tolist()).decode("utf-8", errors="replace")
    >>> decoder = IncrementalDecoder(Bytes())
    >>> [decoder.push(b) for b in "é!".encode()] + [decoder.flush()]
    ['', 'é', '!', '']
    """

    def __init__(self, tokenizer):
        self.tokenizer, self.text = tokenizer, ""   # text: everything handed out
        self.window, self.shown = [], ""            # ids since the last newline, and their text handed out

    def push(self, token_id: int) -> str:
        self.window.append(int(token_id))
        stable = self.tokenizer.decode(np.array(self.window, dtype=np.int64))
        held = stable != stable.rstrip("\ufffd")
        stable = stable.rstrip("\ufffd")
        piece = stable[len(self.shown):] if stable.startswith(self.shown) else ""
        self.shown += piece
        self.text += piece
        if not held and self.shown.endswith("\n"):
            self.window, self.shown = [], ""
        return piece

    def flush(self) -> str:
        full = self.tokenizer.decode(np.array(self.window, dtype=np.int64)) if self.window else ""
        piece = full[len(self.shown):] if full.startswith(self.shown) else ""
        self.text += piece
        self.window, self.shown = [], ""
        return piece


class ChatSession:
    """A conversation with a model: the history, the sampling settings, and ``reply``.

    ``system`` replaces the template's default system prompt; ``temperature=0`` is greedy.
    When the conversation outgrows the model's context, the oldest exchanges are dropped from the
    prompt (they stay in ``history``).
    """

    def __init__(self, model, tokenizer, system: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None):
        if not hasattr(tokenizer, "apply_chat_template"):
            raise TypeError(f"chat needs a tokenizer with apply_chat_template (a chat model such as "
                            f"smollm2-135m-instruct); {type(tokenizer).__name__} has none")
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=1, where="ChatSession")
        self.temperature = check_real("temperature", temperature, low=0.0, where="ChatSession")
        if top_k is not None:
            check_int("top_k", top_k, low=1, where="ChatSession")
        if top_p is not None:
            check_real("top_p", top_p, low=0.0, high=1.0, low_inclusive=False, where="ChatSession")
        self.top_k, self.top_p = top_k, top_p
        self.rng = np.random.default_rng(seed)
        self.stop_ids = stop_token_ids(tokenizer)
        self.history: list[dict] = []

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history = []

    def messages(self, history=None) -> list[dict]:
        """The system message (when one was given) followed by ``history`` (default: all of it)."""
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        return system + list(self.history if history is None else history)

    def prompt_ids(self, history) -> np.ndarray:
        """Token ids (T,) of the conversation ``history`` with the assistant's turn opened."""
        text = self.tokenizer.apply_chat_template(self.messages(history), add_generation_prompt=True)
        return np.asarray(asnumpy(self.tokenizer.encode(text)), dtype=np.int64)

    def fitted_prompt(self, history) -> tuple[np.ndarray, int]:
        """(prompt ids, new-token budget): the oldest exchanges dropped until the prompt fits the context."""
        context = self.model.context_length
        while True:
            ids = self.prompt_ids(history)
            room = context - len(ids)
            if room >= min(self.max_new_tokens, 16) or len(history) <= 1:
                break
            history = history[2:] if len(history) > 2 else history[1:]
        if room < 1:
            raise ValueError(f"the message is {len(ids)} tokens with the chat template, longer than the "
                             f"model's context of {context} positions")
        return ids, min(self.max_new_tokens, room)

    def reply(self, text: str, out=None) -> str:
        """Answer ``text``: stream the reply to ``out`` (default stdout) and add both turns to the history.

        Ctrl-C (KeyboardInterrupt) while the reply streams stops it; the part shown so far is kept.
        """
        out = sys.stdout if out is None else out
        if not isinstance(text, str):
            raise TypeError(f"reply expects a str, got {type(text).__name__}")
        history = self.history + [{"role": "user", "content": text}]
        ids, budget = self.fitted_prompt(history)
        decoder = IncrementalDecoder(self.tokenizer)
        stream = stream_tokens(self.model, ids, budget, self.temperature, self.top_k, self.top_p,
                               seed=int(self.rng.integers(2 ** 31)), stop_ids=self.stop_ids)
        try:
            for token in stream:
                _write(out, decoder.push(token))
            _write(out, decoder.flush() + "\n")
        except KeyboardInterrupt:
            stream.close()
            _write(out, decoder.flush() + "\n[reply stopped]\n")
        self.history = history + [{"role": "assistant", "content": decoder.text}]
        return decoder.text


def _write(out, text: str) -> None:
    if text:
        out.write(text)
        out.flush()


def run_repl(session: ChatSession, read=None, out=None, banner: str | None = None) -> int:
    """The interactive loop: read a line with ``read(prompt)`` (default ``input``), answer it; returns
    the exit code, 0.

    ``/reset`` forgets the history, ``/quit`` (or ``/exit``) leaves, ``/help`` lists the commands.
    End of input (Ctrl-D) and Ctrl-C at the prompt leave with one line.
    """
    out, read = sys.stdout if out is None else out, input if read is None else read
    _write(out, (banner + "\n" if banner else "") + f"({HELP})\n")
    while True:
        try:
            line = read(">>> ")
        except (EOFError, KeyboardInterrupt):
            _write(out, "\nbye\n")
            return 0
        command = line.strip()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            _write(out, "bye\n")
            return 0
        if command == "/reset":
            session.reset()
            _write(out, "(conversation forgotten)\n")
        elif command in ("/help", "/?"):
            _write(out, f"({HELP})\n")
        elif command.startswith("/") and " " not in command:
            _write(out, f"unknown command {command}; {HELP}\n")
        else:
            try:
                session.reply(line, out)
            except ValueError as err:  # a message too long for the context: say so, keep chatting
                _write(out, f"error: {err}\n")
