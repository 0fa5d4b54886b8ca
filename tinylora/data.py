"""Text in, integer batches out: the tokenizer, the corpora tinylora generates, and batching.

Every corpus here is *generated* from a seed by a small grammar, so nothing is downloaded
and the same seed always gives the same text. All corpora share one character vocabulary,
``VOCAB`` (newline plus printable ASCII), so a model trained on one can be fine-tuned on another.

* ``"fables"`` (base): short animal fables in plain English prose, each ending with a moral.
* ``"recipes"`` (target): recipe cards with a title, numbered steps and quantities in digits.
* ``"arithmetic"`` (target with an accuracy): lines such as ``17+25=42``.

>>> tok = CharTokenizer()
>>> ids = tok.encode(load_corpus("fables", n_chars=200))
>>> x, y = get_batch(ids, batch_size=4, block_size=8, rng=np.random.default_rng(0))
>>> x.shape, y.shape
((4, 8), (4, 8))
>>> bool((x[:, 1:] == y[:, :-1]).all())
True
"""
from __future__ import annotations

import functools
import json
import os
import random
import re
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .backend import asnumpy

# ---------------------------------------------------------------------------------------------
# The vocabulary and the tokenizer
# ---------------------------------------------------------------------------------------------

#: Newline followed by the printable ASCII characters 32 (space) .. 126 (``~``): 96 characters.
VOCAB = "\n" + "".join(chr(code) for code in range(32, 127))

_TOKENIZER_FORMAT = "tinylora-char-tokenizer"
_TOKENIZER_VERSION = 1


class CharTokenizer:
    """One token per character. The id of a character is its position in ``chars``.

    >>> tok = CharTokenizer()
    >>> tok.vocab_size
    96
    >>> tok.encode("hi\\n").tolist()
    [73, 74, 0]
    >>> tok.decode([73, 74, 0])
    'hi\\n'
    """

    def __init__(self, chars: str = VOCAB):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"chars must be a non-empty string, got {chars!r}")
        if len(set(chars)) != len(chars):
            repeated = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must not repeat a character; repeated: {repeated!r}")
        self.chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def encode(self, text: str) -> np.ndarray:
        """``text`` (str of length T) -> ids, an int64 array of shape (T,).

        >>> CharTokenizer().encode("ab").tolist()
        [66, 67]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        unknown = set(text) - self._stoi.keys()
        if unknown:
            shown = ", ".join(repr(c) for c in sorted(unknown)[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            described = ("printable ASCII (codes 32..126) plus newline" if self.chars == VOCAB
                         else repr(self.chars))
            raise ValueError(
                f"text contains {len(unknown)} character(s) outside the vocabulary: {shown}{more}. "
                f"The vocabulary is {described}."
            )
        return np.fromiter((self._stoi[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        """ids (list, NumPy or CuPy array of shape (T,)) -> a str of length T.

        >>> CharTokenizer().decode(np.array([41, 74]))
        'Hi'
        """
        ids = np.asarray(asnumpy(ids) if hasattr(ids, "shape") else ids)
        if ids.ndim != 1:
            raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(
                f"ids must lie in 0..{self.vocab_size - 1}; out of range: {bad[:5].tolist()}"
            )
        return "".join(self.chars[i] for i in ids.tolist())

    def save(self, path) -> None:
        """Write the vocabulary as JSON. The write is atomic: a half-written file never
        replaces a good one (we write a temp file in the same directory, then rename it).

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "tok.json")
        >>> CharTokenizer().save(path)
        >>> CharTokenizer.load(path) == CharTokenizer()
        True
        """
        path = os.fspath(path)
        payload = {"format": _TOKENIZER_FORMAT, "version": _TOKENIZER_VERSION, "chars": self.chars}
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_path, path)  # atomic on POSIX and Windows
        except BaseException:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
            raise

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        """Read a tokenizer written by ``save``. A corrupt or truncated file -> ValueError.

        (Example: see ``save``.)
        """
        path = os.fspath(path)
        with open(path, "rb") as f:
            raw = f.read()
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path!r} is not a valid tokenizer file (corrupt or truncated): {err}") from None
        if not (isinstance(payload, dict) and payload.get("format") == _TOKENIZER_FORMAT
                and isinstance(payload.get("chars"), str)):
            raise ValueError(
                f"{path!r} is not a tinylora tokenizer file: expected a JSON object with "
                f"format={_TOKENIZER_FORMAT!r} and a 'chars' string"
            )
        if payload.get("version") != _TOKENIZER_VERSION:
            raise ValueError(
                f"{path!r} has tokenizer version {payload.get('version')!r}; "
                f"this tinylora reads version {_TOKENIZER_VERSION}"
            )
        return cls(payload["chars"])


def unigram_distribution(text: str, chars: str = VOCAB) -> np.ndarray:
    """How often each vocabulary character occurs: a float64 array of shape (len(chars),) summing to 1.

    Comparing two of these shows how far apart two corpora are, e.g. by total variation:

    >>> p = unigram_distribution(load_corpus("fables", n_chars=5000))
    >>> q = unigram_distribution(load_corpus("arithmetic", n_chars=5000))
    >>> bool(0.5 * np.abs(p - q).sum() > 0.9)
    True
    """
    if not text:
        raise ValueError("unigram_distribution needs a non-empty text")
    counts = np.bincount(CharTokenizer(chars).encode(text), minlength=len(chars))
    return counts / counts.sum()


# ---------------------------------------------------------------------------------------------
# Grammar helpers shared by the corpora
# ---------------------------------------------------------------------------------------------

def _article(word: str) -> str:
    """'a' or 'an' for the word that follows (good enough for the words used here)."""
    return "an" if word[0].lower() in "aeiou" else "a"


def _pick_each(r: random.Random, beats: Sequence[Sequence[str]]) -> list[str]:
    """One alternative from each beat. An empty string means the beat is skipped this time."""
    return [s for s in (r.choice(alternatives) for alternatives in beats) if s]


# ---------------------------------------------------------------------------------------------
# Corpus 1 (base): fables
# ---------------------------------------------------------------------------------------------
# A fable is: a title, an opening that sets the scene, one of several plots (a race, a trick,
# a kindness repaid, ...) told in beats, and a moral that fits the plot. Every beat has a few
# alternative sentences; slots in {braces} are filled with characters, places and objects.

_ANIMALS = [
    "fox", "crow", "tortoise", "hare", "lion", "mouse", "ant", "grasshopper", "wolf", "lamb",
    "owl", "goose", "frog", "stork", "heron", "badger", "otter", "squirrel", "deer", "bear",
    "goat", "donkey", "rooster", "cat", "hedgehog", "beaver", "mole", "sparrow", "eagle", "snail",
    "bee", "magpie", "weasel", "crab", "raven", "ox", "beetle", "lark", "cricket", "jackdaw",
]
_NAMES = [
    "Bramble", "Pip", "Hazel", "Rowan", "Thistle", "Clover", "Moss", "Fern", "Juniper", "Wren",
    "Sorrel", "Tansy", "Burdock", "Nettle", "Acorn", "Pebble", "Ember", "Quill", "Dusk", "Marigold",
    "Tumble", "Old Grey", "Bracken", "Willow", "Cobble", "Flint", "Sage", "Puddle", "Birch", "Teasel",
]
_PLACES = [  # (preposition, place)
    ("in", "a quiet meadow"), ("at", "the edge of a dark forest"), ("on", "a muddy riverbank"),
    ("in", "a farmyard behind an old mill"), ("on", "a hill covered in heather"),
    ("in", "a marsh full of tall reeds"), ("in", "a green valley between two mountains"),
    ("in", "an orchard of crooked apple trees"), ("in", "a sunny clearing in the woods"),
    ("on", "the bank of a slow river"), ("on", "a rocky shore by the sea"), ("in", "a field of golden barley"),
    ("in", "a village garden with a stone wall"), ("on", "a wide plain where the grass grew high"),
    ("in", "a pine wood on the side of a hill"), ("on", "a little island in a lake"),
    ("near", "a well at the crossroads"), ("in", "a hollow under the roots of a beech tree"),
]
_TIMES = [
    "one morning", "one cold evening", "early one day", "at the end of a long week",
    "one rainy afternoon", "soon afterwards", "on the night of the full moon",
    "one windy day", "just before sunrise", "on a hot and dusty day", "one foggy morning",
    "a few days later", "late one night", "at noon the next day",
]
_SCENERY = [
    "The wind moved softly through the grass.", "Rain had fallen in the night, and every leaf was shining.",
    "The sun was warm, and the bees were busy among the flowers.", "Clouds rolled low over the hills.",
    "The river was high and loud after the storms.", "Birds were singing in every hedge.",
    "The air smelled of wild thyme and wet earth.", "It was a peaceful place, where little ever happened.",
    "Many creatures lived there, and they all knew one another.", "Paths wound between the stones and the ferns.",
    "It had not rained for {count} days.", "The nearest village was {count} miles away.",
    "There were {count} old oak trees beside the path.", "The year was {year}, and the winter had been long.",
    "", "", "", "",
]
_DETAILS = [  # a sentence about the hero, said with pronoun slots
    "{h_He} had bright eyes and a loud voice.", "{h_He} was rather fond of {h_his} own reflection.",
    "{h_He} talked more than {h_he} listened.", "{h_He} was never seen without a friend or two nearby.",
    "{h_His} neighbours said there was no {h_kind} quite like {h_him}.",
    "Every evening {h_he} sat by {h_his} door and watched the sky.",
    "{h_He} knew every path and every hiding place for miles around.",
    "Nobody could remember a day when {h_he} had been quiet.", "", "", "", "",
]
_FOODS = [
    "a piece of cheese", "a ripe plum", "a crust of bread", "a fat walnut", "a honeycomb",
    "a golden pear", "a handful of berries", "a sweet cake", "a shiny apple", "a bunch of grapes",
]
_GOALS = [
    "the old oak tree", "the top of the hill", "the far side of the meadow", "the stone bridge",
    "the edge of the pond", "the miller's gate", "the big grey rock",
]
_TRAPS = [
    "a hunter's net", "a deep pit", "a tangle of thorns", "a snare of rope", "a bramble patch",
]
_TREASURES = [
    "a juicy bone", "a round cheese", "a loaf of bread", "a string of sausages", "a basket of eggs",
]
_DANGERS = ["a hungry wolf", "a hunter with a bow", "a flood", "a forest fire", "a hungry lynx"]

_PLANS = ["hang a bell around the neck of the cat", "build a wall around the whole meadow",
          "chase the fox away for good", "steal the farmer's keys", "dig a tunnel under the river"]

_ANY = _ANIMALS

# Each plot: who the two characters can be, which adjectives suit them, the beats, the morals.
_PLOTS = {
    "race": dict(
        hero_kinds=["hare", "deer", "goat", "fox", "squirrel", "rooster", "cat", "weasel"],
        other_kinds=["tortoise", "snail", "mole", "hedgehog", "beetle", "crab", "frog"],
        hero_adj=["proud", "boastful", "quick", "vain", "careless"],
        other_adj=["patient", "humble", "steady", "quiet", "determined"],
        beats=[
            ["{h_Name} liked to laugh at the {o_kind} for being so slow.",
             "Every day {h_name} teased {o_name} the {o_kind}, who moved slowly but never stopped.",
             "{h_Name} never missed a chance to boast that {h_he} was the fastest creature alive."],
            ['"Let us race to {goal}," said {o_name} at last, "and we will see who arrives first."',
             '"I will race you to {goal}," said the {o_kind} calmly, "if you are not afraid."'],
            ["{h_Name} laughed so hard that {h_he} nearly fell over, but {h_he} agreed.",
             '"A race against you?" said the {h_kind}. "This will be the easiest day of my life."'],
            ["", "All the animals of the neighbourhood came to watch.",
             "The owl from the old elm agreed to be the judge."],
            ["{h_Name} dashed far ahead, then grew bored and lay down in the shade for a nap.",
             "Soon {h_name} was so far ahead that {h_he} stopped to eat clover and chat with friends.",
             "Halfway there, {h_name} sat down under a bush and fell fast asleep."],
            ["Meanwhile the {o_kind} kept going, one small step after another.",
             "The {o_kind} did not stop, not even once, though {o_his} legs were tired."],
            ["When {h_name} woke, the {o_kind} was already at {goal}, and everyone was cheering.",
             "By the time {h_name} remembered the race, {o_name} had crossed the line at {goal}."],
        ],
        morals=["Slow and steady wins the race.", "Pride runs fast but does not always finish.",
                "Do not laugh at those who keep going.", "A small step every day goes a long way."],
    ),
    "flattery": dict(
        hero_kinds=["fox", "weasel", "cat", "wolf", "badger", "magpie"],
        other_kinds=["crow", "raven", "jackdaw", "sparrow", "lark", "goose", "rooster"],
        hero_adj=["clever", "sly", "hungry", "cunning", "smooth-tongued"],
        other_adj=["vain", "proud", "foolish", "trusting", "silly"],
        beats=[
            ["{o_Name} the {o_kind} found {food} and flew up to a high branch to enjoy it.",
             "The {o_kind} had found {food}, and sat in a tree holding it tightly in {o_his} beak."],
            ["{h_Name} the {h_kind} saw this from below and wanted the food for {h_him}self.",
             "{h_A} passing by smelled the food and stopped at once."],
            ['"What beautiful feathers you have," said {h_name}. "Surely your voice is just as lovely."',
             '"Good day, friend," called the {h_kind}. "They say you sing more sweetly than any bird. Is it true?"',
             '"How fine you look today," said {h_name}. "If only I could hear you sing, my day would be perfect."'],
            ["The {o_kind} was so pleased that {o_he} opened {o_his} beak to sing.",
             "{o_Name} puffed out {o_his} chest and began to sing as loudly as {o_he} could."],
            ["Down fell the food, and the {h_kind} snapped it up before it touched the ground.",
             "At once {food} dropped, and {h_name} caught it and ran off laughing."],
            ["", '"Your voice is fine," the {h_kind} called back, "but your sense is poor."'],
        ],
        morals=["Beware of those who praise you only to take what you hold.",
                "Flattery is sweet to hear, but it often costs dearly.",
                "Do not trust a compliment from someone who wants something."],
    ),
    "kindness": dict(
        hero_kinds=["lion", "bear", "eagle", "wolf", "ox", "deer", "heron"],
        other_kinds=["mouse", "ant", "beetle", "frog", "sparrow", "snail", "bee", "mole", "cricket"],
        hero_adj=["mighty", "great", "strong", "fierce", "grand"],
        other_adj=["tiny", "little", "humble", "small", "timid"],
        beats=[
            ["{h_Name} the {h_kind} was resting when {o_name} the {o_kind} ran across {h_his} paw by mistake.",
             "One day {o_a} woke the {h_kind} by accident, and the {h_kind} caught it at once."],
            ['"Please let me go," begged the {o_kind}. "One day I may be able to help you."',
             '"Spare me," cried {o_name}. "I am too small to be a meal, but I will not forget your mercy."'],
            ["The {h_kind} laughed at the idea, but {h_he} let the {o_kind} go.",
             "{h_Name} smiled at such a bold promise from so small a creature, and set {o_name} free."],
            ["Not long after, the {h_kind} was caught in {trap} and could not get out.",
             "{Time}, {h_name} stepped into {trap} and was held fast, roaring for help."],
            ["The {o_kind} heard the noise, came running, and worked until the {h_kind} was free.",
             "{o_Name} found {h_him} and, bit by bit, cut through the trap until {h_he} could walk away."],
            ["", '"You thought I was too small to help," said the {o_kind}, "but now you see that I keep my word."'],
        ],
        morals=["No act of kindness is ever wasted.", "Even the smallest friend can be a great help.",
                "Mercy is often repaid when we least expect it."],
    ),
    "winter": dict(
        hero_kinds=["grasshopper", "cricket", "lark", "frog", "hare", "rooster"],
        other_kinds=["ant", "squirrel", "bee", "beaver", "mole", "badger", "hedgehog"],
        hero_adj=["carefree", "lazy", "cheerful", "idle", "merry"],
        other_adj=["busy", "careful", "hard-working", "thrifty", "sensible"],
        beats=[
            ["All summer long, {h_name} the {h_kind} sang and danced in the sun.",
             "While the days were warm, the {h_kind} did nothing but play and sleep in the grass."],
            ["Meanwhile {o_name} the {o_kind} worked from dawn to dusk, storing food for the cold months.",
             "The {o_kind} passed by every day, carrying seeds and nuts to {o_his} store."],
            ['"Why work so hard?" asked the {h_kind}. "There is plenty of food everywhere."',
             '"Come and sing with me," called {h_name}. "Winter is a long way off."'],
            ['"Winter always comes," said the {o_kind}, "and I mean to be ready."',
             '"I am getting ready for winter," said {o_name}, "and you should do the same."'],
            ["When the snow came, the {h_kind} had nothing to eat and nowhere warm to sleep.",
             "Then winter arrived, the fields were bare, and {h_name} was cold and hungry."],
            ["{h_He} knocked at the door of the {o_kind} and begged for a little food.",
             "Shivering, {h_name} went to the home of the {o_kind} to ask for help."],
            ["The {o_kind} shared a small meal, but reminded {h_him} of the summer.",
             '"You sang all summer," said the {o_kind}, "so now you may dance all winter."',
             "The {o_kind} let {h_him} in, and {h_name} promised to work hard the next year."],
        ],
        morals=["Work today for the needs of tomorrow.", "There is a time for play and a time for work.",
                "It is wise to prepare for hard days while the days are easy."],
    ),
    "greed": dict(
        hero_kinds=_ANY, other_kinds=_ANY,
        hero_adj=["greedy", "hungry", "selfish", "restless", "jealous"],
        other_adj=["wise", "old", "quiet", "kind", "thoughtful"],
        beats=[
            ["{h_Name} the {h_kind} found {treasure} and hurried home with it.",
             "The {h_kind} stole {treasure} from a farmer's table and ran off with it."],
            ["On the way, {h_he} crossed a bridge and saw another {h_kind} in the water with {treasure} even larger.",
             "Crossing the stream, {h_name} looked down and saw another {h_kind} below holding {treasure} twice as big."],
            ['"I will have that one too," thought the {h_kind}, and {h_he} snapped at the water.',
             "Wanting both, {h_name} opened {h_his} mouth to grab the other prize."],
            ["{h_His} own prize fell into the stream and was carried away.",
             "With a splash, the food dropped into the water, and the other {h_kind} vanished too."],
            ["", "{o_Name} the {o_kind}, who had seen it all, shook {o_his} head sadly.",
             '"That was only your own reflection," said the {o_adj} {o_kind}.'],
        ],
        morals=["Greed often loses what it already has.", "Be content with what you have.",
                "Those who want everything may end with nothing."],
    ),
    "false_alarm": dict(
        hero_kinds=["goose", "goat", "rooster", "lamb", "hare", "magpie", "jackdaw"],
        other_kinds=_ANY,
        hero_adj=["young", "mischievous", "bored", "playful", "restless"],
        other_adj=["kind", "patient", "old", "sensible", "helpful"],
        beats=[
            ["{h_Name} the {h_kind} was bored of watching over the flock.",
             "The {h_kind} had to keep watch at night, and {h_he} found it very dull."],
            ['To make some fun, {h_he} cried out, "Help! Help! {Danger} is coming!"',
             '"Run!" shouted {h_name} one evening. "{Danger} is here!"'],
            ["Everyone came running, but there was nothing there, and {h_name} laughed at them.",
             "{o_Name} the {o_kind} and all the others rushed to help, but found only a laughing {h_kind}."],
            ["{h_He} played the same trick again a few days later, and again everyone came.",
             "The next week {h_he} did it again, and the animals grumbled as they went home."],
            ["Then, {time}, {danger} really came.",
             "But {time}, {danger} truly appeared."],
            ["{h_Name} cried for help with all {h_his} might, but nobody believed {h_him}.",
             "This time, when the {h_kind} called, not one animal came."],
        ],
        morals=["Nobody believes a liar, even when the liar tells the truth.",
                "Trust is easy to lose and hard to win back.", "Do not cry for help in jest."],
    ),
    "pebbles": dict(
        hero_kinds=["crow", "raven", "jackdaw", "magpie", "sparrow", "lark"],
        other_kinds=_ANY,
        hero_adj=["thirsty", "tired", "clever", "patient", "thoughtful"],
        other_adj=["curious", "puzzled", "young", "doubtful", "surprised"],
        beats=[
            ["{Time}, {h_name} the {h_kind} was so thirsty that {h_he} could hardly fly.",
             "It had not rained for weeks, and the {h_kind} was desperate for a drink."],
            ["At last {h_he} found a tall jug with a little water at the very bottom.",
             "{h_He} came upon a pitcher, but the water in it was too low to reach."],
            ["{h_He} pushed and pulled, but the jug was too heavy to tip over.",
             "{h_He} tried to reach in with {h_his} beak, but it was no use."],
            ["Then {h_he} had an idea, and began dropping pebbles into the jug, one by one.",
             "So {h_he} picked up a small stone and dropped it in, and then another, and another."],
            ["", "{o_Name} the {o_kind} watched and asked what {h_he} was doing, but {h_he} just kept working."],
            ["Slowly the water rose, until at last the {h_kind} could drink all {h_he} wanted.",
             "With each pebble the water climbed higher, and soon {h_name} drank deeply."],
        ],
        morals=["Little by little does the trick.", "Where there is a will, there is a way.",
                "A clever mind can do what strength cannot."],
    ),
    "visit": dict(
        hero_kinds=["mouse", "sparrow", "frog", "mole", "hedgehog", "snail", "cricket"],
        other_kinds=["mouse", "cat", "magpie", "rooster", "goose", "squirrel", "weasel"],
        hero_adj=["simple", "modest", "shy", "contented", "plain"],
        other_adj=["fancy", "proud", "grand", "well-dressed", "boastful"],
        beats=[
            ["One day {o_name} the {o_kind} came from the town to visit {h_name}.",
             "{h_Name} had a cousin, {o_name}, who lived in a fine house in the town."],
            ["{h_Name} offered {o_him} the best {h_he} had: some seeds, a few roots and cold water.",
             "The {h_kind} served a plain supper of beans and bread, and {o_name} hardly touched it."],
            ['"How can you live like this?" said the {o_kind}. "Come with me and taste real food."',
             '"You deserve better," said {o_name}. "In the town we eat like kings every night."'],
            ["So the two of them set off, and by night they reached a great hall full of cakes and cheese.",
             "That evening they crept into a rich kitchen, where the table was covered with sweets."],
            ["They had only just begun to eat when the door flew open and two dogs ran in barking.",
             "Before {h_name} had taken a bite, a cook came in with a broom, and they ran for their lives.",
             "Suddenly a great cat leapt onto the table, and they barely escaped into a crack in the wall."],
            ['"Goodbye, cousin," said the {h_kind}. "I would rather eat beans in peace than cake in fear."',
             "The next morning {h_name} went home to {h_his} simple meals and slept soundly again."],
        ],
        morals=["A simple life in peace is better than riches in fear.",
                "Be thankful for what you have, even if it is plain.",
                "Safety is worth more than sweets."],
    ),
    "council": dict(
        hero_kinds=["mouse", "sparrow", "frog", "hare", "lamb", "goose", "rabbit"],
        other_kinds=["owl", "raven", "tortoise", "badger", "goat", "heron", "stork"],
        hero_adj=["eager", "bold", "young", "excited", "clever"],
        other_adj=["old", "wise", "grey", "silent", "thoughtful"],
        beats=[
            ["The animals {in_place} had been troubled for a long time, and they met to talk about it.",
             "{Time}, all the small creatures gathered under a hedge to decide what to do about their troubles."],
            ['"I know what we must do," said {h_name}. "We must {plan}!"',
             '{h_Name} jumped up and cried, "It is simple. We only need to {plan}."'],
            ["Everyone cheered, for it seemed a wonderful idea.",
             "The others clapped and stamped their feet, and {h_name} felt very proud."],
            ["Then {o_name} the {o_kind}, who had said nothing until then, stood up slowly.",
             "When the noise died down, {o_a} at the back of the crowd raised a paw."],
            ['"It is a fine plan," said the {o_kind}, "but tell me: who will do it?"',
             '"Very good," said {o_name}. "And which of you is brave enough to go first?"'],
            ["Nobody said a word, and one by one the animals went home.",
             "All at once, everyone found something interesting to look at on the ground."],
        ],
        morals=["It is one thing to say what should be done, and another to do it.",
                "A plan is only as good as the one who carries it out.",
                "Easy words make hard work."],
    ),
    "quarrel": dict(
        hero_kinds=["cat", "dog", "goat", "crow", "bear", "goose", "otter"],
        other_kinds=["cat", "dog", "goat", "crow", "bear", "goose", "otter"],
        hero_adj=["stubborn", "greedy", "angry", "jealous", "quarrelsome"],
        other_adj=["stubborn", "greedy", "angry", "jealous", "quarrelsome"],
        beats=[
            ["{h_Name} the {h_kind} and {o_name} the {o_kind} found {food} lying on the path at the same moment.",
             "{Time}, {h_name} the {h_kind} and {o_name} both saw {food} and ran for it together."],
            ['"It is mine, I saw it first!" said {h_name}. "No, it is mine!" said {o_name}.',
             "They pulled and argued, and neither would let the other have even a little."],
            ["A monkey passing by offered to divide it fairly between them.",
             "At last they asked a fox to judge the matter, for the fox was said to be very fair."],
            ["The judge broke it in two, looked at the pieces, and took a bite from the bigger one to make them even.",
             "The judge cut it in half, said one half was too big, and nibbled at it, then at the other, and so on."],
            ["By the time the judging was over, there was nothing left for either of them.",
             "Soon only crumbs remained, and the judge walked off licking its lips."],
        ],
        morals=["When two quarrel, a third often takes the prize.", "Share fairly, or you may both lose.",
                "A quarrel feeds no one."],
    ),
}

_OPENINGS = [
    "Once upon a time, {in_place}, there lived {h_a} named {h_name}.",
    "{In_place} there was {h_a} called {h_name}.",
    "{h_Name} the {h_kind} lived {in_place}, and everyone knew {h_him} as {h_a}.",
    "Long ago, {h_a} named {h_name} made {h_his} home {in_place}.",
    "Not far from {place} lived {h_a}, whose name was {h_name}.",
    "There was once {h_a} who lived {in_place}. {h_His} name was {h_name}.",
    "{In_place} lived {h_name}, {h_a}.",
]
_CLOSINGS = [
    "", "", "", "From that day on, {h_name} was a little wiser.",
    "And the creatures who live {in_place} still tell this story to their young.",
    "{h_Name} never forgot that day.", "After that, {h_name} was quieter than before.",
    "It was a lesson {h_name} would remember for a long time.",
]
_TITLES_TWO = ["The {H_adj} {H_kind} and the {O_adj} {O_kind}", "The {H_kind} and the {O_kind}",
               "{h_Name} and the {O_kind}"]
_TITLES_ONE = ["How the {H_kind} Learned a Lesson", "The {H_adj} {H_kind}", "{h_Name} the {H_kind}"]


def _character(r: random.Random, prefix: str, kinds, adjectives, taken: set) -> dict[str, str]:
    """Slots for one character: name, kind, adjective, pronouns, e.g. {"h_name": "Rowan", ...}."""
    kind = r.choice([k for k in kinds if k not in taken])
    name = r.choice([n for n in _NAMES if n not in taken])
    taken.update((kind, name))
    adj = r.choice(adjectives)
    he, his, him = r.choice([("he", "his", "him"), ("she", "her", "her")])
    p, cap = prefix, prefix.upper()
    return {
        f"{p}_name": name, f"{p}_Name": name, f"{p}_kind": kind, f"{p}_adj": adj,
        f"{p}_he": he, f"{p}_He": he.capitalize(), f"{p}_his": his, f"{p}_His": his.capitalize(),
        f"{p}_him": him, f"{p}_a": f"{_article(adj)} {adj} {kind}",
        f"{p}_A": f"{_article(adj).title()} {adj} {kind}",
        f"{cap}_kind": kind.title(), f"{cap}_adj": adj.title(),
    }


def _fable(r: random.Random) -> str:
    """One fable: a title, one paragraph of story, a moral, and a blank line."""
    plot = _PLOTS[r.choice(sorted(_PLOTS))]
    taken: set = set()
    slots = _character(r, "h", plot["hero_kinds"], plot["hero_adj"], taken)
    slots |= _character(r, "o", plot["other_kinds"], plot["other_adj"], taken)
    slots |= _setting(r)
    sentences = [r.choice(_OPENINGS), r.choice(_DETAILS), r.choice(_SCENERY),
                 *_pick_each(r, plot["beats"]), r.choice(_CLOSINGS)]
    story = " ".join(s for s in sentences if s).format(**slots)
    story = _introduce(story, slots["o_name"], slots["o_kind"])
    other_appears = slots["o_name"] in story or slots["o_kind"] in story.replace(slots["h_kind"], "")
    title = r.choice(_TITLES_TWO if other_appears else _TITLES_ONE).format(**slots)
    return f"{title}\n{story}\nMoral: {r.choice(plot['morals'])}\n\n"


def _introduce(story: str, name: str, kind: str) -> str:
    """Make the first mention of ``name`` say who it is: "Hazel" -> "Hazel the snail"."""
    i = story.find(name)
    if i < 0 or story.startswith(f"{name} the {kind}", i):
        return story
    return f"{story[:i]}{name} the {kind}{story[i + len(name):]}"


def _setting(r: random.Random) -> dict[str, str]:
    """Slots for where and when, and the objects a plot may need."""
    preposition, place = r.choice(_PLACES)
    time, danger = r.choice(_TIMES), r.choice(_DANGERS)
    return dict(place=place, in_place=f"{preposition} {place}", In_place=f"{preposition.title()} {place}",
                time=time, Time=time[0].upper() + time[1:], danger=danger, Danger=danger[0].upper() + danger[1:],
                food=r.choice(_FOODS), goal=r.choice(_GOALS), trap=r.choice(_TRAPS),
                treasure=r.choice(_TREASURES), plan=r.choice(_PLANS),
                count=str(r.randint(2, 99)), year=str(r.randint(1200, 1899)))


def _fables(r: random.Random) -> Iterator[str]:
    while True:
        yield _fable(r)


# ---------------------------------------------------------------------------------------------
# Corpus 2 (target): recipes
# ---------------------------------------------------------------------------------------------
# A recipe card: Title / Serves / Time, a bulleted ingredient list with quantities, numbered
# steps. The dish's style (baked, simmered, fried, fresh) decides its ingredients and steps.

# Each "base" entry is (ingredient line, amounts to choose from); {n} is replaced by the amount.
_STYLES = {
    "baked": dict(
        dishes=["Cake", "Bread", "Muffins", "Loaf", "Biscuits", "Tart", "Scones", "Crumble"],
        mains=["apple", "banana", "carrot", "pumpkin", "blueberry", "walnut", "cherry", "pear", "lemon", "oat"],
        base=[("{n} cups plain flour", ["1", "2", "1 1/2", "2 1/2", "3"]),
              ("{n} g butter, softened", ["50", "75", "100", "125", "150"]),
              ("{n} cup sugar", ["1/2", "3/4", "1", "1/3"]),
              ("{n} eggs", ["2", "3"]),
              ("{n} ml milk", ["100", "120", "150", "200", "250"]),
              ("{n} tsp baking powder", ["1", "2", "1 1/2"]),
              ("1 pinch of salt", ["1"])],
        beats=[
            ["Preheat the oven to {temp} C and grease a {tin}.", "Heat the oven to {temp} C. Line a {tin} with paper."],
            ["In a large bowl, mix the flour, sugar and baking powder.", "Sift the flour, baking powder and salt into a bowl."],
            ["Beat the butter and eggs until pale, then stir in the milk.", "Whisk the eggs with the milk and melted butter."],
            ["Fold in the {main} gently with a spoon.", "Add the {main} and {extra} and stir until just combined."],
            ["Pour the mixture into the tin and bake for {m} minutes, until golden.",
             "Spread into the tin and bake for {m} minutes, or until a skewer comes out clean."],
            ["Leave to cool for {m2} minutes before slicing.", "Cool on a rack for {m2} minutes, then serve."],
        ],
        tins=["20 cm round tin", "loaf tin", "baking tray", "23 cm square tin", "12-hole muffin tin"],
        temps=["160", "170", "180", "190", "200", "220"], minutes=["20", "25", "30", "35", "40", "45", "50"],
    ),
    "simmered": dict(
        dishes=["Soup", "Stew", "Curry", "Chowder", "Broth", "Casserole", "Chili"],
        mains=["lentil", "pumpkin", "tomato", "mushroom", "bean", "potato", "chicken", "barley", "pea", "leek"],
        base=[("{n} onion, chopped", ["1", "2"]),
              ("{n} cloves garlic, crushed", ["2", "3", "4"]),
              ("{n} tbsp olive oil", ["1", "2", "3"]),
              ("{n} litre vegetable stock", ["1", "1 1/2", "2"]),
              ("{n} tsp ground cumin", ["1", "1/2", "2"]),
              ("salt and pepper to taste", ["1"])],
        beats=[
            ["Heat the oil in a large pot over medium heat.", "Warm the oil in a heavy pan on a low flame."],
            ["Add the onion and garlic and cook for {m2} minutes until soft.",
             "Fry the onion for {m2} minutes, then add the garlic and cumin."],
            ["Stir in the {main} and {extra}.", "Add the {main}, {extra} and the cumin, and stir well."],
            ["Pour in the stock and bring to the boil.", "Add the stock and a splash of water and bring to a simmer."],
            ["Cover and simmer for {m} minutes, stirring now and then.",
             "Turn down the heat and simmer for {m} minutes until thick."],
            ["Season with salt and pepper and serve hot.", "Blend until smooth, season to taste and serve.",
             "Serve in warm bowls with crusty bread."],
        ],
        tins=["pot"], temps=["0"], minutes=["15", "20", "25", "30", "40", "45", "60", "90"],
    ),
    "fried": dict(
        dishes=["Pancakes", "Fritters", "Omelette", "Hash", "Fried Rice", "Patties", "Flatbreads"],
        mains=["potato", "corn", "courgette", "spinach", "cheese", "mushroom", "onion", "sweet potato", "rice"],
        base=[("{n} eggs", ["1", "2", "3", "4"]),
              ("{n} cup flour", ["1/2", "1", "1/4"]),
              ("{n} ml milk", ["60", "100", "125", "250"]),
              ("{n} tbsp sunflower oil", ["2", "3", "4"]),
              ("{n} spring onions, sliced", ["2", "3", "4"]),
              ("salt and black pepper", ["1"])],
        beats=[
            ["Whisk the eggs, flour and milk into a smooth batter.", "Beat the eggs in a bowl with the milk and a pinch of salt."],
            ["Stir in the {main}, {extra} and spring onions.", "Add the {main} and the spring onions and mix well."],
            ["Heat the oil in a frying pan over a high heat.", "Heat 1 tbsp of the oil in a non-stick pan."],
            ["Drop in spoonfuls of the mixture and fry for {m2} minutes on each side.",
             "Pour in the mixture and cook for {m2} minutes, until set underneath."],
            ["Drain on kitchen paper and keep warm.", "", "Turn carefully and cook the other side for 2 minutes."],
            ["Serve at once with {extra}.", "Serve hot with a green salad."],
        ],
        tins=["pan"], temps=["0"], minutes=["5", "10", "15", "20"],
    ),
    "fresh": dict(
        dishes=["Salad", "Slaw", "Bowl", "Dip", "Salsa"],
        mains=["cucumber", "cabbage", "apple", "bean", "tomato", "carrot", "radish", "beetroot", "fennel", "celery"],
        base=[("{n} tbsp lemon juice", ["1", "2", "3"]),
              ("{n} tbsp olive oil", ["2", "3", "4"]),
              ("{n} tsp honey", ["1", "2"]),
              ("1 handful fresh parsley, chopped", ["1"]),
              ("{n} g toasted seeds", ["25", "30", "50"]),
              ("salt to taste", ["1"])],
        beats=[
            ["Wash and dry the {main}.", "Trim the {main} and cut into thin slices or small pieces."],
            ["Place the {main} and {extra} in a large bowl.", "Toss the {main} with {extra} in a serving dish."],
            ["Whisk the lemon juice, oil and honey to make a dressing.", "Shake the oil, lemon juice and honey in a jar."],
            ["Pour the dressing over and mix gently.", "Drizzle over the dressing and toss to coat."],
            ["Leave to stand for {m2} minutes.", ""],
            ["Scatter with parsley and seeds just before serving.", "Top with the seeds and serve cold."],
        ],
        tins=["bowl"], temps=["0"], minutes=["5", "10", "15"],
    ),
}
_FLAVOURS = ["Lemon", "Honey", "Garlic", "Spiced", "Smoky", "Herbed", "Ginger", "Maple", "Roasted",
             "Summer", "Winter", "Country", "Golden", "Rustic", "Quick", "Sunday", "Easy", "Chili"]
_EXTRAS = [  # (ingredient line, amounts, how a step names it)
    ("{n} carrots, grated", ["2", "3"], "the carrots"), ("{n} g chopped dates", ["50", "100"], "the dates"),
    ("{n} tsp cinnamon", ["1", "2"], "the cinnamon"), ("{n} g feta, crumbled", ["100", "150"], "the feta"),
    ("{n} red pepper, diced", ["1"], "the pepper"), ("{n} tbsp chopped dill", ["1", "2"], "the dill"),
    ("{n} cup sweetcorn", ["1", "1/2"], "the sweetcorn"), ("{n} g grated cheddar", ["50", "80"], "the cheddar"),
    ("{n} tbsp soy sauce", ["1", "2"], "the soy sauce"), ("{n} tsp smoked paprika", ["1", "2"], "the paprika"),
    ("{n} g spinach leaves", ["100", "200"], "the spinach"), ("{n} tbsp yoghurt", ["2", "4"], "the yoghurt"),
]
_MAIN_AMOUNTS = ["150 g", "200 g", "250 g", "300 g", "400 g", "500 g", "600 g"]
_TIPS = [
    "", "", "", "Tip: This keeps for 3 days in the fridge.", "Tip: Double the spices for a stronger taste.",
    "Tip: Use whatever {main} is in season.", "Tip: It freezes well for up to 2 months.",
    "Note: Leftovers make a good lunch the next day.",
]


def _recipe(r: random.Random, layout: str = "card") -> str:
    """One recipe followed by a blank line, in the ``"card"`` or the ``"cookbook"`` layout.

    Both layouts draw the same random choices in the same order, so one seed gives the same dish,
    ingredients and steps; only the labels, bullets and step numbers differ.
    """
    style = _STYLES[r.choice(sorted(_STYLES))]
    main, dish = r.choice(style["mains"]), r.choice(style["dishes"])
    extra_line, extra_amounts, extra_ref = r.choice(_EXTRAS)
    minutes = r.choice(style["minutes"])
    slots = dict(main=main, extra=extra_ref, temp=r.choice(style["temps"]),
                 tin=r.choice(style["tins"]), m=minutes, m2=r.choice(["2", "3", "5", "8", "10"]))
    ingredients = [f"{r.choice(_MAIN_AMOUNTS)} {main}"]
    ingredients += [text.format(n=r.choice(amounts)) for text, amounts in style["base"]]
    ingredients.insert(r.randrange(1, len(ingredients)), extra_line.format(n=r.choice(extra_amounts)))
    steps = _pick_each(r, style["beats"])
    total_minutes = int(minutes) + r.choice([5, 10, 15, 20])
    title, serves, tip = f"{r.choice(_FLAVOURS)} {main.title()} {dish}", r.choice([2, 4, 4, 6, 8]), r.choice(_TIPS)
    if layout == "card":
        lines = [f"Title: {title}", f"Serves: {serves}", f"Time: {total_minutes} minutes",
                 "Ingredients:", *(f"- {item}" for item in ingredients),
                 "Steps:", *(f"{i}. {step}" for i, step in enumerate(steps, start=1)), tip]
    else:  # the cookbook layout that the base model reads in pre-training
        lines = [title, f"For {serves} people", f"Ready in {total_minutes} minutes",
                 "You will need:", *(f"* {item}" for item in ingredients),
                 "Method:", *(f"Step {i}: {step}" for i, step in enumerate(steps, start=1)),
                 tip.replace("Tip: ", "Hint: ")]
    return "\n".join(line for line in lines if line).format(**slots) + "\n\n"


def _recipes(r: random.Random) -> Iterator[str]:
    while True:
        yield _recipe(r)


def _cookbook(r: random.Random) -> Iterator[str]:
    while True:
        yield _recipe(r, layout="cookbook")


# ---------------------------------------------------------------------------------------------
# Corpus 3 (target with an accuracy): arithmetic
# ---------------------------------------------------------------------------------------------
# Lines "a+b=c" or "a-b=c" with two-digit a and b (10..99); subtraction keeps a >= b so c >= 0.
# A fixed 10% of all problems is held out: the corpus never contains them, so accuracy measured
# on make_arithmetic_problems(split="test") is on problems the model has never seen.

_ARITHMETIC_HOLDOUT_SEED = 1234  # fixed forever: changing it would change the test set
_ARITHMETIC_HOLDOUT_FRACTION = 0.1
_PROMPT_PATTERN = re.compile(r"^(\d+)([+-])(\d+)=$")


@functools.lru_cache(maxsize=None)
def _arithmetic_split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """All prompts such as "17+25=", split once into (train, test) by a fixed shuffle."""
    prompts = [f"{a}+{b}=" for a in range(10, 100) for b in range(10, 100)]
    prompts += [f"{a}-{b}=" for a in range(10, 100) for b in range(10, a + 1)]
    random.Random(_ARITHMETIC_HOLDOUT_SEED).shuffle(prompts)
    n_test = int(len(prompts) * _ARITHMETIC_HOLDOUT_FRACTION)
    return tuple(prompts[n_test:]), tuple(prompts[:n_test])


def arithmetic_answer(prompt: str) -> str:
    """The correct completion of a prompt such as "17+25=" (without the newline).

    >>> arithmetic_answer("17+25=")
    '42'
    >>> arithmetic_answer("60-8=")
    '52'
    """
    match = _PROMPT_PATTERN.match(prompt)
    if match is None:
        raise ValueError(f"not an arithmetic prompt like '17+25=': {prompt!r}")
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    return str(a + b if op == "+" else a - b)


def make_arithmetic_problems(n: int, seed: int = 0, split: str = "test") -> list[tuple[str, str]]:
    """``n`` distinct (prompt, answer) pairs such as ("17+25=", "42"), drawn with ``seed``.

    ``split="test"`` (default) draws from the held-out problems the corpus never contains
    (1219 of them); ``split="train"`` from the problems the corpus is made of.

    >>> make_arithmetic_problems(2, seed=0)
    [('17+25=', '42'), ('97+40=', '137')]
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pool = _arithmetic_split()[0 if split == "train" else 1]
    if not isinstance(n, (int, np.integer)) or not 0 < n <= len(pool):
        raise ValueError(f"n must be an integer in 1..{len(pool)} for split={split!r}, got {n!r}")
    prompts = random.Random(seed).sample(pool, int(n))
    return [(p, arithmetic_answer(p)) for p in prompts]


def score_arithmetic(prompts_and_completions: Sequence[tuple[str, str]]) -> float:
    """Exact-match accuracy in [0, 1] of model completions, with no model involved.

    Each item is (prompt, completion), where completion is the text the model wrote after the
    prompt. Only the completion's first line counts, so "42\\n17+3..." is read as "42".

    >>> score_arithmetic([("17+25=", "42\\n"), ("50-8=", "41\\n")])
    0.5
    """
    if len(prompts_and_completions) == 0:
        raise ValueError("score_arithmetic needs at least one (prompt, completion) pair")
    correct = sum(completion.split("\n", 1)[0] == arithmetic_answer(prompt)
                  for prompt, completion in prompts_and_completions)
    return correct / len(prompts_and_completions)


def _arithmetic(r: random.Random) -> Iterator[str]:
    train = _arithmetic_split()[0]
    while True:
        prompt = r.choice(train)
        yield f"{prompt}{arithmetic_answer(prompt)}\n"


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

_ORIGIN = "generated by tinylora from a grammar (no external data)"
_LICENCE = "MIT (same as tinylora)"


@dataclass(frozen=True)
class Corpus:
    """A corpus that tinylora generates: its metadata, and ``text()`` to make it.

    >>> corpus = CORPORA["recipes"]
    >>> corpus.text(n_chars=6)
    'Title:'
    """
    name: str
    description: str
    role: str  # "base" (pre-training) or "target" (fine-tuning)
    default_chars: int
    origin: str = _ORIGIN
    licence: str = _LICENCE
    units: Callable[[random.Random], Iterator[str]] = field(default=None, repr=False)

    def text(self, n_chars: int | None = None, seed: int = 0) -> str:
        """Exactly ``n_chars`` characters (default ``default_chars``) generated from ``seed``.

        Generation is sequential, so a shorter text is a prefix of a longer one with the same seed.
        """
        n_chars = self.default_chars if n_chars is None else n_chars
        if not isinstance(n_chars, (int, np.integer)) or isinstance(n_chars, bool) or n_chars <= 0:
            raise ValueError(f"n_chars must be a positive integer, got {n_chars!r}")
        return _generate(self.name, int(n_chars), seed)


@functools.lru_cache(maxsize=16)
def _generate(name: str, n_chars: int, seed: int) -> str:
    pieces, length = [], 0
    for unit in CORPORA[name].units(random.Random(seed)):
        pieces.append(unit)
        length += len(unit)
        if length >= n_chars:
            break
    return "".join(pieces)[:n_chars]


CORPORA: dict[str, Corpus] = {
    c.name: c for c in [
        Corpus("fables", "Short animal fables in English prose, each with a title and a moral.",
               role="base", default_chars=300_000, units=_fables),
        Corpus("recipes", "Recipe cards: title, servings, bulleted ingredients with quantities, numbered steps.",
               role="target", default_chars=100_000, units=_recipes),
        Corpus("cookbook", "The same kind of recipes in a cookbook's layout: other labels, '*' bullets, 'Step 1:'.",
               role="base", default_chars=100_000, units=_cookbook),
        Corpus("arithmetic", "Two-digit addition and subtraction, one problem per line, e.g. 17+25=42.",
               role="target", default_chars=100_000, units=_arithmetic),
    ]
}


def load_corpus(name: str, n_chars: int | None = None, seed: int = 0) -> str:
    """The text of corpus ``name``: exactly ``n_chars`` characters (default: the corpus's size).

    >>> print(load_corpus("arithmetic", n_chars=18, seed=0))
    62+11=73
    94+98=192
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid names: {', '.join(sorted(CORPORA))}")
    return CORPORA[name].text(n_chars, seed)


# ---------------------------------------------------------------------------------------------
# Splitting and batching
# ---------------------------------------------------------------------------------------------

def _as_ids(ids, what: str = "ids") -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{what} must be a 1-D integer array, got shape {ids.shape} and dtype {ids.dtype}")
    return ids


def train_val_split(ids, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split (N,) ids into (train, val): the first part and the last ``val_fraction`` of it.

    The split is contiguous (not shuffled), so no window of validation text leaks into training.

    >>> train, val = train_val_split(np.arange(10), val_fraction=0.2)
    >>> train.tolist(), val.tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    ids = _as_ids(ids)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    n_val = int(round(len(ids) * val_fraction))
    if n_val == 0 or n_val == len(ids):
        raise ValueError(
            f"val_fraction={val_fraction!r} of {len(ids)} ids leaves an empty train or val part"
        )
    return ids[:-n_val], ids[-n_val:]


def get_batch(ids, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` random windows of the (N,) ids: x and y, int64 of shape (batch_size, block_size).

    ``y`` is ``x`` shifted by one: the model reads ``x[b, :t+1]`` and must predict ``y[b, t]``.
    The arrays are host NumPy; the training loop moves them to the model's device.

    >>> x, y = get_batch(np.arange(100), batch_size=2, block_size=4, rng=np.random.default_rng(0))
    >>> x.shape, (y - x).tolist()
    ((2, 4), [[1, 1, 1, 1], [1, 1, 1, 1]])
    """
    ids = _as_ids(ids)
    for label, value in (("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator such as np.random.default_rng(0), got {type(rng).__name__}")
    if len(ids) < block_size + 1:
        raise ValueError(
            f"the text has {len(ids)} ids but a window needs block_size + 1 = {block_size + 1}; "
            f"use a longer corpus or a smaller block_size"
        )
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)   # (B,)
    offsets = starts[:, None] + np.arange(block_size)                   # (B, T)
    x = ids[offsets].astype(np.int64)                                    # (B, T)
    y = ids[offsets + 1].astype(np.int64)                                # (B, T)
    return x, y
