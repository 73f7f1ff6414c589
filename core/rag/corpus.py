"""A retrieval corpus: documents from a folder of .txt/.md files, a JSONL file, or the demo, cut
into overlapping word windows (chunks), each named by a content hash.

The content hash is what every cache keys on: a chunk whose text did not change keeps its hash
and so its cached embedding; a chunk whose text changed gets a new hash and can never be served a
stale vector.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from wattlab.core.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
JSONL_TEXT_FIELDS = ("text", "content", "body", "document")


@dataclass(frozen=True)
class Chunk:
    id: str  # "doc#index": stable across runs for an unchanged corpus
    doc: str
    text: str
    content_hash: str


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_documents(source: str, demo_towns: int = 240, demo_seed: int = 7) -> list[tuple[str, str]]:
    """(document id, text) pairs. ``source`` is "demo", a folder or a .jsonl file."""
    if source == "demo":
        from wattlab.core.rag.demo_corpus import documents

        return documents(demo_towns, demo_seed)
    path = Path(source)
    if not path.exists():
        raise DataError(f"corpus not found: {path}")
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() == ".jsonl":
        return _jsonl(path)
    raise DataError(
        f"unsupported corpus {path.name}: give a folder of .txt/.md files or a .jsonl file"
    )


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _folder(root: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"{root} holds no .txt or .md files")
    docs = [(str(p.relative_to(root)), _decode(p)) for p in files]
    docs = [(d, t) for d, t in docs if t.strip()]
    if not docs:
        raise DataError(f"every .txt/.md file in {root} is empty")
    return docs


def _jsonl(path: Path) -> list[tuple[str, str]]:
    from wattlab.core.models.datasets import jsonl_objects

    docs = []
    for n, rec in jsonl_objects(path.name, _decode(path)):
        # The first of the text fields that holds a string.
        text = next((v for f in JSONL_TEXT_FIELDS if isinstance(v := rec.get(f), str)), None)
        if text is None:
            raise DataError(
                f"{path.name} line {n} has no text field (one of {', '.join(JSONL_TEXT_FIELDS)})"
            )
        doc_id = str(rec.get("id") or rec.get("title") or f"line{n}")
        if text.strip():
            docs.append((doc_id, text))
    if not docs:
        raise DataError(f"{path.name} holds no documents")
    return docs


def chunk_documents(docs: list[tuple[str, str]], words: int, overlap: int) -> list[Chunk]:
    """Word windows of ``words`` with ``overlap`` words shared between neighbours: simple and
    tokenizer-independent, so the same corpus chunks the same for every embedding model."""
    if words < 1 or not 0 <= overlap < words:
        raise DataError(
            f"chunking needs words >= 1 and 0 <= overlap < words, got {words}/{overlap}"
        )
    out: list[Chunk] = []
    step = words - overlap
    for doc, text in docs:
        toks = text.split()
        starts = range(0, max(len(toks) - overlap, 1), step)
        for i, s in enumerate(starts):
            piece = " ".join(toks[s : s + words])
            out.append(Chunk(f"{doc}#{i}", doc, piece, content_hash(piece)))
    return out
