"""The word lists of the ``cards`` task: people's names, jobs, cities and the ways a prompt asks.

Plain data, no logic (the generator that uses them is ``tinylora.corpora.cards``). In a prompt,
{name}, {age}, {job}, {city} are the person's fields and {a_job} is the job with its article
("a baker", "an editor"). Names are split in two: the training prompts use ``TRAIN_NAMES`` and the
held-out prompts ``TEST_NAMES``, so a held-out card cannot be recalled, only read off its prompt.
"""
from __future__ import annotations

TRAIN_NAMES = ["Mira", "Tomas", "Anya", "Felix", "Lena", "Oskar", "Priya", "Jonah", "Clara", "Mateo",
               "Ines", "Hugo", "Nadia", "Ravi", "Elsa", "Pablo", "Greta", "Samir", "Lucia", "Emil",
               "Zara", "Bruno", "Hana", "Victor", "Maya", "Leon", "Sofia", "Kenji", "Alma", "Dario",
               "Freya", "Tariq", "Nora", "Ivan", "Leila", "Marco", "Esme", "Rohan", "Ada", "Felipe",
               "Yara", "Otto", "Selma", "Kofi", "Ruth", "Anton", "Lina", "Caleb"]
TEST_NAMES = ["Vera", "Idris", "Paloma", "Jasper", "Talia", "Nils", "Amara", "Quentin", "Oona", "Ezra",
              "Marta", "Sven"]

JOBS = ["baker", "nurse", "pilot", "teacher", "carpenter", "engineer", "architect", "farmer", "chemist",
        "librarian", "painter", "plumber", "editor", "dentist", "electrician", "florist", "tailor",
        "surgeon", "actor", "welder", "optician", "lawyer", "gardener", "jeweller"]

CITIES = ["Lyon", "Oslo", "Porto", "Leeds", "Graz", "Turin", "Ghent", "Bergen", "Cork", "Krakow",
          "Seville", "Utrecht", "Tampere", "Brno", "Bilbao", "Malmo", "Dundee", "Basel", "Lille", "Riga"]

AGES = range(19, 78)

# How a user asks for a card; each prompt is one of these, filled in.
TEMPLATES = [
    "Make a card for {name}, {a_job} from {city}, aged {age}.",
    "{name} is {age} and works as {a_job} in {city}. Card, please.",
    "File this person: {name}, {job}, {age}, lives in {city}.",
    "New contact: {name} ({age}), {job} in {city}.",
    "Please add {name} to the address book. {name} is {a_job}, {age} years old, based in {city}.",
    "Card for this one: {a_job} called {name}, age {age}, from {city}.",
    "{name}, {age} years old, {job}, {city}. Write the card.",
    "Write up {name}: {age}, {job}, {city}.",
]
