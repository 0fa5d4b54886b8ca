"""The recipe corpora: ``recipes`` (target) as cards, ``cookbook`` (base) as a cookbook's pages.

A recipe has a title, servings and time, an ingredient list with quantities in digits, and
steps. The dish's style (baked, simmered, fried, fresh) decides its ingredients and steps.
``draw`` makes every random choice of one recipe; a layout only sets it out, so one seed gives
the same dishes in both corpora, card for card. The word lists are in ``recipe_words``.

>>> import random
>>> print(recipe(random.Random(0), layout="card").split("\\n")[0])
Title: Country Chicken Soup
>>> print(recipe(random.Random(0), layout="cookbook").split("\\n")[0])
Country Chicken Soup
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from .._validate import check_choice
from . import recipe_words as words
from .grammar import pick_each

LAYOUTS = ("card", "cookbook")


@dataclass(frozen=True)
class Dish:
    """One recipe's content before it is laid out; ``slots`` fill the {braces} in its lines."""
    title: str
    serves: int
    minutes: int
    ingredients: list[str]
    steps: list[str]
    tip: str
    slots: dict[str, str]


def draw(r: random.Random) -> Dish:
    """Every random choice of one recipe, always in the same order (the corpora depend on it)."""
    style = words.STYLES[r.choice(sorted(words.STYLES))]
    main, dish = r.choice(style["mains"]), r.choice(style["dishes"])
    extra_line, extra_amounts, extra_ref = r.choice(words.EXTRAS)
    minutes = r.choice(style["minutes"])
    slots = dict(main=main, extra=extra_ref, temp=r.choice(style["temps"]),
                 tin=r.choice(style["tins"]), m=minutes, m2=r.choice(["2", "3", "5", "8", "10"]))
    ingredients = [f"{r.choice(words.MAIN_AMOUNTS)} {main}"]
    ingredients += [text.format(n=r.choice(amounts)) for text, amounts in style["base"]]
    ingredients.insert(r.randrange(1, len(ingredients)), extra_line.format(n=r.choice(extra_amounts)))
    steps = pick_each(r, style["beats"])
    total_minutes = int(minutes) + r.choice([5, 10, 15, 20])
    title = f"{r.choice(words.FLAVOURS)} {main.title()} {dish}"
    serves, tip = r.choice([2, 4, 4, 6, 8]), r.choice(words.TIPS)
    return Dish(title, serves, total_minutes, ingredients, steps, tip, slots)


def _card_lines(d: Dish) -> list[str]:
    return [f"Title: {d.title}", f"Serves: {d.serves}", f"Time: {d.minutes} minutes",
            "Ingredients:", *(f"- {item}" for item in d.ingredients),
            "Steps:", *(f"{i}. {step}" for i, step in enumerate(d.steps, start=1)), d.tip]


def _cookbook_lines(d: Dish) -> list[str]:
    return [d.title, f"For {d.serves} people", f"Ready in {d.minutes} minutes",
            "You will need:", *(f"* {item}" for item in d.ingredients),
            "Method:", *(f"Step {i}: {step}" for i, step in enumerate(d.steps, start=1)),
            d.tip.replace("Tip: ", "Hint: ")]


def recipe(r: random.Random, layout: str = "card") -> str:
    """One recipe followed by a blank line, in the ``"card"`` or the ``"cookbook"`` layout."""
    check_choice("layout", layout, LAYOUTS, where="recipe")
    d = draw(r)
    lines = _card_lines(d) if layout == "card" else _cookbook_lines(d)
    return "\n".join(line for line in lines if line).format(**d.slots) + "\n\n"


def card_units(r: random.Random) -> Iterator[str]:
    """The ``recipes`` corpus as an endless stream of recipe cards drawn with ``r``."""
    while True:
        yield recipe(r)


def cookbook_units(r: random.Random) -> Iterator[str]:
    """The ``cookbook`` corpus: the same recipes as ``card_units`` in the cookbook layout."""
    while True:
        yield recipe(r, layout="cookbook")
