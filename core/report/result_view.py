"""What the app's results view shows, worked out without Qt so it is testable in the fast tier.

The app only lays these rows and series out; every rule about what may be said lives here: a
cancelled comparison's incomplete pairs get no verdict, an untrained classification head gets
no accuracy verdict, a verdict's delta carries its 95% interval, and a run's figures carry their
source label. Unknown values are None and shown as "-".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wattlab.core.report import POINT_METRICS, VERDICT_COLOURS
from wattlab.core.report.text import fmt_delta, fmt_value, verdict_cells
from wattlab.core.results import (
    MIN_PAIRS,
    UNTRAINED_HEAD_FIX,
    UNTRAINED_HEAD_MARK,
    UNTRAINED_VERDICT,
    Comparison,
    RunResult,
    Verdict,
)

SIDES = ("baseline", "optimized")
QUALITY_ROWS = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"), ("perplexity", "Perplexity"))
# The stored results of a comparison's runs, by run id; a missing id or None: the run is gone.
Runs = Mapping[int, dict[str, Any] | None]
RUN_COLUMNS = [
    "Run",
    "Side",
    "Pair",
    "Status",
    "In verdict",
    "Energy per item",
    "Throughput",
    "Accuracy",
    "Source",
]


@dataclass(frozen=True)
class Row:
    """One row of the summary table: Metric, Baseline, Optimized, Delta, Verdict, Source and
    Note cells, the metric key, the verdict's colour (None: not coloured), and the delta's
    tooltip."""

    metric: str
    cells: list[str]
    colour: str | None = None
    delta_tip: str = ""  # the interval in words, for the delta cell

    @property
    def note(self) -> str:
        return self.cells[6]


@dataclass(frozen=True)
class RunRow:
    """One run of a comparison, as the "Each run" table shows it (cells in RUN_COLUMNS order)."""

    run_id: int
    cells: list[str]
    cancelled: bool
    deleted: bool


@dataclass(frozen=True)
class RepeatPoint:
    """One run's value of the chosen metric: x is its pair (1-based), tip the hover text."""

    x: int
    y: float
    run_id: int
    counted: bool
    tip: str


@dataclass(frozen=True)
class PowerSeries:
    """Total power over time, t in seconds from the start of the measured phase (from the first
    sample when the run has no phase marks); window: the measured phase, None when unknown."""

    t: np.ndarray
    w: np.ndarray
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class PhaseEnergy:
    """Energy per phase of one run, in the run's order, and the label the joules inherit."""

    phases: list[tuple[str, float]] = field(default_factory=list)
    label: str | None = None


# -- comparisons --------------------------------------------------------------------------------


def comparison_status(comp: Mapping[str, Any]) -> str:
    """completed | cancelled; comparisons stored before the key existed completed."""
    return str(comp.get("status") or "completed")


def min_pairs(comp: Mapping[str, Any]) -> int:
    """The pairs a verdict needs, as the comparison was judged (older ones: the default)."""
    return int((comp.get("statistics") or {}).get("min_pairs") or MIN_PAIRS)


def cancelled_text(comp: Mapping[str, Any]) -> str | None:
    """The line a stopped comparison shows above its table; None when it completed."""
    if comparison_status(comp) != "cancelled":
        return None
    done, planned = int(comp.get("pairs_completed") or 0), comp.get("repeats")
    text = (
        f"Cancelled: {done} of {'?' if planned is None else planned} pairs completed; "
        "no verdict on incomplete pairs"
    )
    if done < min_pairs(comp):
        text += f" (fewer than {min_pairs(comp)} complete pairs: too few repeats for a verdict)"
    return text + "."


def ci_text(v: Verdict) -> str:
    """The paired 95% interval of the change in words, as the headline gives it (the delta
    cell's tooltip); "" when there is none. For accuracy-like metrics the delta is in points
    but the interval is of the ratio, so it says "relative"."""
    if v.ratio_ci is None:
        return ""
    lo, hi = v.ratio_ci
    rel = " (relative)" if v.metric in POINT_METRICS else ""
    return f"95% interval of the change: {100 * (lo - 1):+.1f}% to {100 * (hi - 1):+.1f}%{rel}"


def delta_text(v: Verdict) -> str:
    """The delta with its 95% interval next to it, compact enough for a table cell (the
    column is titled "Delta [95% CI]"): a change is only as good as its interval."""
    if v.ratio_ci is None:
        return fmt_delta(v)
    lo, hi = v.ratio_ci
    rel = " rel." if v.metric in POINT_METRICS else ""
    return f"{fmt_delta(v)} [{100 * (lo - 1):+.1f}, {100 * (hi - 1):+.1f}%{rel}]"


def shown_verdict(
    v: Verdict, comp: Mapping[str, Any], untrained: bool = False
) -> tuple[str, str | None]:
    """(verdict text, colour or None). A verdict is never shown for what the comparison cannot
    support: an untrained head's quality, or a stopped comparison's metric with too few
    complete pairs (whatever an older core computed for it)."""
    if untrained and v.metric in POINT_METRICS:
        return UNTRAINED_VERDICT, None
    if comparison_status(comp) == "cancelled" and v.pairs < min_pairs(comp):
        return ("no complete pairs" if v.pairs == 0 else "too few repeats"), None
    return v.verdict, VERDICT_COLOURS.get(v.verdict)


def comparison_rows(comp: Mapping[str, Any], caveat: str | None = None) -> list[Row]:
    """The summary table of a comparison; ``caveat`` (an untrained head's) goes on its quality
    rows and takes their verdicts away."""
    rows = []
    for v in Comparison.from_dict(dict(comp)).verdicts:
        cells = verdict_cells(v)
        cells[3] = delta_text(v)
        cells[4], colour = shown_verdict(v, comp, caveat is not None)
        note = caveat if caveat and v.metric in POINT_METRICS else ""
        rows.append(Row(v.metric, [*cells, note], colour, ci_text(v)))
    return rows


def _status(pr: Mapping[str, Any], runs: Runs | None) -> str | None:
    """A run's status: its per_run entry's, else its stored result's; None when unknown."""
    if pr.get("status"):
        return str(pr["status"])
    res = (runs or {}).get(pr["run_id"])
    return str(res["status"]) if res and res.get("status") else None


def counted_runs(comp: Mapping[str, Any], runs: Runs | None = None) -> dict[int, bool | None]:
    """Per run id: whether it is in a verdict pair (a complete pair of completed runs that no
    re-run replaced); None when the statuses needed to tell are unknown."""
    per_run = comp.get("per_run") or []
    by_pair: dict[int, list[Mapping[str, Any]]] = {}
    for pr in per_run:
        if pr.get("replaced_by_pair") is None:
            by_pair.setdefault(pr["index"], []).append(pr)
    full = {i for i, prs in by_pair.items() if {p["side"] for p in prs} >= set(SIDES)}
    # Without statuses: every full pair counted exactly when as many pairs counted as are full.
    all_counted = len(full) == int(comp.get("pairs_completed") or 0)
    out: dict[int, bool | None] = {}
    for pr in per_run:
        i = pr["index"]
        statuses = [_status(p, runs) for p in by_pair.get(i, [])]
        if pr.get("replaced_by_pair") is not None or i not in full:
            out[pr["run_id"]] = False
        elif any(s not in (None, "completed") for s in statuses):
            out[pr["run_id"]] = False
        else:
            out[pr["run_id"]] = True if None not in statuses or all_counted else None
    return out


def missing_runs(
    comp: Mapping[str, Any], missing: Iterable[int] | None = None, runs: Runs | None = None
) -> list[int]:
    """The comparison's runs that are no longer stored, in the order they ran: those the
    window found ``missing``, and those ``runs`` (the stored results looked up) lacks."""
    gone = set(missing or ())
    if runs is not None:
        gone |= {rid for rid, res in runs.items() if not res}
        gone |= {pr["run_id"] for pr in comp.get("per_run") or [] if pr["run_id"] not in runs}
    return [pr["run_id"] for pr in comp.get("per_run") or [] if pr["run_id"] in gone]


def deleted_text(missing: Sequence[int]) -> str | None:
    """What a comparison whose runs were deleted can no longer show (its power traces and the
    report's chart page are drawn from the runs); None when none is missing. Its tables and
    per-repeat charts come from the figures stored with the comparison itself."""
    if not missing:
        return None
    ids = ", ".join(str(i) for i in missing)
    one = len(missing) == 1
    return (
        f"Run{'' if one else 's'} {ids} of this comparison {'was' if one else 'were'} deleted: "
        "charts drawn from the runs (power over time, the report's chart page) are unavailable. "
        "The tables and per-repeat chart show the figures stored with the comparison."
    )


def per_run_rows(
    comp: Mapping[str, Any], runs: Runs | None = None, missing: Iterable[int] = ()
) -> list[RunRow]:
    """Every run of the comparison with its status, whether its pair counts, and whether it
    was deleted (``missing``, or absent from ``runs``)."""
    counted = counted_runs(comp, runs)
    gone = set(missing_runs(comp, missing, runs))
    out = []
    for pr in comp.get("per_run") or []:
        rid, m = pr["run_id"], pr.get("metrics") or {}
        inside = counted.get(rid)
        status = _status(pr, runs)
        if status is None and inside and comparison_status(comp) == "completed":
            status = "completed"  # a counted run of a finished comparison ran to its end
        deleted = rid in gone
        shown = (status or "-") + (" (deleted)" if deleted else "")
        cells = [
            str(rid),
            str(pr.get("side", "-")),
            str(int(pr.get("index", 0)) + 1),
            shown,
            "-" if inside is None else ("yes" if inside else "no"),
            fmt_value(m.get("energy_per_item_j"), "J"),
            fmt_value(m.get("throughput_items_s"), "items/s"),
            fmt_value(m.get("accuracy"), ""),
            pr.get("label") or "-",
        ]
        out.append(RunRow(rid, cells, status == "cancelled", deleted))
    return out


def metric_choices(comp: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metric, label) of the verdicts that have a value in at least one run."""
    per_run = comp.get("per_run") or []
    return [
        (v.metric, v.label)
        for v in Comparison.from_dict(dict(comp)).verdicts
        if any((pr.get("metrics") or {}).get(v.metric) is not None for pr in per_run)
    ]


def metric_unit(comp: Mapping[str, Any], metric: str) -> str:
    """The unit a comparison's verdict gives ``metric`` ("" when it has none)."""
    v = Comparison.from_dict(dict(comp)).verdict(metric)
    return v.unit if v else ""


def repeat_points(
    comp: Mapping[str, Any], metric: str, runs: Runs | None = None
) -> dict[str, list[RepeatPoint]]:
    """Every run's value of ``metric`` per side, at its pair, with a hover text that names
    the run, the value with its unit and source label, and whether it counts."""
    v = Comparison.from_dict(dict(comp)).verdict(metric)
    unit = v.unit if v else ""
    counted = counted_runs(comp, runs)
    out: dict[str, list[RepeatPoint]] = {side: [] for side in SIDES}
    for pr in comp.get("per_run") or []:
        y = (pr.get("metrics") or {}).get(metric)
        if y is None or pr.get("side") not in out:
            continue
        x = int(pr.get("index", 0)) + 1
        label = (pr.get("label") or v.source) if v and v.source else None
        tip = f"{pr['side']} run {pr['run_id']}, pair {x}: {fmt_value(y, unit)}"
        tip += f" [{label}]" if label else ""
        status = _status(pr, runs)
        if status and status != "completed":
            tip += f"; {status}"
        inside = counted.get(pr["run_id"]) is not False
        if not inside:
            tip += "; not in the verdict"
        out[pr["side"]].append(RepeatPoint(x, float(y), pr["run_id"], inside, tip))
    return out


# -- untrained heads -----------------------------------------------------------------------------


def _notes_of(result: Mapping[str, Any] | None) -> list[str]:
    """A session result's model notes (after and before its techniques)."""
    s = (result or {}).get("session") or {}
    return [
        str(n) for key in ("model", "model_before") for n in (s.get(key) or {}).get("notes") or []
    ]


def _comparison_notes(comp: Mapping[str, Any], runs: Runs | None) -> list[str]:
    """Model notes a comparison can reach: its own ``model_notes`` (a list, or one per side),
    the results exported with it (comparison.json's ``runs``), or the ``runs`` passed in."""
    own = comp.get("model_notes") or []
    groups = own.values() if isinstance(own, dict) else [own]
    notes = [str(n) for group in groups for n in group or []]
    for results in (comp.get("runs") or {}, runs or {}):
        for res in results.values():
            notes += _notes_of(res)
    return notes


def _mode(result: Mapping[str, Any]) -> str | None:
    spec = result.get("baseline_spec") or result.get("spec") or {}
    return spec.get("mode") or (result.get("session") or {}).get("mode")


def untrained_head_caveat(result: Mapping[str, Any], runs: Runs | None = None) -> str | None:
    """The caveat of a classifier scored with a freshly initialised head (a checkpoint without
    one, loaded for inference): its accuracy is that of random weights, not of the model, and
    a change in it is noise. ``result`` is a run's result or a comparison; None when the head
    was trained (a training session trains it) or no note says it is new. It says how to get a
    trained head (train with --save-model, measure that folder); older notes lacked that."""
    if _mode(result) == "train":
        return None
    notes = _comparison_notes(result, runs) if "per_run" in result else _notes_of(result)
    note = next((n for n in notes if UNTRAINED_HEAD_MARK in n), None)
    if note is None:
        return None
    fix = "" if UNTRAINED_HEAD_FIX in note else f" Fix: {UNTRAINED_HEAD_FIX}."
    return f"Untrained head: accuracy is chance level, not the model's ({note}).{fix}"


# -- single runs ----------------------------------------------------------------------------------


def run_title(result: Mapping[str, Any]) -> str:
    """What the run's figures column is: the run itself, or an optimized run by technique."""
    run = RunResult.from_dict(dict(result))
    applied = run.session.techniques or run.spec.get("techniques") or []
    names = [str(t["name"]) for t in applied if t.get("name")]
    return f"Optimized run: {' + '.join(names)}" if names else "This run"


def _labelled(value: float | None, unit: str, label: str | None) -> str:
    """An energy figure with its label, as text.run_rows words it: "12.3 J [estimated]"."""
    text = fmt_value(value, unit)
    return f"{text} [{label}]" if value is not None and label else text


def run_table_rows(result: Mapping[str, Any], caveat: str | None = None) -> list[Row]:
    """One run's figures in the summary table's layout: the value in the second column, the
    comparison-only columns empty, the energy figures' label in Source, the caveat in Note."""
    run = RunResult.from_dict(dict(result))
    pe, s = run.measured_phase, run.session
    label = run.energy_label
    thr = run.throughput_items_per_s
    energy = [
        ("energy_j", "Energy (measured phase, gross)", pe.gross_j if pe else None, "J"),
        ("energy_net_j", "Energy net of idle", pe.net_j if pe else None, "J"),
        ("energy_per_item_j", "Energy per item", run.energy_per_item_j, "J"),
        ("energy_per_token_j", "Energy per token", run.energy_per_token_j, "J"),
    ]
    rows = [
        Row(
            key, [name, _labelled(v, unit, label), "", "", "", (v is not None and label) or "-", ""]
        )
        for key, name, v, unit in energy
        if key != "energy_per_token_j" or v is not None
    ]
    other = [
        ("throughput_items_s", "Throughput", thr, "items/s"),
        ("duration_s", "Time (measured phase)", pe.duration_s if pe else None, "s"),
        ("peak_mem_bytes", "Peak memory", s.extra.get("peak_mem_bytes"), "bytes"),
        ("model_size_bytes", "Model size", s.model.get("size_bytes"), "bytes"),
    ]
    rows += [Row(k, [n, fmt_value(v, u), "", "", "", "-", ""]) for k, n, v, u in other]
    for key, name in QUALITY_ROWS:
        if s.metrics.get(key) is not None:
            note = caveat if caveat and key in POINT_METRICS else ""
            rows.append(Row(key, [name, fmt_value(s.metrics[key], ""), "", "", "", "-", note]))
    nodes = result.get("nodes")
    if isinstance(nodes, dict):
        rows.append(_nodes_row(nodes))
    return rows


def _nodes_row(nodes: Mapping[str, Any]) -> Row:
    """Other nodes' energy over the measured phase (--nodes), unknown when one node is; each
    node's figure in the note."""
    from wattlab.core.report.nodes_text import nodes_lines

    total, label = nodes.get("total_j"), nodes.get("label")
    per_node = "; ".join(line.strip() for line in nodes_lines(dict(nodes))[1:])
    return Row(
        "nodes_j",
        ["Other nodes' energy", _labelled(total, "J", label), "", "", "", label or "-", per_node],
    )


def phase_energy(result: Mapping[str, Any]) -> PhaseEnergy:
    """Joules per phase over the sources counted in the run's total (a device the workload did
    not use is shown elsewhere, never summed), in the order the phases ran."""
    run = RunResult.from_dict(dict(result))
    totals: dict[str, float] = {}
    for row in run.energy:
        if row.get("in_total", True):
            for ph, j in (row.get("by_phase_j") or {}).items():
                totals[ph] = totals.get(ph, 0.0) + float(j or 0.0)
    order = [name for _, name in _phase_marks(result)]
    ranked = sorted(totals, key=lambda p: order.index(p) if p in order else len(order))
    return PhaseEnergy([(p, totals[p]) for p in ranked], run.energy_label)


def _phase_marks(result: Mapping[str, Any]) -> list[tuple[float, str]]:
    return [(float(t), str(n)) for t, n in result.get("phase_marks") or []]


def power_series(
    result: Mapping[str, Any],
    samples: Sequence[Any],
    phases: Sequence[tuple[float, str]] | None = None,
) -> PowerSeries:
    """Total power of one run from its stored samples, aligned at the start of its measured
    phase (``phases``: (t, name) marks; default: the result's own ``phase_marks``)."""
    from wattlab.core.measure.series import total_power

    t, w = total_power(list(samples))
    marks = list(phases) if phases is not None else _phase_marks(result)
    pe = RunResult.from_dict(dict(result)).measured_phase
    measured = set(pe.phases) if pe else set()
    start = next((pt for pt, name in marks if name in measured), None)
    if start is None:
        return PowerSeries(t - (t[0] if t.size else 0.0), w)
    end = next((pt for pt, name in marks if pt > start and name not in measured), None)
    return PowerSeries(t - start, w, (0.0, end - start) if end is not None else None)
