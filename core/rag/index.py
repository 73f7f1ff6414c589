"""Vector search over unit-length chunk embeddings (cosine = inner product).

Exact search is one matrix-vector product: for a few hundred thousand chunks it is fast and has
no recall loss, so it is the default. Beyond ``ANN_FROM`` chunks, ``auto`` uses FAISS's HNSW
graph (a maintained library, installed with ``pip install faiss-cpu``); its recall is reported by
comparing against exact search on a sample, because an approximate index that silently misses is
exactly the kind of saving WattLab must not hide.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wattlab.core.errors import SpecError

ANN_FROM = 200_000
KINDS = ("auto", "exact", "faiss")


class Index(Protocol):
    kind: str

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) of the ``k`` best rows for one query vector, best first."""
        ...


class ExactIndex:
    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ q.astype(np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]


class FaissIndex:
    kind = "faiss-hnsw"

    def __init__(self, vectors: np.ndarray, m: int = 32, ef_search: int = 64) -> None:
        import faiss

        v = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexHNSWFlat(v.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efSearch = ef_search
        self.index.add(v)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, idx = self.index.search(q.astype(np.float32)[None, :], k)
        keep = idx[0] >= 0
        return idx[0][keep], scores[0][keep]


def build_index(vectors: np.ndarray, kind: str = "auto") -> Index:
    if kind not in KINDS:
        raise SpecError(f"index must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "exact" or (kind == "auto" and len(vectors) < ANN_FROM):
        return ExactIndex(vectors)
    try:
        return FaissIndex(vectors)
    except ImportError:
        if kind == "faiss":
            raise SpecError(
                "index=faiss needs FAISS: pip install faiss-cpu (or use index=exact)"
            ) from None
        return ExactIndex(vectors)


def recall_vs_exact(index: Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Share of exact top-k results the index also returns (1.0 for the exact index)."""
    exact = ExactIndex(vectors)
    found = total = 0
    for q in queries:
        want = set(exact.search(q, k)[0].tolist())
        found += len(want & set(index.search(q, k)[0].tolist()))
        total += len(want)
    return found / total if total else 1.0
