"""A seeded query stream for cache benchmarks: new questions, repeats, paraphrases and labelled
hard negatives.

Every query carries its *intent* (what it asks). A cache hit is correct only when the cached
entry's intent equals the query's; that is how false hits are counted. Hard negatives are queries
built to look like an earlier one while asking something else: a negated twin ("Which river does
*not* flow through Varholm?") and, on the demo corpus, an entity swap ("... through Varbrook?").

Rates: ``repeat_rate`` of the queries re-ask an intent already asked (``paraphrase_share`` of
those in other words); ``negative_rate`` are hard negatives of an earlier query; the rest ask
something new. The first query is always new.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from wattlab.core.errors import DataError
from wattlab.core.rag.corpus import Chunk

KINDS = ("new", "repeat", "paraphrase", "negation", "entity-swap")
HARD_NEGATIVES = ("negation", "entity-swap")


@dataclass(frozen=True)
class Query:
    text: str
    intent: str
    kind: str  # one of KINDS
    gold_doc: str | None = None  # the document that answers it, where known
    answer: str | None = None  # the exact answer, where known
    twin: int | None = None  # index of the earlier query it repeats or mirrors

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Intent:
    key: str
    phrasings: tuple[str, ...]
    negated: str | None
    gold_doc: str | None
    answer: str | None
    swap: str | None = None  # intent key of an entity-swap partner


def demo_intents(n_towns: int, seed: int) -> dict[str, Intent]:
    from wattlab.core.rag.demo_corpus import QUESTIONS, swap_partner, towns

    ts = towns(n_towns, seed)
    names = [t.name for t in ts]
    out: dict[str, Intent] = {}
    for t in ts:
        partner = swap_partner(t.name, names)
        for attr, (phr, neg) in QUESTIONS.items():
            out[f"{t.name}/{attr}"] = Intent(
                f"{t.name}/{attr}",
                tuple(p.format(t=t.name) for p in phr),
                neg.format(t=t.name),
                f"{t.name.lower()}.md",
                t.facts[attr],
                f"{partner}/{attr}" if partner else None,
            )
    return out


_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    """Sentences of 5 to 40 words: long enough to be a question's subject. Text without
    sentence punctuation (chunking joins lines) is cut into 12-word windows instead."""
    out = []
    for s in _SPLIT.split(text):
        words = s.split()
        if 5 <= len(words) <= 40:
            out.append(s.strip())
        elif len(words) > 40:
            out += [" ".join(words[i : i + 12]) for i in range(0, len(words) - 4, 12)]
    return out


def corpus_intents(chunks: list[Chunk], limit: int, seed: int) -> dict[str, Intent]:
    """For a user's corpus with no query file: one intent per sampled sentence, phrased as a
    lookup three ways, with a negated twin. No answer is known, so only retrieval is scored."""
    rng = random.Random(seed)
    found = list({s: (c, s) for c in chunks for s in _sentences(c.text)}.values())
    if not found:
        raise DataError(
            "no sentence of 5-40 words in the corpus to build queries from; give --queries-file"
        )
    rng.shuffle(found)
    out: dict[str, Intent] = {}
    for c, s in found[:limit]:
        body = s.rstrip(".!?")
        key = f"{c.doc}/{len(out)}"
        out[key] = Intent(
            key,
            (
                f"Find the passage saying that {body}.",
                f"Which passage says {body}?",
                f"Where does the text say that {body}?",
            ),
            f"Find the passage saying that it is not true that {body}.",
            c.doc,
            None,
        )
    return out


def make_stream(
    intents: dict[str, Intent],
    n: int,
    repeat_rate: float,
    paraphrase_share: float,
    negative_rate: float,
    seed: int,
) -> list[Query]:
    if not 0 <= repeat_rate <= 1 or not 0 <= negative_rate <= 1 or repeat_rate + negative_rate > 1:
        raise DataError(
            f"repeat rate ({repeat_rate}) and negative rate ({negative_rate}) must lie in 0..1 "
            "and add up to at most 1"
        )
    rng = random.Random(seed)
    fresh = sorted(intents)
    rng.shuffle(fresh)
    asked: list[int] = []  # indexes of positive queries, the pool for repeats and negatives
    out: list[Query] = []
    for i in range(n):
        r = rng.random()
        if asked and r < repeat_rate:
            j = rng.choice(asked)
            prev = out[j]
            it = intents[prev.intent]
            if rng.random() < paraphrase_share and len(it.phrasings) > 1:
                text = rng.choice([p for p in it.phrasings if p != prev.text])
                kind = "paraphrase"
            else:
                text, kind = prev.text, "repeat"
            out.append(Query(text, it.key, kind, it.gold_doc, it.answer, j))
            continue
        if asked and r < repeat_rate + negative_rate:
            j = rng.choice(asked)
            it = intents[out[j].intent]
            swap = intents.get(it.swap) if it.swap else None
            if swap is not None and (it.negated is None or rng.random() < 0.5):
                # The swap partner's question in the same words as query j.
                k = it.phrasings.index(out[j].text) if out[j].text in it.phrasings else 0
                t = swap.phrasings[k]
                out.append(Query(t, swap.key, "entity-swap", swap.gold_doc, swap.answer, j))
                continue
            if it.negated is not None:
                out.append(Query(it.negated, f"not:{it.key}", "negation", None, None, j))
                continue
        if not fresh:
            raise DataError(
                f"the corpus gives {len(intents)} distinct questions, too few for {n} queries "
                "at this repeat rate; lower --queries or raise --repeat-rate"
            )
        it = intents[fresh.pop()]
        out.append(Query(rng.choice(it.phrasings), it.key, "new", it.gold_doc, it.answer))
        asked.append(i)
    return out


def load_queries_file(path: Path) -> list[Query]:
    """JSONL with ``text`` and optionally ``intent``, ``kind``, ``gold_doc``, ``answer``. A query
    without an intent is its own intent (false hits then count only exact mislabels)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"queries file not found: {path}")
    from wattlab.core.models.datasets import _read_text, jsonl_objects

    out = []
    for n, rec in jsonl_objects(path.name, _read_text(path)):
        text = rec.get("text")
        if not isinstance(text, str):
            raise DataError(f'{path.name} line {n} needs a "text" string')
        kind = rec.get("kind", "new")
        if not isinstance(kind, str) or kind not in KINDS:
            raise DataError(f"{path.name} line {n}: kind must be one of {', '.join(KINDS)}")
        out.append(
            Query(
                text,
                str(rec.get("intent") or text),
                kind,
                _optional_str(rec, "gold_doc", path.name, n),
                _optional_str(rec, "answer", path.name, n),
            )
        )
    if not out:
        raise DataError(f"{path.name} holds no queries")
    return out


def _optional_str(rec: dict[str, object], key: str, name: str, n: int) -> str | None:
    """``rec[key]`` when it is a string, None when it is missing or null; anything else is
    refused here rather than failing when answers are compared."""
    v = rec.get(key)
    if v is None or isinstance(v, str):
        return v
    raise DataError(f'{name} line {n}: "{key}" must be a string')
