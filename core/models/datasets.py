"""Datasets from the user's files (CSV, TSV, JSONL, plain text) or the built-in demo.

Columns are auto-detected from common names and can be named explicitly; every way a file can be
unusable (empty, not UTF-8, missing column, one class only) is a specific ``DataError``.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from wattlab.core.errors import DataError

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "message", "body", "input")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "intent", "sentiment", "y")


@dataclass
class ClassificationData:
    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    label_names: list[str]
    source: str
    holdout_texts: list[str] | None = None  # calibration split, never the eval split
    holdout_labels: list[int] | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class TextData:
    """Plain text for causal language models, evaluated by perplexity."""

    train_texts: list[str]
    eval_texts: list[str]
    source: str


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        raise DataError(f"dataset is a folder, expected a .csv, .tsv, .jsonl or .txt file: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path.name} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8"
        ) from None
    if not text.strip():
        raise DataError(f"{path.name} is empty")
    return text


def jsonl_objects(name: str, text: str) -> list[tuple[int, dict[str, object]]]:
    """(line number, object) per non-empty line; a line that is not a JSON object is an error
    naming the file and the line (datasets, RAG corpora and query files alike)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {n} is not valid JSON: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{name} line {n}: expected a JSON object per line")
        out.append((n, obj))
    return out


def _records(path: Path) -> list[dict[str, object]]:
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return [obj for _, obj in jsonl_objects(path.name, text)]
    if suffix in (".csv", ".tsv"):
        delim = "\t" if suffix == ".tsv" else ","
        try:
            reader = csv.DictReader(text.splitlines(), delimiter=delim)
            rows = list(reader)
        except csv.Error as exc:
            raise DataError(f"{path.name} is not valid {suffix[1:].upper()}: {exc}") from None
        if reader.fieldnames is None:
            raise DataError(f"{path.name} has no header row")
        return rows
    raise DataError(
        f"unsupported dataset format {suffix or '(no extension)'}: use .csv, .tsv, .jsonl or .txt"
    )


def _pick(
    columns: list[str], wanted: str | None, names: tuple[str, ...], what: str, path: Path
) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path.name} has no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise DataError(
        f"{path.name}: cannot tell which column is the {what} (columns: "
        f"{', '.join(columns)}); name it with --{what}-column"
    )


def split(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = max(1, int(round(n * eval_fraction)))
    return idx[k:], idx[:k]


def load_classification(
    path: Path,
    text_column: str | None = None,
    label_column: str | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    holdout_fraction: float = 0.0,
) -> ClassificationData:
    path = Path(path)
    rows = _records(path)
    if not rows:
        raise DataError(f"{path.name} has a header but no rows")
    columns = list(rows[0].keys())
    tcol = _pick(columns, text_column, TEXT_NAMES, "text", path)
    lcol = _pick(columns, label_column, LABEL_NAMES, "label", path)
    texts: list[str] = []
    raw_labels: list[str] = []
    for n, r in enumerate(rows, 1):
        t, lab = r.get(tcol), r.get(lcol)
        if t is None or lab is None or str(lab).strip() == "":
            raise DataError(f"{path.name} row {n}: missing {tcol if t is None else lcol}")
        texts.append(str(t))
        raw_labels.append(str(lab).strip())
    names = sorted(
        set(raw_labels),
        key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s),
    )
    if len(names) < 2:
        raise DataError(
            f"{path.name}: column {lcol!r} has a single class ({names[0]!r}); "
            "classification needs at least two"
        )
    if len(rows) < 4:
        raise DataError(f"{path.name} has {len(rows)} rows; at least 4 are needed to split")
    index = {n: i for i, n in enumerate(names)}
    labels = [index[x] for x in raw_labels]
    return _split_data(texts, labels, names, f"{path}", eval_fraction, seed, holdout_fraction)


def _split_data(
    texts: list[str],
    labels: list[int],
    names: list[str],
    source: str,
    eval_fraction: float,
    seed: int,
    holdout_fraction: float,
) -> ClassificationData:
    train, ev = split(len(texts), eval_fraction, seed)
    hold: list[int] = []
    if holdout_fraction > 0:
        k = max(1, int(round(len(texts) * holdout_fraction)))
        hold, train = train[:k], train[k:]
    return ClassificationData(
        [texts[i] for i in train],
        [labels[i] for i in train],
        [texts[i] for i in ev],
        [labels[i] for i in ev],
        names,
        source,
        [texts[i] for i in hold] if hold else None,
        [labels[i] for i in hold] if hold else None,
    )


def load_demo(
    n: int = 5000, seed: int = 13, eval_fraction: float = 0.2, holdout_fraction: float = 0.0
) -> ClassificationData:
    from wattlab.core.models.demo_data import CLASSES, VERSION, generate

    rows = generate(n, seed)
    index = {c: i for i, c in enumerate(CLASSES)}
    return _split_data(
        [t for t, _ in rows],
        [index[lab] for _, lab in rows],
        list(CLASSES),
        f"demo v{VERSION} (n={n}, seed={seed})",
        eval_fraction,
        0,
        holdout_fraction,
    )


def load_text(
    path: Path, text_column: str | None = None, eval_fraction: float = 0.1, seed: int = 0
) -> TextData:
    """Plain text (one document per blank-line-separated paragraph) or JSONL with a text field."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = _records(path)
        if not rows:
            raise DataError(f"{path.name} has no rows")
        tcol = _pick(list(rows[0].keys()), text_column, TEXT_NAMES, "text", path)
        docs = [str(r.get(tcol, "")) for r in rows if str(r.get(tcol, "")).strip()]
    elif path.suffix.lower() in (".txt", ".md", ""):
        docs = [p.strip() for p in _read_text(path).split("\n\n") if p.strip()]
    else:
        raise DataError(f"unsupported text dataset {path.suffix}: use .txt or .jsonl")
    if len(docs) < 2:
        raise DataError(
            f"{path.name}: need at least 2 documents (paragraphs or rows), found {len(docs)}"
        )
    train, ev = split(len(docs), eval_fraction, seed)
    return TextData([docs[i] for i in train], [docs[i] for i in ev], str(path))
