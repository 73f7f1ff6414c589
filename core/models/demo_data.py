"""The built-in demo dataset: customer messages in four intents, generated, never downloaded.

Classes: ``praise``, ``complaint``, ``question``, ``request``. Why these: praise and complaint
share vocabulary and differ by negation ("not bad" is praise, "not good" is a complaint), and
questions and requests share "can you"/"could you" openers, so a bag of words is not enough and
a small transformer has something to learn. Noise makes it honest: ~20% of words go through
typos, fillers and word drops, and 3% of labels are flipped at random (so ~97% is the ceiling).

Deterministic: the same ``seed`` and ``n`` give the same rows on every machine (``random.Random``
with a fixed seed; no hash-order dependence).

A synthetic attribute, column ``group``, lets the fairness figures (``--sensitive-column group``)
be shown without anyone's private data: group ``B`` is every text the noise pass changed (a typo,
a filler or a dropped word), group ``A`` every text it left as composed (about half each). Like a
group of writers whose messages are messier, B is where a compressed model may lose more. The
group is read off what the generator already does, never drawn from the random stream, so the
texts, labels and their order (and the demo model's cache key) are what they were before it.
"""

from __future__ import annotations

import random

VERSION = 1
CLASSES = ("praise", "complaint", "question", "request")
GROUP_COLUMN = "group"
GROUPS = ("A", "B")  # A: the text as composed; B: the noise pass changed it

SUBJECTS = [
    "the battery",
    "the screen",
    "the delivery",
    "the app",
    "the support team",
    "the camera",
    "the keyboard",
    "this laptop",
    "the charger",
    "the update",
    "the speaker",
    "the headphones",
    "my order",
    "the price",
    "the setup",
    "the printer",
    "the router",
    "the warranty",
    "the manual",
    "the refund process",
]
POS = [
    "great",
    "excellent",
    "fast",
    "reliable",
    "amazing",
    "helpful",
    "smooth",
    "solid",
    "fantastic",
    "impressive",
    "good",
    "perfect",
    "quiet",
    "bright",
    "sturdy",
]
NEG = [
    "terrible",
    "slow",
    "broken",
    "awful",
    "useless",
    "disappointing",
    "noisy",
    "flimsy",
    "bad",
    "poor",
    "buggy",
    "confusing",
    "overpriced",
    "faulty",
    "unreliable",
]
INTENS = ["", "", "really ", "very ", "quite ", "so ", "absolutely ", "pretty "]
OPENERS = ["", "", "", "honestly ", "well ", "i think ", "to be fair ", "overall "]
CLOSERS = ["", "", "", " thanks", " to be honest", " so far", " overall", " again"]
ACTIONS = [
    "replace",
    "refund",
    "repair",
    "cancel",
    "ship",
    "upgrade",
    "reset",
    "check",
    "send",
    "exchange",
]
Q_VERBS = ["work with", "support", "come with", "fit", "include", "charge"]
THINGS = [
    "usb c",
    "a case",
    "two cables",
    "bluetooth",
    "my old model",
    "wireless charging",
    "a spare part",
    "a warranty card",
    "dark mode",
    "fast charging",
]
FILLERS = ["um", "like", "just", "actually", "basically"]


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1 :]  # drop a letter
    if op == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap two letters
    return word[:i] + word[i] + word[i:]  # double a letter


def _noisy(text: str, rng: random.Random) -> str:
    out = []
    for w in text.split():
        r = rng.random()
        if r < 0.06:
            out.append(_typo(w, rng))
        elif r < 0.09:
            out.extend([w, rng.choice(FILLERS)])
        elif r < 0.11 and w not in ("not", "never", "isn't", "is"):
            continue
        else:
            out.append(w)
    return " ".join(out)


def _praise(rng: random.Random) -> str:
    s = rng.choice(SUBJECTS)
    forms = [
        lambda: f"{s} is {rng.choice(INTENS)}{rng.choice(POS)}",
        lambda: f"{s} is not {rng.choice(NEG)} at all",
        lambda: f"{s} isn't {rng.choice(NEG)}",
        lambda: f"i love how {rng.choice(POS)} {s} is",
        lambda: f"{s} was never {rng.choice(NEG)}",
        lambda: f"{s} is {rng.choice(POS)} and {rng.choice(POS)}",
        lambda: f"no complaints, {s} is {rng.choice(POS)}",
    ]
    return rng.choice(forms)()


def _complaint(rng: random.Random) -> str:
    s = rng.choice(SUBJECTS)
    forms = [
        lambda: f"{s} is {rng.choice(INTENS)}{rng.choice(NEG)}",
        lambda: f"{s} is not {rng.choice(POS)} at all",
        lambda: f"{s} isn't {rng.choice(POS)}",
        lambda: f"i hate how {rng.choice(NEG)} {s} is",
        lambda: f"{s} was never {rng.choice(POS)}",
        lambda: f"{s} is {rng.choice(NEG)} and {rng.choice(NEG)}",
        lambda: f"so many complaints, {s} is {rng.choice(NEG)}",
    ]
    return rng.choice(forms)()


def _question(rng: random.Random) -> str:
    s = rng.choice(SUBJECTS)
    forms = [
        lambda: f"is {s} {rng.choice(POS + NEG)} ?",
        lambda: f"does {s} {rng.choice(Q_VERBS)} {rng.choice(THINGS)} ?",
        lambda: f"can you tell me if {s} {rng.choice(Q_VERBS)} {rng.choice(THINGS)} ?",
        lambda: f"how long does {s} last ?",
        lambda: f"why is {s} {rng.choice(POS + NEG)} ?",
        lambda: f"could you explain whether {s} is {rng.choice(POS + NEG)} ?",
    ]
    return rng.choice(forms)()


def _request(rng: random.Random) -> str:
    s = rng.choice(SUBJECTS)
    a = rng.choice(ACTIONS)
    forms = [
        lambda: f"please {a} {s}",
        lambda: f"can you {a} {s} for me",
        lambda: f"could you {a} {s} today",
        lambda: f"i need you to {a} {s}",
        lambda: f"kindly {a} {s} as soon as possible",
        lambda: f"i would like you to {a} {s}",
    ]
    return rng.choice(forms)()


_MAKERS = {"praise": _praise, "complaint": _complaint, "question": _question, "request": _request}


def generate_rows(
    n: int = 5000, seed: int = 13, label_noise: float = 0.03
) -> list[tuple[str, str, str]]:
    """``n`` (text, label, group) rows, classes balanced, shuffled. The random stream is the
    one ``generate`` has always used (a shuffle's draws depend on the list's length only), so
    dropping the group gives exactly the rows ``generate`` gives."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    for k in range(n):
        label = CLASSES[k % len(CLASSES)]
        composed = f"{rng.choice(OPENERS)}{_MAKERS[label](rng)}{rng.choice(CLOSERS)}"
        text = _noisy(composed, rng)
        # " ".join(split()) is what _noisy returns when it changes nothing
        group = GROUPS[0] if text == " ".join(composed.split()) else GROUPS[1]
        if rng.random() < label_noise:
            label = rng.choice([c for c in CLASSES if c != label])
        rows.append((text, label, group))
    rng.shuffle(rows)
    return rows


def generate(n: int = 5000, seed: int = 13, label_noise: float = 0.03) -> list[tuple[str, str]]:
    """``n`` (text, label) rows, classes balanced, shuffled."""
    return [(text, label) for text, label, _ in generate_rows(n, seed, label_noise)]
