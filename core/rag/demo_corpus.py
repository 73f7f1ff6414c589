"""The built-in RAG corpus: a gazetteer of fictional towns, generated, never downloaded.

Why fictional towns: every fact (river, founding year, trade, mayor, dish) exists only in the
corpus, so a generator can answer only from what retrieval gives it, and retrieval quality and
answer accuracy can be scored exactly. Town names share prefixes and suffixes ("Varholm" and
"Varbrook"), which gives the query workload its entity-swap hard negatives for free.

Deterministic: the same seed gives the same towns, documents and questions on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

VERSION = 1

PREFIXES = (
    "Var Ost Bel Cor Dun Elm Fen Gar Hol Ist Kel Lun Mar Nor Pel Quen Ros Sil Tor Ul Vel Wyn"
).split()
SUFFIXES = "holm brook ford wick stead mere gate haven ridge dale moor field".split()
RIVERS = (
    "Ostra Lenn Vasse Harrow Teme Calder Mirel Sorne Abren Dove Ketter Ulla Brisk Wend Orrin Tamsk"
).split()
TRADES = (
    "glass making",
    "wool weaving",
    "clock making",
    "salt mining",
    "boat building",
    "paper milling",
    "cheese making",
    "iron casting",
    "rope making",
    "silk dyeing",
    "bell founding",
    "lace making",
)
FIRST = "Ada Bram Cora Dov Elin Fenn Greta Hugo Ines Joss Kit Lorne".split()
LAST = "Morrow Haldane Pike Ashby Crane Dunmore Fairlie Gorse Hale Kestrel".split()
DISHES = (
    "eel pie",
    "plum dumplings",
    "smoked trout",
    "barley soup",
    "honey cake",
    "onion tart",
    "mutton stew",
    "cherry bread",
    "pickled herring",
    "walnut biscuits",
)

# attribute -> (paraphrase templates, negated template). The negation keeps almost every word of
# the first template, which is what makes it a hard negative for a similarity cache.
QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "river": (
        (
            "Which river flows through {t}?",
            "What river runs through {t}?",
            "On which river does {t} lie?",
        ),
        "Which river does not flow through {t}?",
    ),
    "founded": (
        (
            "When was {t} founded?",
            "In what year was {t} founded?",
            "What year was {t} established?",
        ),
        "When was {t} not founded?",
    ),
    "trade": (
        (
            "What is {t} known for?",
            "Which trade is {t} famous for?",
            "What craft is {t} known for?",
        ),
        "What is {t} not known for?",
    ),
    "mayor": (
        (
            "Who is the mayor of {t}?",
            "Who is the current mayor of {t}?",
            "Who serves as mayor of {t}?",
        ),
        "Who is not the mayor of {t}?",
    ),
    "dish": (
        (
            "Which dish should visitors to {t} try?",
            "What food is {t} famous for?",
            "What do visitors to {t} often eat?",
        ),
        "Which dish should visitors to {t} not try?",
    ),
}

# The shared prompt prefix every generation starts with: an instruction and worked examples, as
# production RAG prompts have. Its KV cache is what the prefix layer reuses.
PROMPT_PREFIX = (
    "You answer questions about towns in the gazetteer . Use only the context . Answer with the "
    "exact words from the context and nothing else . If the context does not say , answer "
    "unknown . Example : context : Alden is a town on the river Moss . It was founded in 1402 . "
    "question : Which river flows through Alden ? answer : Moss . Example : context : The "
    "current mayor of Brint is Ola Vance . Visitors to Brint often try its fig cake . question : "
    "Who is the mayor of Brint ? answer : Ola Vance . Example : context : Cray is known for tin "
    "smelting . question : What is Cray known for ? answer : tin smelting ."
)


@dataclass(frozen=True)
class Town:
    name: str
    facts: dict[str, str]

    def document(self, rng: random.Random) -> str:
        f = self.facts
        t = self.name
        sentences = [
            f"{t} is a town on the river {f['river']}.",
            f"It was founded in {f['founded']}.",
            f"The town is known for {f['trade']}.",
            f"The current mayor of {t} is {f['mayor']}.",
            f"Visitors to {t} often try its {f['dish']}.",
        ]
        head, rest = sentences[0], sentences[1:]
        rng.shuffle(rest)
        return f"# {t}\n\n" + " ".join([head, *rest]) + "\n"


def towns(n: int, seed: int) -> list[Town]:
    if not 1 <= n <= len(PREFIXES) * len(SUFFIXES):
        raise ValueError(f"between 1 and {len(PREFIXES) * len(SUFFIXES)} towns, got {n}")
    rng = random.Random(seed)
    names = [p + s for p in PREFIXES for s in SUFFIXES]
    rng.shuffle(names)
    out = []
    for name in sorted(names[:n]):
        out.append(
            Town(
                name,
                {
                    "river": rng.choice(RIVERS),
                    "founded": str(rng.randint(1100, 1899)),
                    "trade": rng.choice(TRADES),
                    "mayor": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    "dish": rng.choice(DISHES),
                },
            )
        )
    return out


def documents(n: int, seed: int) -> list[tuple[str, str]]:
    """(document id, markdown text) per town; ids look like file names so a demo corpus and a
    folder corpus are handled alike."""
    rng = random.Random(seed + 1)
    return [(f"{t.name.lower()}.md", t.document(rng)) for t in towns(n, seed)]


def swap_partner(name: str, names: list[str]) -> str | None:
    """Another town sharing the name's prefix (Varholm -> Varbrook): an entity-swap negative."""
    pre = next((p for p in PREFIXES if name.startswith(p)), None)
    same = sorted(x for x in names if x != name and pre and x.startswith(pre))
    return same[0] if same else None
