"""The ``fables`` corpus (base): short animal fables in plain English prose, each ending with a moral.

A fable is: a title, an opening that sets the scene, one of several plots (a race, a trick,
a kindness repaid, ...) told in beats, and a moral that fits the plot. Every beat has a few
alternative sentences; slots in {braces} are filled with characters, places and objects.
The word lists are in ``fable_words``; this module is only the grammar.

>>> import random
>>> print(fable(random.Random(0)).split("\\n")[0])
Birch and the Goat
"""
from __future__ import annotations

import random
from typing import Iterator

from . import fable_words as words
from .grammar import article, pick_each


def _character(r: random.Random, prefix: str, kinds, adjectives, taken: set) -> dict[str, str]:
    """Slots for one character: name, kind, adjective, pronouns, e.g. {"h_name": "Rowan", ...}."""
    kind = r.choice([k for k in kinds if k not in taken])
    name = r.choice([n for n in words.NAMES if n not in taken])
    taken.update((kind, name))
    adj = r.choice(adjectives)
    he, his, him = r.choice([("he", "his", "him"), ("she", "her", "her")])
    p, cap = prefix, prefix.upper()
    return {
        f"{p}_name": name, f"{p}_Name": name, f"{p}_kind": kind, f"{p}_adj": adj,
        f"{p}_he": he, f"{p}_He": he.capitalize(), f"{p}_his": his, f"{p}_His": his.capitalize(),
        f"{p}_him": him, f"{p}_a": f"{article(adj)} {adj} {kind}",
        f"{p}_A": f"{article(adj).title()} {adj} {kind}",
        f"{cap}_kind": kind.title(), f"{cap}_adj": adj.title(),
    }


def fable(r: random.Random) -> str:
    """One fable: a title, one paragraph of story, a moral, and a blank line."""
    plot = words.PLOTS[r.choice(sorted(words.PLOTS))]
    taken: set = set()
    slots = _character(r, "h", plot["hero_kinds"], plot["hero_adj"], taken)
    slots |= _character(r, "o", plot["other_kinds"], plot["other_adj"], taken)
    slots |= _setting(r)
    sentences = [r.choice(words.OPENINGS), r.choice(words.DETAILS), r.choice(words.SCENERY),
                 *pick_each(r, plot["beats"]), r.choice(words.CLOSINGS)]
    story = " ".join(s for s in sentences if s).format(**slots)
    story = _introduce(story, slots["o_name"], slots["o_kind"])
    other_appears = slots["o_name"] in story or slots["o_kind"] in story.replace(slots["h_kind"], "")
    title = r.choice(words.TITLES_TWO if other_appears else words.TITLES_ONE).format(**slots)
    return f"{title}\n{story}\nMoral: {r.choice(plot['morals'])}\n\n"


def _introduce(story: str, name: str, kind: str) -> str:
    """Make the first mention of ``name`` say who it is: "Hazel" -> "Hazel the snail"."""
    i = story.find(name)
    if i < 0 or story.startswith(f"{name} the {kind}", i):
        return story
    return f"{story[:i]}{name} the {kind}{story[i + len(name):]}"


def _setting(r: random.Random) -> dict[str, str]:
    """Slots for where and when, and the objects a plot may need."""
    preposition, place = r.choice(words.PLACES)
    time, danger = r.choice(words.TIMES), r.choice(words.DANGERS)
    return dict(place=place, in_place=f"{preposition} {place}", In_place=f"{preposition.title()} {place}",
                time=time, Time=time[0].upper() + time[1:],
                danger=danger, Danger=danger[0].upper() + danger[1:],
                food=r.choice(words.FOODS), goal=r.choice(words.GOALS), trap=r.choice(words.TRAPS),
                treasure=r.choice(words.TREASURES), plan=r.choice(words.PLANS),
                count=str(r.randint(2, 99)), year=str(r.randint(1200, 1899)))


def units(r: random.Random) -> Iterator[str]:
    """The corpus as an endless stream of fables drawn with ``r``."""
    while True:
        yield fable(r)
