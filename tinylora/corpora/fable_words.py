"""The word lists of the ``fables`` corpus: characters, places, times, objects, and each plot's beats.

Plain data, no logic (the grammar that uses them is ``tinylora.corpora.fables``). Slots in
{braces} are filled by the generator: ``h_`` is the hero, ``o_`` the other character, e.g.
``{h_name}``, ``{o_kind}``, ``{h_He}``; a capital prefix (``{H_kind}``) gives title case.
Editing any list changes the generated text, and the shipped base model was trained on it.
"""
from __future__ import annotations

ANIMALS = [
    "fox", "crow", "tortoise", "hare", "lion", "mouse", "ant", "grasshopper", "wolf", "lamb",
    "owl", "goose", "frog", "stork", "heron", "badger", "otter", "squirrel", "deer", "bear",
    "goat", "donkey", "rooster", "cat", "hedgehog", "beaver", "mole", "sparrow", "eagle", "snail",
    "bee", "magpie", "weasel", "crab", "raven", "ox", "beetle", "lark", "cricket", "jackdaw",
]
NAMES = [
    "Bramble", "Pip", "Hazel", "Rowan", "Thistle", "Clover", "Moss", "Fern", "Juniper", "Wren",
    "Sorrel", "Tansy", "Burdock", "Nettle", "Acorn", "Pebble", "Ember", "Quill", "Dusk", "Marigold",
    "Tumble", "Old Grey", "Bracken", "Willow", "Cobble", "Flint", "Sage", "Puddle", "Birch", "Teasel",
]
PLACES = [  # (preposition, place)
    ("in", "a quiet meadow"), ("at", "the edge of a dark forest"), ("on", "a muddy riverbank"),
    ("in", "a farmyard behind an old mill"), ("on", "a hill covered in heather"),
    ("in", "a marsh full of tall reeds"), ("in", "a green valley between two mountains"),
    ("in", "an orchard of crooked apple trees"), ("in", "a sunny clearing in the woods"),
    ("on", "the bank of a slow river"), ("on", "a rocky shore by the sea"),
    ("in", "a field of golden barley"),
    ("in", "a village garden with a stone wall"), ("on", "a wide plain where the grass grew high"),
    ("in", "a pine wood on the side of a hill"), ("on", "a little island in a lake"),
    ("near", "a well at the crossroads"), ("in", "a hollow under the roots of a beech tree"),
]
TIMES = [
    "one morning", "one cold evening", "early one day", "at the end of a long week",
    "one rainy afternoon", "soon afterwards", "on the night of the full moon",
    "one windy day", "just before sunrise", "on a hot and dusty day", "one foggy morning",
    "a few days later", "late one night", "at noon the next day",
]
SCENERY = [
    "The wind moved softly through the grass.", "Rain had fallen in the night, and every leaf was shining.",
    "The sun was warm, and the bees were busy among the flowers.", "Clouds rolled low over the hills.",
    "The river was high and loud after the storms.", "Birds were singing in every hedge.",
    "The air smelled of wild thyme and wet earth.", "It was a peaceful place, where little ever happened.",
    "Many creatures lived there, and they all knew one another.",
    "Paths wound between the stones and the ferns.",
    "It had not rained for {count} days.", "The nearest village was {count} miles away.",
    "There were {count} old oak trees beside the path.", "The year was {year}, and the winter had been long.",
    "", "", "", "",
]
DETAILS = [  # a sentence about the hero, said with pronoun slots
    "{h_He} had bright eyes and a loud voice.", "{h_He} was rather fond of {h_his} own reflection.",
    "{h_He} talked more than {h_he} listened.", "{h_He} was never seen without a friend or two nearby.",
    "{h_His} neighbours said there was no {h_kind} quite like {h_him}.",
    "Every evening {h_he} sat by {h_his} door and watched the sky.",
    "{h_He} knew every path and every hiding place for miles around.",
    "Nobody could remember a day when {h_he} had been quiet.", "", "", "", "",
]
FOODS = [
    "a piece of cheese", "a ripe plum", "a crust of bread", "a fat walnut", "a honeycomb",
    "a golden pear", "a handful of berries", "a sweet cake", "a shiny apple", "a bunch of grapes",
]
GOALS = [
    "the old oak tree", "the top of the hill", "the far side of the meadow", "the stone bridge",
    "the edge of the pond", "the miller's gate", "the big grey rock",
]
TRAPS = [
    "a hunter's net", "a deep pit", "a tangle of thorns", "a snare of rope", "a bramble patch",
]
TREASURES = [
    "a juicy bone", "a round cheese", "a loaf of bread", "a string of sausages", "a basket of eggs",
]
DANGERS = ["a hungry wolf", "a hunter with a bow", "a flood", "a forest fire", "a hungry lynx"]

PLANS = ["hang a bell around the neck of the cat", "build a wall around the whole meadow",
         "chase the fox away for good", "steal the farmer's keys", "dig a tunnel under the river"]

ANY = ANIMALS

# Each plot: who the two characters can be, which adjectives suit them, the beats, the morals.
PLOTS = {
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
             ('"Good day, friend," called the {h_kind}. "They say you sing more sweetly than any bird. '
              'Is it true?"'),
             ('"How fine you look today," said {h_name}. "If only I could hear you sing, '
              'my day would be perfect."')],
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
            [("{h_Name} the {h_kind} was resting when {o_name} the {o_kind} ran across {h_his} paw by "
              "mistake."),
             "One day {o_a} woke the {h_kind} by accident, and the {h_kind} caught it at once."],
            ['"Please let me go," begged the {o_kind}. "One day I may be able to help you."',
             '"Spare me," cried {o_name}. "I am too small to be a meal, but I will not forget your mercy."'],
            ["The {h_kind} laughed at the idea, but {h_he} let the {o_kind} go.",
             "{h_Name} smiled at such a bold promise from so small a creature, and set {o_name} free."],
            ["Not long after, the {h_kind} was caught in {trap} and could not get out.",
             "{Time}, {h_name} stepped into {trap} and was held fast, roaring for help."],
            ["The {o_kind} heard the noise, came running, and worked until the {h_kind} was free.",
             "{o_Name} found {h_him} and, bit by bit, cut through the trap until {h_he} could walk away."],
            ["",
             ('"You thought I was too small to help," said the {o_kind}, '
              '"but now you see that I keep my word."')],
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
        hero_kinds=ANY, other_kinds=ANY,
        hero_adj=["greedy", "hungry", "selfish", "restless", "jealous"],
        other_adj=["wise", "old", "quiet", "kind", "thoughtful"],
        beats=[
            ["{h_Name} the {h_kind} found {treasure} and hurried home with it.",
             "The {h_kind} stole {treasure} from a farmer's table and ran off with it."],
            [("On the way, {h_he} crossed a bridge and saw another {h_kind} in the water with {treasure} "
              "even larger."),
             ("Crossing the stream, {h_name} looked down and saw another {h_kind} below holding {treasure} "
              "twice as big.")],
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
        other_kinds=ANY,
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
        other_kinds=ANY,
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
            ["",
             "{o_Name} the {o_kind} watched and asked what {h_he} was doing, but {h_he} just kept working."],
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
             ("{Time}, all the small creatures gathered under a hedge to decide what to do about their "
              "troubles.")],
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
            [("{h_Name} the {h_kind} and {o_name} the {o_kind} found {food} lying on the path at the same "
              "moment."),
             "{Time}, {h_name} the {h_kind} and {o_name} both saw {food} and ran for it together."],
            ['"It is mine, I saw it first!" said {h_name}. "No, it is mine!" said {o_name}.',
             "They pulled and argued, and neither would let the other have even a little."],
            ["A monkey passing by offered to divide it fairly between them.",
             "At last they asked a fox to judge the matter, for the fox was said to be very fair."],
            [("The judge broke it in two, looked at the pieces, "
              "and took a bite from the bigger one to make them even."),
             ("The judge cut it in half, said one half was too big, and nibbled at it, then at the other, "
              "and so on.")],
            ["By the time the judging was over, there was nothing left for either of them.",
             "Soon only crumbs remained, and the judge walked off licking its lips."],
        ],
        morals=["When two quarrel, a third often takes the prize.", "Share fairly, or you may both lose.",
                "A quarrel feeds no one."],
    ),
}

OPENINGS = [
    "Once upon a time, {in_place}, there lived {h_a} named {h_name}.",
    "{In_place} there was {h_a} called {h_name}.",
    "{h_Name} the {h_kind} lived {in_place}, and everyone knew {h_him} as {h_a}.",
    "Long ago, {h_a} named {h_name} made {h_his} home {in_place}.",
    "Not far from {place} lived {h_a}, whose name was {h_name}.",
    "There was once {h_a} who lived {in_place}. {h_His} name was {h_name}.",
    "{In_place} lived {h_name}, {h_a}.",
]
CLOSINGS = [
    "", "", "", "From that day on, {h_name} was a little wiser.",
    "And the creatures who live {in_place} still tell this story to their young.",
    "{h_Name} never forgot that day.", "After that, {h_name} was quieter than before.",
    "It was a lesson {h_name} would remember for a long time.",
]
TITLES_TWO = ["The {H_adj} {H_kind} and the {O_adj} {O_kind}", "The {H_kind} and the {O_kind}",
              "{h_Name} and the {O_kind}"]
TITLES_ONE = ["How the {H_kind} Learned a Lesson", "The {H_adj} {H_kind}", "{h_Name} the {H_kind}"]
