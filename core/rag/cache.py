"""The first two cache layers of the RAG pipeline (the third, prompt-prefix KV reuse, lives with
the generator).

1. ``EmbeddingCache``: chunk vectors persisted in SQLite, keyed by (embedding-model identity,
   chunk content hash). The model identity includes a digest of its weights, so retraining a model
   in the same folder is a different model; the content hash means an edited chunk is a new key.
   Neither can serve a stale vector, so nothing ever needs "invalidating" by hand.
2. ``QueryCache``: a semantic cache of retrieval results (and optionally answers) for queries
   similar to an earlier one. Similarity alone confuses a question with its negation ("Which river
   does not flow through X?"), so a hit must also pass a lexical guard: the same negation cues,
   numbers and proper nouns. Entries belong to one index version (corpus + embedding model); a
   different version empties the cache.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# -- layer 1: embeddings -------------------------------------------------------------------------


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, hash TEXT NOT NULL, "
            "dim INTEGER NOT NULL, vec BLOB NOT NULL, created REAL NOT NULL, "
            "PRIMARY KEY (model, hash))"
        )
        self._db.commit()
        self.write_error: str | None = None

    def get_many(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(hashes))
        for i in range(0, len(uniq), 500):  # SQLite's bound-parameter limit
            part = uniq[i : i + 500]
            q = ",".join("?" * len(part))
            for h, dim, blob in self._db.execute(
                f"SELECT hash, dim, vec FROM embeddings WHERE model = ? AND hash IN ({q})",
                [model, *part],
            ):
                v = np.frombuffer(blob, dtype=np.float32)
                if v.size == dim:  # a truncated row is a miss, never a wrong vector
                    out[h] = v
        return out

    def put_many(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        """Best effort: a full disk or a locked file costs the next run its cache hits, never
        this run its result (``write_error`` says what happened)."""
        now = time.time()
        rows = [
            (model, h, int(v.size), np.ascontiguousarray(v, dtype=np.float32).tobytes(), now)
            for h, v in vectors.items()
        ]
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?)", rows)
        except sqlite3.Error as exc:
            self.write_error = f"the embedding cache could not be written ({exc})"

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self._db.execute(
            "SELECT COUNT(*) FROM embeddings WHERE model = ?", (model,)
        ).fetchone()[0]

    def close(self) -> None:
        self._db.close()


# -- layer 2: semantic query cache -----------------------------------------------------------------

NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor without except cannot n't isn't aren't wasn't "
    "weren't doesn't don't didn't won't".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)?")


def key_terms(text: str) -> frozenset[str]:
    """What a paraphrase must keep and a hard negative usually changes: negation cues, numbers,
    and capitalised words that do not start a sentence (names)."""
    out: set[str] = set()
    for m in _WORD.finditer(text):
        w = m.group(0)
        lw = w.lower()
        before = text[: m.start()].rstrip()
        starts_sentence = not before or before[-1] in ".!?:"
        if lw in NEGATIONS or lw.endswith("n't"):
            out.add("<neg>")
        elif w[0].isdigit():
            out.add(w)
        elif w[0].isupper() and not starts_sentence and len(w) > 1:
            out.add(lw)
    return frozenset(out)


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class Lookup:
    hit: bool
    how: str | None = None  # "exact" | "semantic"
    entry: int | None = None
    similarity: float | None = None
    guard_blocked: bool = False  # similar enough, but the key terms differ


@dataclass
class _Entry:
    text: str
    vec: np.ndarray
    terms: frozenset[str]
    value: dict[str, Any]


@dataclass
class QueryCache:
    threshold: float = 0.95
    guard: bool = True
    max_entries: int = 10_000
    version: str | None = None
    _entries: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    _exact: dict[str, int] = field(default_factory=dict)
    _next: int = 0
    _mat: np.ndarray | None = None
    _ids: list[int] = field(default_factory=list)

    def use_version(self, version: str) -> bool:
        """Bind to an index version; returns True when that emptied the cache."""
        changed = self.version is not None and version != self.version
        if changed:
            self.clear()
        self.version = version
        return changed

    def clear(self) -> None:
        self._entries.clear()
        self._exact.clear()
        self._mat = None
        self._ids = []

    def __len__(self) -> int:
        return len(self._entries)

    def lookup_exact(self, text: str) -> Lookup:
        k = self._exact.get(normalise(text))
        if k is None or k not in self._entries:
            return Lookup(False)
        self._touch(k)
        return Lookup(True, "exact", k, 1.0)

    def lookup(self, text: str, vec: np.ndarray) -> Lookup:
        exact = self.lookup_exact(text)
        if exact.hit or not self._entries:
            return exact
        mat = self._matrix()
        sims = mat @ vec.astype(np.float32)
        i = int(sims.argmax())
        sim = float(sims[i])
        if sim < self.threshold:
            return Lookup(False, similarity=sim)
        k = self._ids[i]
        if self.guard and self._entries[k].terms != key_terms(text):
            return Lookup(False, similarity=sim, guard_blocked=True)
        self._touch(k)
        return Lookup(True, "semantic", k, sim)

    def value(self, k: int) -> dict[str, Any]:
        return self._entries[k].value

    def put(self, text: str, vec: np.ndarray, value: dict[str, Any]) -> int:
        k = self._next
        self._next += 1
        self._entries[k] = _Entry(text, vec.astype(np.float32), key_terms(text), value)
        self._exact[normalise(text)] = k
        while len(self._entries) > self.max_entries:
            old, e = self._entries.popitem(last=False)
            if self._exact.get(normalise(e.text)) == old:
                del self._exact[normalise(e.text)]
        self._mat = None
        return k

    def _touch(self, k: int) -> None:
        self._entries.move_to_end(k)

    def _matrix(self) -> np.ndarray:
        if self._mat is None:
            self._ids = list(self._entries)
            self._mat = np.stack([self._entries[k].vec for k in self._ids])
        return self._mat
