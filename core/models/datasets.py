"""Datasets from the user's files (CSV, TSV, JSONL, plain text) or the built-in demo.

Columns are auto-detected from common names and can be named explicitly; every way a file can be
unusable (empty, not UTF-8, missing column, one class only) is a specific ``DataError``.

A classification dataset can also carry a sensitive attribute (``--sensitive-column``): its value
per eval item, aligned with the labels, is what the fairness figures group by.
"""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wattlab.core.errors import DataError
from wattlab.core.fileio import loads

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "message", "body", "input")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "intent", "sentiment", "y")
# An item whose sensitive attribute is empty, null or absent: a group of its own, never dropped
# (dropping it would hide exactly the items a dataset failed to describe).
MISSING_GROUP = "(missing)"


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
    eval_groups: list[str] | None = None  # the sensitive attribute per eval item, if asked for

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class TextData:
    """Plain text for causal language models, evaluated by perplexity."""

    train_texts: list[str]
    eval_texts: list[str]
    source: str


def _check_file(path: Path) -> None:
    """A dataset path that exists and is a file."""
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        raise DataError(f"dataset is a folder, expected a .csv, .tsv, .jsonl or .txt file: {path}")


def _read_text(path: Path) -> str:
    _check_file(path)
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


def _bad_byte_offset(path: Path) -> int:
    """Where ``path`` stops being UTF-8 (read again on the error path only, in chunks)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            offset += len(chunk)
    return offset


def _not_utf8(path: Path) -> DataError:
    return DataError(
        f"{path.name} is not UTF-8 text (bad byte at offset {_bad_byte_offset(path)}); "
        "re-save it as UTF-8"
    )


def _json_line(line: str, name: str, n: int) -> dict[str, object]:
    """One JSONL line as an object; every way it can fail names the file and the line."""
    obj = loads(line, f"{name} line {n}", DataError)
    if not isinstance(obj, dict):
        raise DataError(f"{name} line {n}: expected a JSON object per line")
    return obj


def jsonl_objects(name: str, text: str) -> list[tuple[int, dict[str, object]]]:
    """(line number, object) per non-empty line; a line that is not a JSON object is an error
    naming the file and the line (datasets, RAG corpora and query files alike). Lines end at
    "\n" only: U+2028, U+0085 or a form feed inside a string are text, not line breaks."""
    return [
        (n, _json_line(line, name, n)) for n, line in enumerate(text.split("\n"), 1) if line.strip()
    ]


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """:func:`jsonl_objects` streamed from the file, one line in memory at a time."""
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, _json_line(line, path.name, n)
        except UnicodeDecodeError:
            raise _not_utf8(path) from None


def _csv_rows(path: Path, delim: str) -> Iterator[tuple[int, dict[str, object]]]:
    """(row number, {column: value}) streamed with the csv module's own newline handling
    (quoted newlines stay in their field). A row with more fields than the header is an error
    naming it (a text with an unquoted delimiter would shift its label), never a column named
    None; a shorter row lacks its last columns, an error only if the text or label is one."""
    kind = path.suffix[1:].upper()
    sep = "a tab" if delim == "\t" else "a comma"
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delim)
        try:
            header = next((r for r in reader if r), None)
            if header is None or not any(c.strip() for c in header):
                raise DataError(f"{path.name} is empty")
            for n, row in enumerate((r for r in reader if r), 1):
                if len(row) > len(header):
                    raise DataError(
                        f"{path.name} row {n} has {len(row)} fields but the header has "
                        f"{len(header)}: put a text that contains {sep} in double quotes"
                    )
                yield n, dict(zip(header, row, strict=False))
        except csv.Error as exc:
            raise DataError(
                f"{path.name} is not valid {kind} (line {reader.line_num}): {exc}"
            ) from None
        except UnicodeDecodeError:
            raise _not_utf8(path) from None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """A labelled dataset's records, streamed: only what the caller keeps stays in memory."""
    _check_file(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _jsonl_rows(path)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    raise DataError(
        f"unsupported dataset format {suffix or '(no extension)'}: use .csv, .tsv or .jsonl "
        "for classification (.txt and .md files are plain text, for causal language models)"
    )


def columns_text(columns: list[str] | tuple[str, ...]) -> str:
    """A dataset's column names for a one-line message: a name with a line break or other
    control character (a mutated or hostile file) is shown quoted, escapes visible."""
    return ", ".join(c if c.isprintable() else repr(c) for c in columns)


def _pick(
    columns: list[str], wanted: str | None, names: tuple[str, ...], what: str, path: Path
) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(
                f"{path.name} has no column {wanted!r} (columns: {columns_text(columns)})"
            )
        return wanted
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise DataError(
        f"{path.name}: cannot tell which column is the {what} (columns: "
        f"{columns_text(columns)}); name it with --{what}-column"
    )


def no_sensitive_column(name: str, column: str, columns: list[str] | tuple[str, ...]) -> DataError:
    """The one sentence for a --sensitive-column the dataset lacks (preflight and worker)."""
    return DataError(
        f"{name} has no column {column!r} for --sensitive-column (columns: {columns_text(columns)})"
    )


def group_value(value: object) -> str:
    """A sensitive attribute's value as a group name; empty, null or absent is MISSING_GROUP."""
    text = "" if value is None else str(value).strip()
    return text or MISSING_GROUP


def _first_row(
    path: Path, rows: Iterator[tuple[int, dict[str, object]]]
) -> tuple[int, dict[str, object]]:
    """The first record, or the error that says the file has none."""
    first = next(rows, None)
    if first is None:
        raise DataError(
            f"{path.name} has a header but no rows"
            if path.suffix.lower() in (".csv", ".tsv")
            else f"{path.name} is empty (no JSON lines)"
        )
    return first


def dataset_columns(path: Path) -> list[str]:
    """The columns of a labelled dataset: the header of a CSV/TSV, the keys of a JSONL file's
    first record (the same columns the text and label are picked from)."""
    path = Path(path)
    rows = _rows(path)
    try:
        return list(_first_row(path, rows)[1].keys())
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # the generator's file, now rather than at garbage collection


def _texts_and_labels(
    path: Path,
    text_column: str | None,
    label_column: str | None,
    sensitive_column: str | None = None,
) -> tuple[list[str], list[str], str, list[str] | None]:
    """(texts, raw labels, label column, groups or None) streamed from ``path``: the other
    columns are never kept, so memory is that of the texts, not of a dict per row."""
    rows = _rows(path)
    first = _first_row(path, rows)
    columns = list(first[1].keys())
    tcol = _pick(columns, text_column, TEXT_NAMES, "text", path)
    lcol = _pick(columns, label_column, LABEL_NAMES, "label", path)
    if sensitive_column is not None and sensitive_column not in columns:
        raise no_sensitive_column(path.name, sensitive_column, columns)
    texts: list[str] = []
    raw_labels: list[str] = []
    groups: list[str] | None = [] if sensitive_column is not None else None
    for n, r in itertools.chain([first], rows):
        t, lab = r.get(tcol), r.get(lcol)
        if t is None or lab is None or str(lab).strip() == "":
            raise DataError(f"{path.name} row {n}: missing {tcol if t is None else lcol}")
        texts.append(str(t))
        raw_labels.append(str(lab).strip())
        if groups is not None:
            groups.append(group_value(r.get(str(sensitive_column))))
    return texts, raw_labels, lcol, groups


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
    sensitive_column: str | None = None,
) -> ClassificationData:
    path = Path(path)
    texts, raw_labels, lcol, groups = _texts_and_labels(
        path, text_column, label_column, sensitive_column
    )
    names = sorted(
        set(raw_labels),
        key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s),
    )
    if len(names) < 2:
        raise DataError(
            f"{path.name}: column {lcol!r} has a single class ({names[0]!r}); "
            "classification needs at least two"
        )
    if len(texts) < 4:
        raise DataError(f"{path.name} has {len(texts)} rows; at least 4 are needed to split")
    index = {n: i for i, n in enumerate(names)}
    labels = [index[x] for x in raw_labels]
    return _split_data(
        texts, labels, names, f"{path}", eval_fraction, seed, holdout_fraction, groups
    )


def _split_data(
    texts: list[str],
    labels: list[int],
    names: list[str],
    source: str,
    eval_fraction: float,
    seed: int,
    holdout_fraction: float,
    groups: list[str] | None = None,
) -> ClassificationData:
    """Train/eval (and holdout) splits; ``groups``, one per text, follow the eval split."""
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
        [groups[i] for i in ev] if groups is not None else None,
    )


# The demo dataset's columns, as a file of it would have them (demo_data.py).
DEMO_COLUMNS = ("text", "label", "group")


def check_demo_column(column: str) -> None:
    """Refuse a --sensitive-column the demo dataset lacks (it has one attribute: ``group``)."""
    from wattlab.core.models.demo_data import GROUP_COLUMN

    if column != GROUP_COLUMN:
        raise no_sensitive_column("the demo dataset", column, DEMO_COLUMNS)


def load_demo(
    n: int = 5000,
    seed: int = 13,
    eval_fraction: float = 0.2,
    holdout_fraction: float = 0.0,
    sensitive_column: str | None = None,
) -> ClassificationData:
    from wattlab.core.models.demo_data import CLASSES, VERSION, generate_rows

    if sensitive_column is not None:
        check_demo_column(sensitive_column)
    rows = generate_rows(n, seed)
    index = {c: i for i, c in enumerate(CLASSES)}
    return _split_data(
        [t for t, _, _ in rows],
        [index[lab] for _, lab, _ in rows],
        list(CLASSES),
        f"demo v{VERSION} (n={n}, seed={seed})",
        eval_fraction,
        0,
        holdout_fraction,
        [g for _, _, g in rows] if sensitive_column is not None else None,
    )


def _jsonl_texts(path: Path, text_column: str | None) -> list[str]:
    """The non-empty texts of a JSONL corpus, streamed."""
    rows = _rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path.name} has no rows")
    tcol = _pick(list(first[1].keys()), text_column, TEXT_NAMES, "text", path)
    texts = (str(r.get(tcol, "")) for _, r in itertools.chain([first], rows))
    return [t for t in texts if t.strip()]


def load_text(
    path: Path, text_column: str | None = None, eval_fraction: float = 0.1, seed: int = 0
) -> TextData:
    """Plain text (one document per blank-line-separated paragraph) or JSONL with a text field."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        docs = _jsonl_texts(path, text_column)
    elif path.suffix.lower() in (".txt", ".md", ""):
        text = _read_text(path).replace("\r\n", "\n").replace("\r", "\n")  # Windows, old Mac
        docs = [p.strip() for p in text.split("\n\n") if p.strip()]
    else:
        raise DataError(f"unsupported text dataset {path.suffix}: use .txt or .jsonl")
    if len(docs) < 2:
        raise DataError(
            f"{path.name}: need at least 2 documents (paragraphs or rows), found {len(docs)}"
        )
    train, ev = split(len(docs), eval_fraction, seed)
    return TextData([docs[i] for i in train], [docs[i] for i in ev], str(path))
