"""Every formatted figure of a sweep: the table's cells, the recommendation, the fronts and the
refusals, as the CLI prints them and the PDF, CSV and app show them."""

from __future__ import annotations

from typing import Any

from wattlab.core.report import text as units
from wattlab.core.results import UNTRAINED_HEAD_FIX

COLUMNS = (
    "Technique set",
    "Energy/item",
    "Change",
    "Verdict",
    "Accuracy",
    "Acc. change",
    "Throughput",
    "Latency p50",
    "Size",
    "Peak mem",
    "Preparation",
    "Front",
)
FRONT_MARKS = {"energy_accuracy": "A", "energy_latency": "L", "energy_memory": "M"}


METRIC_WORDS = {"energy_per_item_j": "item", "energy_per_token_j": "token", "energy_j": "run"}


def energy_axis_label(out: dict[str, Any]) -> str:
    """The energy axis of every Pareto chart (PDF and app): its unit, and how the energy was
    obtained, since a figure never travels without its label."""
    per = METRIC_WORDS.get(out.get("energy_metric") or "", "item")
    labels = {str(r["energy_label"]) for r in out["rows"] if r.get("energy_label")}
    return f"energy per {per} (J, {'/'.join(sorted(labels)) or 'unlabelled'})"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}%"


def _points(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f} pt"


def energy_cell(row: dict[str, Any]) -> str:
    """Energy per item (or per token) with its label: a figure never travels without it."""
    label = row.get("energy_label")
    value = row.get("energy_median_j")
    if value is None:
        return "unknown"
    return units.per_item_joules(value) + (f" {label}" if label else "")


def change_cell(row: dict[str, Any]) -> str:
    ci = row.get("energy_ci_pct")
    if row.get("energy_change_pct") is None:
        return "-"
    return _pct(row["energy_change_pct"]) + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def preparation_cell(row: dict[str, Any]) -> str:
    if row.get("prepare_s") is None:
        return "-"
    joules = row.get("prepare_j")
    label = f" {row['prepare_label']}" if row.get("prepare_label") else ""
    energy = f", {units.joules(joules)}{label}" if joules is not None else ""
    return f"{units.seconds(row['prepare_s'])}{energy}"


def front_cell(row: dict[str, Any], fronts: dict[str, list[str]]) -> str:
    """A = on the energy-accuracy front, L = energy-latency, M = energy-memory."""
    return "".join(m for name, m in FRONT_MARKS.items() if row["key"] in fronts.get(name, []))


def row_cells(row: dict[str, Any], fronts: dict[str, list[str]]) -> list[str]:
    acc = row.get("accuracy")
    thr = row.get("throughput_items_s")
    lat = row.get("latency_p50_ms")
    return [
        row["text"],
        energy_cell(row),
        change_cell(row),
        row.get("energy_verdict") or ("reference" if row["key"] == "baseline" else "-"),
        "-" if acc is None else f"{acc:.4f}",
        _points(row.get("accuracy_change_points")),
        "-" if thr is None else f"{thr:,.0f}/s",
        "-" if lat is None else f"{lat:.2f} ms",
        units.nbytes(row.get("model_size_bytes")) if row.get("model_size_bytes") else "-",
        units.nbytes(row.get("peak_mem_bytes")) if row.get("peak_mem_bytes") else "-",
        preparation_cell(row),
        front_cell(row, fronts),
    ]


def recommendation_lines(out: dict[str, Any]) -> list[str]:
    rec = out["recommendation"]
    lines = [f"Recommended: {rec['text']}", f"  why: {rec['reason']}"]
    if rec.get("confidence"):
        lines.append(f"  confidence: {rec['confidence']}")
    if out.get("disturbed_runs"):
        lines.append(
            f"  caution: {out['disturbed_runs']} of the {out.get('counted_runs')} counted runs "
            "were disturbed by other processes, which widens every interval; --rerun-disturbed "
            "measures such rounds again"
        )
    if out.get("untrained_head"):
        lines.append(
            "  caution: the model's classification head is untrained, so its accuracy is "
            f"chance: {UNTRAINED_HEAD_FIX} (sweep that folder)"
        )
    return lines


def front_lines(out: dict[str, Any]) -> list[str]:
    names = {r["key"]: r["text"] for r in out["rows"]}
    titles = {
        "energy_accuracy": "energy-accuracy",
        "energy_latency": "energy-latency",
        "energy_memory": "energy-memory",
    }
    return [
        f"Pareto front ({titles[name]}): " + (", ".join(names[k] for k in keys) or "none")
        for name, keys in out["fronts"].items()
    ]


def dominated_lines(out: dict[str, Any]) -> list[str]:
    names = {r["key"]: r["text"] for r in out["rows"]}
    return [
        f"{r['text']}: dominated (on medians, not a tested claim) by "
        + ", ".join(names[k] for k in r["dominated_by"])
        for r in out["rows"]
        if r.get("dominated_by")
    ]


def other_lines(out: dict[str, Any]) -> list[str]:
    """Sets that left the sweep or never ran, each with its reason."""
    lines = [
        f"{r['text']}: {r['status']}: {r['reason']}"
        for r in out["rows"]
        if r.get("status") == "failed"  # a set stopped early says why in its own note
    ]
    lines += [f"{r['key']}: refused: {r['reason']}" for r in out.get("refused") or []]
    return lines


def status_line(out: dict[str, Any]) -> str:
    plan = out["plan"]
    line = (
        f"Sweep {out.get('sweep_id')} ({out['status']}): {out['mode']} on {out['model']}, "
        f"{out['rounds_completed']} of {plan['repeats']} rounds, "
        f"{len(plan['candidates'])} technique sets, {units.seconds(out.get('elapsed_s'))}"
    )
    if out.get("resume_command"):
        line += f"; resume with: {out['resume_command']}"
    return line
