"""Grammar helpers that the corpus generators share.

>>> import random
>>> article("owl"), article("fox")
('an', 'a')
>>> pick_each(random.Random(0), [["Hello."], ["", ""], ["Bye.", "Farewell."]])
['Hello.', 'Bye.']
"""
from __future__ import annotations

import random
from typing import Sequence


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (good enough for the words used here)."""
    return "an" if word[0].lower() in "aeiou" else "a"


def pick_each(r: random.Random, beats: Sequence[Sequence[str]]) -> list[str]:
    """One alternative from each beat. An empty string means the beat is skipped this time."""
    return [s for s in (r.choice(alternatives) for alternatives in beats) if s]
