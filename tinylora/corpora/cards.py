"""The ``cards`` task: a person described in words, answered in a fixed one-line JSON card.

A chat model asked "New contact: Vera (41), florist in Ghent." answers in prose by itself. In
the house style of this task the answer is always the same card, keys in the same order::

    {"name": "Vera", "age": 41, "job": "florist", "city": "Ghent"}

Everything the card says is in the prompt, so an exact answer can be checked on people the
model never saw in training (``split="test"`` draws its names from ``card_words.TEST_NAMES``).
``score_card`` tells an exact answer from one that only has the card's format.

>>> prompt, answer = make_card_examples(1, seed=0)[0]
>>> score_card(answer, answer)
{'format': True, 'exact': True}
>>> score_card("Sure! Here is the card for you.", answer)
{'format': False, 'exact': False}
"""
from __future__ import annotations

import json
import random

from .._validate import check_choice, check_int
from . import card_words as words

__all__ = ["CARD_KEYS", "card_answer", "make_card_examples", "score_card", "parse_card"]

CARD_KEYS = ("name", "age", "job", "city")


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def card_answer(name: str, age: int, job: str, city: str) -> str:
    """The card in the house style: one line of JSON, keys in ``CARD_KEYS`` order.

    >>> card_answer("Vera", 41, "florist", "Ghent")
    '{"name": "Vera", "age": 41, "job": "florist", "city": "Ghent"}'
    """
    return json.dumps({"name": name, "age": int(age), "job": job, "city": city})


def make_card_examples(n: int, seed: int = 0, split: str = "train") -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs drawn with ``random.Random(seed)``, from the names of ``split``.

    >>> make_card_examples(1, seed=3, split="test")[0][1]
    '{"name": "Jasper", "age": 56, "job": "surgeon", "city": "Graz"}'
    """
    n = check_int("n", n, low=1, where="make_card_examples")
    names = words.TRAIN_NAMES if check_choice("split", split, ("train", "test"),
                                              where="make_card_examples") == "train" else words.TEST_NAMES
    r = random.Random(seed)
    pairs = []
    for _ in range(n):
        name, age = r.choice(names), r.choice(words.AGES)
        job, city = r.choice(words.JOBS), r.choice(words.CITIES)
        prompt = r.choice(words.TEMPLATES).format(name=name, age=age, job=job, city=city, a_job=_article(job))
        pairs.append((prompt, card_answer(name, age, job, city)))
    return pairs


def parse_card(text: str) -> dict | None:
    """The card in ``text`` as a dict, or None unless ``text`` is exactly one JSON object with the
    keys of ``CARD_KEYS`` in that order, an int age and string fields."""
    try:
        card = json.loads(text.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(card, dict) or tuple(card) != CARD_KEYS:
        return None
    if not isinstance(card["age"], int) or not all(isinstance(card[k], str) for k in ("name", "job", "city")):
        return None
    return card


def score_card(reply: str, answer: str) -> dict:
    """``{"format": the reply is a card (``parse_card``), "exact": it is the expected card}``."""
    card = parse_card(reply)
    return {"format": card is not None, "exact": card is not None and card == json.loads(answer)}
