"""The built-in corpus: lyric-like lines from templates and word lists written for this project.

It lets ``lstm-sweep run`` work with no data at hand, and it is built so that model size
matters: a unigram model does poorly, a small LSTM learns the local patterns, a bigger one also
learns the long ones. The structure, from short-range to long-range:

* fixed phrases ("don't let me go", "one more time") and frequent function words;
* subject-verb agreement: ``i/you/we/they love`` but ``he/she loves``; ``i am``, ``he is``;
* possessives that agree with the subject several words back: ``she lost her way``;
* one theme per line (love, night, road, fire, rain, city): once a line has said "highway",
  its other nouns, verbs and adjectives come from the road lists;
* events that pair a noun with its verb (``when the rain falls``, ``when the engine roars``);
* echoes: ``hold the fire , hold the fire`` repeats words from earlier in the line;
* songs: lines come in songs of one main theme, each with a chorus repeated a few times.

Surface noise makes the cleaner matter: sentence case, a capital "I", a shouted line now and
then, apostrophes, quotes, parentheses, digits, "..." and section labels such as "[Chorus:"
(dropped by :func:`clean_line`). Lengths are mostly 4-14 words, with a tail of long lines that
a ``max_tokens`` of 15 filters out. About 400 distinct words after cleaning.
"""

from __future__ import annotations

import random
from itertools import accumulate

BUILTIN = "builtin"  # the data path naming this corpus (a folder named so: "./builtin")
# The built-in corpus is one fixed data set: generated with this seed always; the settings' seed
# only splits it.
BUILTIN_SEED = 0
# Bump when the generator's output changes: it is part of the cache fingerprint.
CORPUS_VERSION = 1
LABELLED_VERSION = 1  # the same for synthetic_labelled

# theme: (nouns, transitive verbs, adjectives, events as (noun, verb in 3rd person))
THEMES: dict[str, tuple[list[str], list[str], list[str], list[tuple[str, str]]]] = {
    "love": (
        "heart kiss lover name smile touch promise dream soul angel darling whisper secret "
        "sweetheart rose wedding letter embrace".split(),
        "love hold kiss miss need want remember call treasure keep trust adore follow".split(),
        "sweet tender gentle true precious lovely warm faithful soft perfect honest "
        "innocent secret golden".split(),
        [("heart", "beats"), ("heart", "breaks"), ("promise", "breaks"), ("kiss", "lingers"),
         ("dream", "fades"), ("angel", "sings")],
    ),
    "night": (
        "moon star shadow midnight darkness candle owl silence lantern sky streetlight "
        "moonlight dawn hour ghost blanket clock dream".split(),
        "watch hide chase haunt hear count cover light wake steal follow whisper".split(),
        "dark silent silver pale quiet endless cold blue starry sleepless deep strange "
        "black hollow".split(),
        [("moon", "rises"), ("night", "falls"), ("star", "shines"), ("shadow", "moves"),
         ("clock", "strikes"), ("owl", "calls")],
    ),
    "road": (
        "highway road mile wheel engine map border town horizon dust truck train station "
        "ticket suitcase motel bridge journey".split(),
        "drive ride cross leave follow chase travel take miss find pack burn".split(),
        "long lonesome open dusty endless winding empty wild free restless faraway broken "
        "old western".split(),
        [("engine", "roars"), ("train", "leaves"), ("wheel", "turns"), ("road", "ends"),
         ("sun", "sets"), ("dust", "settles")],
    ),
    "fire": (
        "fire flame spark ember smoke ash heat blaze match desire furnace torch sun "
        "volcano wildfire lightning passion candle".split(),
        "burn light feed ignite touch feel fight fan start carry breathe catch".split(),
        "burning hot bright red wild golden fierce hungry blazing dangerous electric "
        "glowing scarlet restless".split(),
        [("fire", "burns"), ("flame", "dances"), ("spark", "flies"), ("smoke", "rises"),
         ("ember", "glows"), ("sky", "ignites")],
    ),
    "rain": (
        "rain storm cloud thunder river ocean tear puddle umbrella flood drop window wave "
        "tide shower raincoat sea mist".split(),
        "drown wash cry taste catch feel remember weather cross cover soak hear".split(),
        "grey wet heavy cold stormy endless gentle silver blue lonely falling bitter "
        "quiet deep".split(),
        [("rain", "falls"), ("storm", "comes"), ("thunder", "rolls"), ("river", "runs"),
         ("tear", "falls"), ("tide", "turns")],
    ),
    "city": (
        "city street avenue corner subway skyline light crowd sidewalk taxi tower neon "
        "siren alley rooftop window club downtown".split(),
        "walk run dance find lose sell buy own paint shake call leave rule".split(),
        "neon crowded busy electric concrete bright loud broken restless endless shiny "
        "dirty modern sleepless".split(),
        [("city", "sleeps"), ("siren", "screams"), ("crowd", "roars"), ("traffic", "moves"),
         ("light", "flickers"), ("music", "plays")],
    ),
}

# subject, its possessive, its object form, "to be", and whether the verb takes -s
SUBJECTS = [("i", "my", "me", "am", False), ("you", "your", "you", "are", False),
            ("we", "our", "us", "are", False), ("they", "their", "them", "are", False),
            ("he", "his", "him", "is", True), ("she", "her", "her", "is", True)]
OBJECTS = ["me", "you", "him", "her", "us", "them"]
ADVERBS = ["tonight", "forever", "again", "slowly", "together", "alone", "all night long",
           "till the morning", "like before", "one more time", "right now", "every day"]
PREPOSITIONS = ["in", "through", "under", "into", "across", "beyond", "beneath", "over"]
CALLS = ["oh", "yeah", "baby", "hey", "whoa", "ooh", "darling", "la"]
PHRASES = ["don't let me go", "I can't stop now", "I'm never coming home", "hold on, hold on",
           "here we go again", "you're the only one", "we'll be alright", "it's now or never",
           "don't you cry tonight", "I'm on my way"]
HEADERS = ["[Chorus:", "[Verse 1:", "[Verse 2:", "Bridge:", "[Hook:", "[Outro:", "Chorus:"]


def synthetic_lines(n_lines: int = 20000, seed: int = 0) -> list[str]:
    """Generate ``n_lines`` raw lyric-like lines, the same ones for the same ``seed``.

    The lines are raw text (mixed case, punctuation, a few section labels and blank lines), to
    be cleaned by :func:`clean_line` like any corpus. Only a private ``random.Random(seed)`` is
    used, never the global random state.

    Args:
        n_lines: how many lines to return; >= 1.
        seed: seed of the generator; >= 0.

    Example:
        >>> lines = synthetic_lines(1000, seed=0)
        >>> len(lines), lines == synthetic_lines(1000, seed=0)
        (1000, True)
    """
    if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
        raise ValueError(f"n_lines={n_lines!r} must be an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int >= 0")
    rng = random.Random(seed)
    lines: list[str] = []
    while len(lines) < n_lines:
        lines.extend(_song(rng))
    return lines[:n_lines]


def synthetic_labelled(n_examples: int = 4000, num_classes: int = 2, seed: int = 0) -> list[tuple[str, str]]:
    """Generate ``n_examples`` raw ``(text, label)`` pairs: short verses labelled by their theme.

    A verse is 1 to 4 lines (joined by newlines) of one theme, as :func:`synthetic_lines`
    writes them; its label is the theme. The classes are the first ``num_classes`` themes
    (``love``, ``night``, ``road``, ``fire``, ``rain``, ``city``), drawn uniformly, so a test of
    the classification path needs no download. The themes share some words ("dream",
    "candle", "light") and a few lines are theme-free ("oh oh oh", "here we go again"), so
    the task is learnable but not trivial; verses run from about 3 to 50 words, so the
    sequence length matters.

    Args:
        n_examples: how many pairs to return; >= 1.
        num_classes: how many themes to use; 2 to 6.
        seed: seed of the generator; >= 0.

    Example:
        >>> pairs = synthetic_labelled(100, num_classes=3)
        >>> sorted({label for _, label in pairs})
        ['love', 'night', 'road']
    """
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples={n_examples!r} must be an int >= 1")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= len(THEMES):
        raise ValueError(f"num_classes={num_classes!r} must be an int from 2 to {len(THEMES)} (the themes)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an int >= 0")
    rng = random.Random(seed)
    themes = list(THEMES)[:num_classes]
    pairs = []
    for _ in range(n_examples):
        theme = rng.choice(themes)
        verse = [_dress(_words(rng, theme), rng) for _ in range(rng.randint(1, 4))]
        pairs.append(("\n".join(verse), theme))
    return pairs


def _song(rng: random.Random) -> list[str]:
    """One song: a main theme, verses, and a two-line chorus repeated 2-4 times."""
    theme = rng.choice(list(THEMES))
    chorus = [_dress(_words(rng, theme), rng) for _ in range(2)]
    song: list[str] = []
    for _ in range(rng.randint(2, 4)):
        if rng.random() < 0.2:
            song.append(rng.choice(HEADERS[1:3]))
        for _ in range(rng.randint(3, 8)):
            # a verse wanders off its song's theme now and then
            verse_theme = theme if rng.random() < 0.8 else rng.choice(list(THEMES))
            song.append(_dress(_words(rng, verse_theme), rng))
        if rng.random() < 0.4:
            song.append(rng.choice(HEADERS))
        song.extend(chorus)
        if rng.random() < 0.15:
            song.append("")
    return song


def _words(rng: random.Random, theme: str) -> list[str]:
    """The words of one line (commas as words), before casing and punctuation noise."""
    r = rng.random()
    if r < 0.04:
        return rng.choice(PHRASES).split()
    if r < 0.08:
        call = rng.choice(CALLS)
        return [call] * rng.randint(2, 5)
    words = rng.choice(_CLAUSES)(rng, theme)
    r = rng.random()
    if r < 0.25:
        at = len(words) - (words[-1] == "?")  # a question keeps its mark last
        words[at:at] = _pick(rng, ADVERBS).split()
    elif r < 0.40:  # the long tail: two clauses in one line
        words += [rng.choice(["and", "but", ",", "because", "so"])] + rng.choice(_CLAUSES)(rng, theme)
    if rng.random() < 0.12:
        words = [rng.choice(CALLS), ","] + words
    return words


def _dress(words: list[str], rng: random.Random) -> str:
    """Turn words into a raw line: sentence case, a capital I, marks, now and then some noise."""
    words = ["I" if w == "i" else w for w in words]
    words[0] = words[0][:1].upper() + words[0][1:]
    text = " ".join(words).replace(" ,", ",")
    r = rng.random()
    if r < 0.15:
        text += "" if text.endswith("?") else rng.choice(["!", "...", ".", " !"])
    elif r < 0.20:
        text += f" ({rng.choice(CALLS)} {rng.choice(CALLS)})"
    elif r < 0.23:
        text = f'"{text}"'
    elif r < 0.25:
        text = text.upper()
    elif r < 0.26:
        text += f" {rng.randint(1, 99)} times"  # digits: the cleaner drops them
    return text


def _pick(rng: random.Random, words: list[str]) -> str:
    """A word of ``words``, the first ones more often (Zipf-like: weight 1 / rank)."""
    cum = _CUM_WEIGHTS.get(len(words))
    if cum is None:
        cum = _CUM_WEIGHTS[len(words)] = list(accumulate(1.0 / (i + 1) for i in range(len(words))))
    return rng.choices(words, cum_weights=cum)[0]


_CUM_WEIGHTS: dict[int, list[float]] = {}


def _other(rng: random.Random, obj: str) -> str:
    """An object pronoun other than the subject's own: "i love you", never "i love me"."""
    return rng.choice([o for o in OBJECTS if o != obj])


def _verb(verb: str, third_person: bool) -> str:
    if not third_person:
        return verb
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


# Each clause template takes (rng, theme) and returns its words. Nouns, verbs and adjectives
# come from the theme, so a line keeps to one topic.

def _subject_verb_object(rng: random.Random, theme: str) -> list[str]:
    nouns, verbs, adjs, _ = THEMES[theme]
    subj, poss, _, _, third = rng.choice(SUBJECTS)
    owner = poss if rng.random() < 0.5 else "the"
    return [subj, _verb(_pick(rng, verbs), third), owner, _pick(rng, adjs), _pick(rng, nouns)]


def _when_event(rng: random.Random, theme: str) -> list[str]:
    nouns, verbs, _, events = THEMES[theme]
    noun, happens = rng.choice(events)
    subj, poss, obj, _, third = rng.choice(SUBJECTS)
    target = [_other(rng, obj)] if rng.random() < 0.4 else [poss, _pick(rng, nouns)]
    return ["when", "the", noun, happens, ",", subj, _verb(_pick(rng, verbs), third), *target]


def _being(rng: random.Random, theme: str) -> list[str]:
    nouns, _, adjs, _ = THEMES[theme]
    subj, _, _, be, _ = rng.choice(SUBJECTS)
    return [subj, be, _pick(rng, adjs), rng.choice(PREPOSITIONS), "the", _pick(rng, nouns)]


def _question(rng: random.Random, theme: str) -> list[str]:
    nouns, verbs, adjs, _ = THEMES[theme]
    subj, poss, _, _, third = rng.choice(SUBJECTS[1:])
    return ["does" if third else "do", subj, _pick(rng, verbs), poss, _pick(rng, adjs),
            _pick(rng, nouns), "?"]


def _echo(rng: random.Random, theme: str) -> list[str]:
    nouns, verbs, _, _ = THEMES[theme]
    phrase = [_pick(rng, verbs), "the", _pick(rng, nouns)]
    return phrase + [","] + ([rng.choice(CALLS)] if rng.random() < 0.3 else []) + phrase


def _possessive(rng: random.Random, theme: str) -> list[str]:
    nouns, verbs, adjs, _ = THEMES[theme]
    subj, poss, _, _, third = rng.choice(SUBJECTS)
    return [subj, _verb(rng.choice(["lose", "find", "give"]), third), poss, _pick(rng, nouns),
            rng.choice(PREPOSITIONS), "the", _pick(rng, adjs), _pick(rng, nouns)]


def _like_event(rng: random.Random, theme: str) -> list[str]:
    _, verbs, _, events = THEMES[theme]
    subj, _, obj, _, third = rng.choice(SUBJECTS)
    noun, happens = rng.choice(events)
    return [subj, _verb(_pick(rng, verbs), third), _other(rng, obj), "like", "the", noun, happens]


_CLAUSES = [_subject_verb_object, _when_event, _being, _question, _echo, _possessive, _like_event]
