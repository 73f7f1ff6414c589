"""The runs table of the app, without Qt: rows, cells, sort keys, grouping and filtering.

Every stored run becomes one row of the same columns (model, mode, techniques, energy per item
with its label, change against the baseline, accuracy, ...), read in one store query however
many runs there are. A comparison's session runs (its repeats) are grouped under it as children;
sessions in no comparison stay at the top level. The filter box matches any column; a term
``column:text`` matches one column and ``column>number`` (also <, >=, <=, =) compares a
numeric one, so ``mode:train tag:paper delta<0`` finds what a researcher looks for.

Unknown values are "-", never 0; an energy figure always carries its label (measured,
integrated, estimated).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from wattlab.core import protocol
from wattlab.core.measure.series import total_power
from wattlab.core.measure.store import Annotation, RunStore, RunSummary
from wattlab.core.report import POINT_METRICS
from wattlab.core.report import text as units
from wattlab.core.report.command import techniques_text
from wattlab.core.results import Verdict

DEFAULT_LIMIT = 500

# What the table reads from each stored result (name -> JSON path), in the one listing query.
PATHS: dict[str, str] = {
    "per_item_j": "$.energy_per_item_j",
    "phase_j": "$.measured_phase.gross_j",
    "phase_label": "$.measured_phase.label",
    "total_j": "$.total.gross_j",
    "total_label": "$.total.label",
    "accuracy": "$.session.metrics.accuracy",
    "verdicts": "$.verdicts",
    "per_run": "$.per_run",
    "pairs": "$.pairs_completed",
    "headline": "$.headline",
}


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    numeric: bool = False  # sorted by value, and comparable in the filter (delta<0)
    aliases: tuple[str, ...] = ()
    tip: str = ""


# The figures come right after the run's identity, so they stay in view in a narrow window.
COLUMNS: tuple[Column, ...] = (
    Column("id", "id", True),
    Column("name", "name", tip="your name for the run (edit it below the table)"),
    Column("kind", "kind", tip="session, comparison or profile; a repeat says its side"),
    Column("status", "status"),
    Column(
        "per_item",
        "energy/item",
        True,
        ("energy_per_item", "epi"),
        "energy per item over the measured phase, with how it was obtained; a comparison "
        "shows the optimized side's median",
    ),
    Column(
        "delta",
        "Δ vs baseline",
        True,
        ("change",),
        "a comparison: its primary verdict (median paired change and verdict); a repeat: its "
        "own value of that metric against the baseline side's median",
    ),
    Column("accuracy", "accuracy", True, ("acc",), "a comparison: the optimized median"),
    Column("model", "model"),
    Column("dataset", "dataset", aliases=("data",)),
    Column("mode", "mode"),
    Column("techniques", "techniques", aliases=("technique", "tech")),
    Column("energy", "energy", True, tip="gross energy of the measured phase (profile: total)"),
    Column("duration", "duration", True, tip="wall time of the whole run"),
    Column("tags", "tags", aliases=("tag",)),
    Column("label", "label", tip="the label recorded with the run"),
    Column("date", "date", True, ("started",)),
    Column("notes", "notes", aliases=("note",)),
)
KEYS = tuple(c.key for c in COLUMNS)
_BY_NAME = {n.lower(): c for c in COLUMNS for n in (c.key, c.title, *c.aliases)}


@dataclass(frozen=True)
class Cell:
    """What one column shows for a run: the text, the value it sorts by (a number for numeric
    columns, lower-case text otherwise; None sorts last) and an optional tooltip."""

    text: str
    sort: float | str | None = None
    tip: str | None = None


@dataclass
class RunsRow:
    """One run in the table, with its repeats as children when it is a comparison."""

    run_id: int
    kind: str
    status: str
    spec: dict[str, Any]
    annotation: Annotation
    cells: dict[str, Cell]
    children: list[RunsRow] = field(default_factory=list)
    side: str | None = None  # baseline | optimized, for a comparison's repeat
    energy_label: str | None = None  # how its energy was obtained (measured, estimated, ...)
    matched_by_children: bool = False  # kept by the filter only for some of its children

    def text(self, key: str) -> str:
        return self.cells[key].text

    def ids(self) -> list[int]:
        """This run and its children, parent first."""
        return [self.run_id, *(c.run_id for c in self.children)]


# -- building ------------------------------------------------------------------------------------
def load_rows(store: RunStore, limit: int = DEFAULT_LIMIT) -> list[RunsRow]:
    """The newest ``limit`` runs as table rows, repeats grouped under their comparison: one
    store query, whatever the number of runs."""
    return build_rows(store.summaries(list(PATHS.values()), limit))


def build_rows(summaries: Iterable[RunSummary]) -> list[RunsRow]:
    """Rows from store summaries (newest first), repeats grouped under their comparison."""
    summaries = list(summaries)
    fields_of = {s.row.id: _named(s) for s in summaries}
    membership = _membership(summaries, fields_of)
    rows: dict[int, RunsRow] = {}
    for s in summaries:
        member = membership.get(s.row.id)
        parent = fields_of.get(member[0]) if member else None
        rows[s.row.id] = _row(s, fields_of[s.row.id], member, parent)
    top: list[RunsRow] = []
    for s in summaries:
        member = membership.get(s.row.id)
        if member is not None and member[0] in rows:
            rows[member[0]].children.append(rows[s.row.id])
        else:
            top.append(rows[s.row.id])
    for r in rows.values():
        r.children.sort(key=lambda c: c.run_id)  # the order they ran in
    return top


def _named(s: RunSummary) -> dict[str, Any]:
    """A summary's extracted values by PATHS name."""
    return {name: s.fields.get(path) for name, path in PATHS.items()}


def _membership(
    summaries: list[RunSummary], fields_of: dict[int, dict[str, Any]]
) -> dict[int, tuple[int, str, int]]:
    """Run id -> (comparison id, side, pair index) for every listed comparison's repeats; a run
    in two comparisons goes under the newer one."""
    out: dict[int, tuple[int, str, int]] = {}
    for s in summaries:
        if s.row.kind != "comparison":
            continue
        for entry in _list(fields_of[s.row.id]["per_run"]):
            rid = entry.get("run_id") if isinstance(entry, dict) else None
            if isinstance(rid, int) and rid != s.row.id and rid not in out:
                index = entry.get("index")
                out[rid] = (s.row.id, str(entry.get("side") or ""), _int(index))
    return out


def _row(
    s: RunSummary,
    f: dict[str, Any],
    member: tuple[int, str, int] | None,
    parent: dict[str, Any] | None,
) -> RunsRow:
    r = s.row
    spec = r.spec if isinstance(r.spec, dict) else {}
    shown = _shown_spec(r.kind, spec)
    cells = {
        "id": Cell(str(r.id), float(r.id)),
        "name": _text_cell(s.annotation.name),
        "kind": _kind_cell(r.kind, member),
        "status": Cell(r.status, r.status.lower(), _status_tip(r.message, f.get("headline"))),
        "model": _path_cell(shown.get("model")),
        "dataset": _path_cell(shown.get("dataset")),
        "mode": _text_cell(shown.get("mode")),
        "techniques": _techniques_cell(r.kind, spec, shown),
        "duration": _duration_cell(r.created_at, r.ended_at),
        "tags": _text_cell(", ".join(s.annotation.tags) or None),
        "label": _text_cell(r.label),
        "date": _date_cell(r.created_at),
        "notes": _notes_cell(s.annotation.notes),
    }
    if r.kind == "comparison":
        cells.update(_comparison_cells(f))
    else:
        cells.update(_run_cells(f, r.id, parent))
    label = f.get("phase_label") or f.get("total_label")
    return RunsRow(
        r.id,
        r.kind,
        r.status,
        spec,
        s.annotation,
        cells,
        side=_side(member),
        energy_label=label if isinstance(label, str) and r.kind != "comparison" else None,
    )


def _shown_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec whose model, dataset and mode a row shows: a comparison's optimized side
    (both sides share them; the techniques are the optimized side's)."""
    if kind == "comparison":
        opt = spec.get("optimized")
        return opt if isinstance(opt, dict) else {}
    return spec


def _run_cells(f: dict[str, Any], run_id: int, parent: dict[str, Any] | None) -> dict[str, Cell]:
    """A session's or a profile's own figures; a repeat's change against its comparison's
    baseline median of the primary metric."""
    per_item, label = _number(f["per_item_j"]), f["phase_label"]
    energy, energy_label = _number(f["phase_j"]), label
    if energy is None:  # a profile run: no measured phase, its total counts
        energy, energy_label = _number(f["total_j"]), f["total_label"]
    acc = _number(f["accuracy"])
    return {
        "per_item": _energy_cell(per_item, label, units.per_item_joules),
        "energy": _energy_cell(energy, energy_label, units.joules),
        "accuracy": Cell(units.number_or_dash(acc, ".3f"), acc),
        "delta": _repeat_delta(run_id, parent),
    }


def _comparison_cells(f: dict[str, Any]) -> dict[str, Cell]:
    """A comparison's figures: the optimized side's medians, and its primary verdict."""
    verdicts = _verdicts(f["verdicts"])
    by_metric = {v.metric: v for v in verdicts}
    per_item = by_metric.get("energy_per_item_j")
    energy = by_metric.get("energy_j")
    acc = by_metric.get("accuracy")
    acc_value = acc.optimized_median if acc else None
    return {
        "per_item": _median_cell(per_item, units.per_item_joules),
        "energy": _median_cell(energy, units.joules),
        "accuracy": Cell(units.number_or_dash(acc_value, ".3f"), _number(acc_value)),
        "delta": _verdict_cell(_primary(verdicts), f.get("pairs")),
    }


def _verdicts(value: object) -> list[Verdict]:
    """A stored comparison's verdicts; one that cannot be read (hand-edited, damaged) is left
    out rather than failing the whole table."""
    out = []
    for v in _list(value):
        try:
            out.append(Verdict.from_dict(v))
        except (TypeError, ValueError, AttributeError):
            continue
    return out


def _primary(verdicts: list[Verdict]) -> Verdict | None:
    """The verdict a comparison is judged by (stored before roles: energy per item)."""
    return next((v for v in verdicts if v.role == "primary"), None) or next(
        (v for v in verdicts if v.metric == "energy_per_item_j"), None
    )


def _verdict_cell(v: Verdict | None, pairs: object) -> Cell:
    if v is None:
        return Cell("-")
    change = units.fmt_delta(v)
    value = v.delta * 100 if v.metric in POINT_METRICS and v.delta is not None else v.delta_pct
    tip = f"{v.label}: {v.verdict}"
    if v.ratio_ci is not None and v.metric not in POINT_METRICS:
        lo, hi = v.ratio_ci
        tip += f"; 95% interval {100 * (lo - 1):+.1f}% to {100 * (hi - 1):+.1f}%"
    tip += f"; {pairs if isinstance(pairs, int) else '?'} pair(s)"
    if v.source:
        tip += f" ({v.source})"
    return Cell(f"{change} {v.verdict}" if change != "-" else v.verdict, _number(value), tip)


def _repeat_delta(run_id: int, parent: dict[str, Any] | None) -> Cell:
    """A repeat's own value of its comparison's primary metric against the baseline side's
    median: the run-to-run spread the verdict was judged against, run by run."""
    if parent is None:
        return Cell("-")
    verdicts = _verdicts(parent["verdicts"])
    primary = _primary(verdicts)
    entry = next(
        (e for e in _list(parent["per_run"]) if isinstance(e, dict) and e.get("run_id") == run_id),
        {},
    )
    metrics = entry.get("metrics")
    value = _number(metrics.get(primary.metric)) if primary and isinstance(metrics, dict) else None
    base = _number(primary.baseline_median) if primary else None
    if primary is None or value is None or base is None:
        return Cell("-")
    tip = f"{primary.label} of this run against the baseline median"
    if primary.metric in POINT_METRICS:
        pts = 100 * (value - base)
        return Cell(f"{pts:+.1f} pt", pts, tip)
    if base == 0:
        return Cell("-")
    pct = 100 * (value / base - 1)
    return Cell(f"{pct:+.1f}%", pct, tip)


def _median_cell(v: Verdict | None, fmt: Any) -> Cell:
    """A comparison's energy figure: the optimized side's median, labelled by the verdict."""
    value = _number(v.optimized_median) if v is not None else None
    return _energy_cell(value, v.source if v else None, fmt, "optimized median")


def _energy_cell(value: float | None, label: object, fmt: Any, what: str = "") -> Cell:
    """An energy figure with its label; "-" when unknown."""
    if value is None:
        return Cell("-")
    lbl = label if isinstance(label, str) and label else "label unknown"
    tip = f"{what}, {lbl}" if what else lbl
    return Cell(f"{fmt(value)} [{lbl}]", value, tip)


def _kind_cell(kind: str, member: tuple[int, str, int] | None) -> Cell:
    if member is None:
        return Cell(kind, kind)
    _, side, index = member
    text = f"{side} {index + 1}" if index >= 0 else side or kind
    return Cell(text, text.lower(), f"{kind}: {text} of comparison {member[0]}")


def _side(member: tuple[int, str, int] | None) -> str | None:
    return member[1] if member else None


def _techniques_cell(kind: str, spec: dict[str, Any], shown: dict[str, Any]) -> Cell:
    if kind == "profile":
        cmd = spec.get("command")
        text = " ".join(map(str, cmd)) if isinstance(cmd, list) and cmd else None
        return _text_cell(text)
    techs = shown.get("techniques")
    if not isinstance(techs, list):
        return Cell("-")
    text = techniques_text(techs) or ("A/A (none)" if kind == "comparison" else "none")
    return Cell(text, text.lower(), text)


def _path_cell(value: object) -> Cell:
    """A model or dataset: its file or folder name, the full path in the tooltip."""
    if not isinstance(value, str) or not value:
        return Cell("-")
    name = PurePath(value).name or value
    return Cell(name, name.lower(), value if name != value else None)


def _text_cell(value: object) -> Cell:
    if not isinstance(value, str) or not value:
        return Cell("-")
    return Cell(value, value.lower())


def _notes_cell(notes: str | None) -> Cell:
    if not notes:
        return Cell("-")
    first = notes.strip().splitlines()[0]
    more = len(notes.strip().splitlines()) > 1
    return Cell(first + (" ..." if more else ""), notes.lower(), notes)


def _status_tip(message: str | None, headline: object) -> str | None:
    return message or (headline if isinstance(headline, str) and headline else None)


def _duration_cell(start: float | None, end: float | None) -> Cell:
    s, e = _number(start), _number(end)
    if s is None or e is None or e < s:
        return Cell("-")
    return Cell(units.seconds(e - s), e - s)


def _date_cell(t: object) -> Cell:
    v = _number(t)
    try:
        text = time.strftime("%Y-%m-%d %H:%M", time.localtime(v)) if v is not None else "-"
    except (OverflowError, OSError, ValueError):
        text = "-"
    return Cell(text, v if text != "-" else None)


def _number(value: object) -> float | None:
    """A finite number, else None (a bool, text or NaN is no figure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# -- filtering -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    """One word of the filter: free text matches any column; ``column op value`` one column
    (``:`` contains, ``=`` equals, ``<``, ``<=``, ``>``, ``>=`` compare a numeric column)."""

    text: str
    column: str | None = None
    op: str = ":"


_TERM = re.compile(r"^([A-Za-z_Δ/ ]+?)(>=|<=|:|=|>|<)(.*)$", re.S)


def parse_filter(text: str) -> list[Term]:
    """The filter box's words (quotes keep spaces: ``name:"first try"``). A ``word:value``
    whose word is no column (a URL, a time) is free text."""
    try:
        words = shlex.split(text)
    except ValueError:  # an unclosed quote while typing
        words = text.split()
    terms = []
    for w in words:
        m = _TERM.match(w)
        col = _BY_NAME.get(m.group(1).strip().lower()) if m else None
        if m and col is not None and m.group(3):
            terms.append(Term(m.group(3).lower(), col.key, m.group(2)))
        elif w:
            terms.append(Term(w.lower()))
    return terms


def matches(row: RunsRow, terms: list[Term]) -> bool:
    """Whether ``row`` itself (not its children) satisfies every term."""
    return all(_matches(row, t) for t in terms)


def _matches(row: RunsRow, t: Term) -> bool:
    if t.column is None:
        hay = [c.text.lower() for c in row.cells.values()]
        hay += [row.annotation.notes.lower()] if row.annotation.notes else []
        return any(t.text in h for h in hay)
    cell = row.cells[t.column]
    if t.op == ":":
        return t.text in cell.text.lower() or (
            t.column == "notes" and t.text in (row.annotation.notes or "").lower()
        )
    numeric = next(c.numeric for c in COLUMNS if c.key == t.column)
    if numeric:
        return _compare(cell.sort, t.op, t.text)
    return t.op == "=" and cell.text.lower() == t.text


def _compare(value: float | str | None, op: str, text: str) -> bool:
    """A numeric cell against the filter's number ("5%" reads as 5); unknown never matches."""
    try:
        want = float(text.rstrip("%").strip())
    except ValueError:
        return False
    if not isinstance(value, float):
        return False
    return {
        "=": value == want,
        "<": value < want,
        "<=": value <= want,
        ">": value > want,
        ">=": value >= want,
    }[op]


def filter_rows(rows: list[RunsRow], text: str) -> list[RunsRow]:
    """The rows the filter keeps: a comparison that matches keeps all its repeats; one that
    does not is still shown, with only its matching repeats, when some of them match
    (``matched_by_children``, so the view expands it)."""
    terms = parse_filter(text)
    if not terms:
        return rows
    out = []
    for r in rows:
        if matches(r, terms):
            out.append(r)
            continue
        kids = [c for c in r.children if matches(c, terms)]
        if kids:
            out.append(dataclasses.replace(r, children=kids, matched_by_children=True))
    return out


def flatten(rows: list[RunsRow]) -> list[RunsRow]:
    """Every run at the top level (newest first), for a view without grouping; a repeat keeps
    its side in its kind column."""
    flat = [dataclasses.replace(r, children=[]) for r in _walk(rows)]
    return sorted(flat, key=lambda r: -r.run_id)


# -- what the buttons need -------------------------------------------------------------------
def parse_tags(text: str) -> list[str]:
    """The tags field: comma-separated; blanks dropped, each tag once."""
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def session_ids(selected: Iterable[int], rows: list[RunsRow]) -> list[int]:
    """The runs whose power an overlay draws: a selected comparison stands for its repeats
    (it has no samples of its own); each run once, in the order selected."""
    by_id = {r.run_id: r for r in _walk(rows)}
    out: list[int] = []
    for rid in selected:
        row = by_id.get(rid)
        ids = [c.run_id for c in row.children] if row and row.kind == "comparison" else [rid]
        out += [i for i in ids if i not in out]
    return out


def delete_warning(
    ids: list[int],
    members: dict[int, list[tuple[int, str, int]]],
    labels: dict[int, str | None],
) -> str:
    """The confirmation before deleting ``ids``: every comparison a deleted run belongs to is
    named (its charts, per-run table and reports lose the run), and a deleted comparison's
    repeats are said to stay."""
    gone = set(ids)
    lines = [
        f"Delete {len(ids)} run(s) ({_id_list(ids)}) and their samples? This cannot be undone."
    ]
    for cid, entries in sorted(members.items()):
        lost = [rid for rid, _, _ in entries if rid in gone]
        if lost and cid not in gone:
            name = f' "{labels[cid]}"' if labels.get(cid) else ""
            lines.append(
                f"Run {_id_list(lost)} belong{'s' if len(lost) == 1 else ''} to comparison "
                f"{cid}{name}: its charts, per-run table and reports will lose "
                f"{'it' if len(lost) == 1 else 'them'} (its stored verdicts stay as they "
                "were computed)."
            )
    for cid in sorted(gone & set(members)):
        kept = [rid for rid, _, _ in members[cid] if rid not in gone]
        if kept:
            lines.append(
                f"Comparison {cid}'s {len(kept)} repeat run(s) ({_id_list(kept)}) are kept; "
                "select them too to delete them."
            )
    return "\n\n".join(lines)


def _id_list(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _walk(rows: list[RunsRow]) -> Iterable[RunsRow]:
    for r in rows:
        yield r
        yield from r.children


def find(rows: list[RunsRow], run_id: int) -> RunsRow | None:
    """The row of ``run_id``, at the top level or a repeat."""
    return next((r for r in _walk(rows) if r.run_id == run_id), None)


# -- the power overlay -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """One run's total power over time for the overlay, aligned at the start of its measured
    phase (or of its samples when it has none: a profile run)."""

    run_id: int
    title: str
    t: np.ndarray
    w: np.ndarray
    aligned_at: str  # "measured phase" | "first sample"


def power_trace(store: RunStore, row: RunsRow) -> Trace:
    """``row``'s power from its stored samples; empty arrays when it has none."""
    t, w = total_power(store.samples(row.run_id))
    mode = row.spec.get("mode")
    mode = mode if isinstance(mode, str) else "infer"
    measured = set(protocol.measured_phases(mode))
    marks = [(pt, e.get("name")) for pt, k, e in store.events(row.run_id) if k == "phase"]
    start = next((pt for pt, name in marks if name in measured), None)
    if start is None:
        start, aligned = (float(t[0]) if t.size else 0.0), "first sample"
    else:
        aligned = "measured phase"
    return Trace(row.run_id, trace_title(row), t - start, w, aligned)


def trace_title(row: RunsRow) -> str:
    """The overlay legend of a run: its id, name (or label) and its energy label, so a
    measured trace is never mistaken for an estimated one."""
    name = row.annotation.name or (row.text("label") if row.text("label") != "-" else row.kind)
    return f"#{row.run_id} {name} [{row.energy_label or 'label unknown'}]"
