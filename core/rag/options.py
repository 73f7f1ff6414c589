"""The RAG workload's settings (``RunSpec.rag``), validated before anything starts.

The generator is ``RunSpec.model`` and the corpus ``RunSpec.dataset`` (each ``demo`` or a path),
so a RAG run is stored, compared and repeated like any other session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from wattlab.core.errors import SpecError


@dataclass(frozen=True)
class RagOptions:
    encoder: str = "demo"  # "demo" or a local encoder folder
    queries: int = 1000
    repeat_rate: float = 0.5
    paraphrase_share: float = 0.5
    negative_rate: float = 0.1
    top_k: int = 3  # chunks retrieved per query
    context_chunks: int = 1  # of those, how many go into the prompt
    max_new_tokens: int = 8
    chunk_words: int = 80
    chunk_overlap: int = 16
    index: str = "auto"
    queries_file: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RagOptions:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise SpecError(f"unknown RAG options: {', '.join(sorted(unknown))}")
        return cls(**d).validate()

    def validate(self) -> RagOptions:
        for name in ("queries", "top_k", "context_chunks", "max_new_tokens", "chunk_words"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise SpecError(f"{name.replace('_', ' ')} must be a positive integer, got {v}")
        if self.context_chunks > self.top_k:
            raise SpecError(
                f"context chunks ({self.context_chunks}) cannot exceed top-k ({self.top_k})"
            )
        if not 0 <= self.chunk_overlap < self.chunk_words:
            raise SpecError(
                f"chunk overlap must be 0 or more and below chunk words ({self.chunk_words}), "
                f"got {self.chunk_overlap}"
            )
        for name in ("repeat_rate", "paraphrase_share", "negative_rate"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise SpecError(f"{name.replace('_', ' ')} must be between 0 and 1, got {v}")
        if self.repeat_rate + self.negative_rate > 1:
            raise SpecError(
                f"repeat rate ({self.repeat_rate}) plus negative rate ({self.negative_rate}) "
                "cannot exceed 1"
            )
        from wattlab.core.rag.index import KINDS

        if self.index not in KINDS:
            raise SpecError(f"index must be one of {', '.join(KINDS)}, got {self.index!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
