"""A bench's table and lines as text: the CLI prints them and the PDF draws the same cells, so
every front end formats a figure (and its measured/integrated/estimated label) one way."""

from __future__ import annotations

from typing import Any

from wattlab.core.report import text as units

COLUMNS = (
    "#",
    "runs ok",
    "energy (gross)",
    "net of idle",
    "time",
    "CPU time",
    "peak RSS",
    "per item",
    "change vs #1",
    "95% interval",
    "verdict",
)
METRIC_SHORT = {
    "energy_j": "energy",
    "energy_per_item_j": "per item",
    "energy_per_token_j": "per token",
}


def _labelled(j: float | None, label: str | None) -> str:
    if j is None:
        return "unknown"
    return f"{units.joules(j)} {label or 'label?'}"


def _per_item(row: dict[str, Any]) -> str:
    med = row["median"]
    for key, unit in (("energy_per_item_j", "item"), ("energy_per_token_j", "token")):
        if med.get(key) is not None:
            return f"{med[key]:.4g} J/{unit} {row['energy_label'] or 'label?'}"
    return "-"


def change_cells(row: dict[str, Any]) -> tuple[str, str, str]:
    """(change, interval, verdict) of a row against the first command."""
    if row["index"] == 0:
        return "reference", "", ""
    vs = row.get("vs_first")
    if not vs:
        return "-", "", "no verdict"
    pct = vs.get("change_pct")
    what = METRIC_SHORT.get(vs.get("primary_metric") or "", "")
    change = "-" if pct is None else f"{pct:+.1f}% {what}".strip()
    ci = vs.get("ratio_ci")
    interval = f"{100 * (ci[0] - 1):+.1f}% to {100 * (ci[1] - 1):+.1f}%" if ci else ""
    return change, interval, str(vs.get("verdict") or "unknown")


def row_cells(row: dict[str, Any]) -> list[str]:
    med, label = row["median"], row["energy_label"]
    runs = f"{row['runs_ok']}/{row['runs_attempted']}"
    return [
        f"#{row['index'] + 1}",
        runs,
        _labelled(med.get("energy_j"), label),
        _labelled(med.get("energy_net_j"), label),
        units.seconds(med.get("duration_s")),
        units.seconds(med.get("cpu_time_s")),
        units.nbytes(med.get("peak_mem_bytes")),
        _per_item(row),
        *change_cells(row),
    ]


def command_lines(out: dict[str, Any]) -> list[str]:
    return [f"#{r['index'] + 1}  {r['text']}" for r in out["rows"]]


def status_line(out: dict[str, Any]) -> str:
    plan = out.get("plan") or {}
    done = sum(1 for r in out.get("per_run") or [] if r.get("run_id") is not None)
    return (
        f"bench {out.get('bench_id', '?')} ({out.get('status', '?')}): {len(out['rows'])} "
        f"commands, {out.get('rounds_planned', '?')} rounds, {done} measured runs, "
        f"{plan.get('warmup', 0)} warm-up run(s) each; medians over the runs that exited 0"
    )


def table_lines(out: dict[str, Any]) -> list[str]:
    """The table as aligned text lines (header first)."""
    from wattlab.core.report.text import aligned

    return aligned([list(COLUMNS)] + [row_cells(r) for r in out["rows"]])


def note_lines(out: dict[str, Any]) -> list[str]:
    """Per-pair sentences (with more than two commands) and the notes of rows with none."""
    lines = []
    for r in out["rows"][1:]:
        vs = r.get("vs_first")
        if vs and len(out["rows"]) > 2:
            lines.append(vs["headline"])
        elif r.get("note"):
            lines.append(r["note"])
    return lines


def run_lines(out: dict[str, Any]) -> list[str]:
    """Every measured run, in the order it ran, with its energy and exit code."""
    lines = []
    for r in out.get("per_run") or []:
        m = r.get("metrics") or {}
        state = "counted" if r.get("counted") else f"excluded: {r.get('reason') or r['status']}"
        lines.append(
            f"round {r['round'] + 1} #{r['command'] + 1}: run {r.get('run_id') or '-'}, "
            f"{_labelled(m.get('energy_j'), r.get('label'))}, "
            f"{units.seconds(m.get('duration_s'))}, exit {r.get('exit_code')}, {state}"
        )
    return lines
