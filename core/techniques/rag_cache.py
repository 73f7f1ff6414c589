"""The RAG retrieval cache as a technique: which layers are on, and how strict the semantic
layer is. The RAG session (``sessions/rag.py``) does the caching; this declares the parameters,
where it applies, and describes what was switched on. What it saves is measured by comparing a
run with it against the same query stream without it."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register

LAYERS = ("embed", "query", "prefix")


@register
class RagCache(Technique):
    name = "rag-cache"
    label = "RAG retrieval cache"
    order = 70
    summary = (
        "Reuse chunk embeddings, retrieval results/answers of similar queries, and the prompt "
        "prefix's KV cache"
    )
    params = (
        Param(
            "layers",
            tuple,
            LAYERS,
            "cache layers, any of embed, query, prefix (joined by + or ,)",
            choices=LAYERS,
        ),
        Param(
            "threshold",
            float,
            0.95,
            "query layer: cosine similarity a cached query needs to be reused",
            min=0.5,
            max=1.0,
        ),
        Param("answers", bool, True, "query layer: reuse the answer too, not only retrieval"),
        Param(
            "guard",
            bool,
            True,
            "query layer: a hit must keep the negations, numbers and names of the cached query",
        ),
        Param(
            "max_entries", int, 10_000, "query layer: entries kept (least recently used go)", min=1
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode != "rag":
            return False, "applies to retrieval-augmented generation sessions (`wattlab rag`)"
        if not params.get("layers"):
            return False, "no cache layer chosen: give layers=embed,query,prefix or a subset"
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if "query" in params["layers"] and not params["guard"]:
            return (
                "the query layer runs without its guard: negated or name-swapped questions "
                "can be served a cached answer (counted as false hits)"
            )
        return None
