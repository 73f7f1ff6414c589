"""The worker half of ``rag-cache``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/rag_cache.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.rag_cache import RagCache
from wattlab.core.worker.techniques.registry import Implementation, implements

LAYERS = ("embed", "query", "prefix")


@implements
class RagCacheImpl(Implementation, RagCache):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        layers = params["layers"]
        parts = []
        if "embed" in layers:
            parts.append("chunk embeddings cached by content hash and model")
        if "query" in layers:
            what = "retrieval and answers" if params["answers"] else "retrieval"
            guard = " with the negation/name guard" if params["guard"] else ", no guard"
            parts.append(f"{what} reused at similarity >= {params['threshold']}{guard}")
        if "prefix" in layers:
            parts.append("prompt prefix KV cache reused")
        return Applied(self.name, dict(params), "; ".join(parts))
