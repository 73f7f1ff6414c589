"""What the app's results view shows for a measured command (``wattlab profile``, the app's
Script workload), a tracked block (``wattlab.track``) and a bench of commands, worked out
without Qt (the sibling of ``result_view``, which does sessions and comparisons).

A command's energy is the whole command's (its window from start to exit), with its label; the
marked work (the phases a script marked with ``wattlab.track``) adds per-phase energy, energy
per item and throughput. A figure that was not measured is "-", never 0; an energy figure
carries its label in the Source column and next to its value.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattlab.core.report import VERDICT_COLOURS
from wattlab.core.report import bench_text as bt
from wattlab.core.report import text as units
from wattlab.core.report.result_view import Row
from wattlab.core.report.text import fmt_value

PHASE_COLUMNS = [
    "Phase",
    "Time",
    "Energy (gross)",
    "Energy per item",
    "Items",
    "Steps",
    "Net of idle",
    "Source",
]
BENCH_COLUMNS = list(bt.COLUMNS)
BENCH_VERDICT = BENCH_COLUMNS.index("verdict")
# Shown right after "#" and "runs ok" where the table is narrow (the app at 1024 px): the
# change against #1 is what a bench is read for; the CLI prints bench_text's own order.
BENCH_FIRST = ("change vs #1", "95% interval", "verdict")
BENCH_RUN_COLUMNS = ["Round", "Command", "Run", "Energy", "Time", "Exit code", "Counted"]
NO_MARKERS_HINT = (
    "The script sent no markers: `import wattlab` and `with wattlab.track() as t:` with "
    "`t.phase(name)` and `t.step(items=n)` give per-phase energy, energy per item and "
    "throughput."
)


def is_command_run(result: Mapping[str, Any]) -> bool:
    """A profiled command or a tracked block: figures of a whole command and its markers,
    not of a WattLab session."""
    return "command" in result or "markers" in result


def is_bench(result: Mapping[str, Any]) -> bool:
    return result.get("kind") == "bench" and "rows" in result


# -- one command --------------------------------------------------------------------------------
def _labelled(value: float | None, unit: str, label: str | None) -> str:
    text = fmt_value(value, unit)
    return f"{text} [{label}]" if value is not None and label else text


def _row(key: str, name: str, value: str, source: str = "-", note: str = "") -> Row:
    return Row(key, [name, value, "", "", "", source, note])


def _energy_row(key: str, name: str, j: float | None, label: str | None, note: str = "") -> Row:
    return _row(key, name, _labelled(j, "J", label), (j is not None and label) or "-", note)


def _num(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None  # type: ignore[arg-type]


def _marked(result: Mapping[str, Any]) -> bool:
    return bool((result.get("markers") or {}).get("events"))


def command_text(result: Mapping[str, Any]) -> str | None:
    """The command as a person reads it; None for a tracked block (it has none)."""
    cmd = result.get("command")
    return shlex.join(str(a) for a in cmd) if isinstance(cmd, list) and cmd else None


def command_headline(result: Mapping[str, Any]) -> str:
    """ "Run 7: completed (exit code 0)"; a tracked block has no exit code to give."""
    head = f"Run {result.get('run_id', '?')}: {result.get('status', 'unknown')}"
    if "command" not in result:
        return head
    code = result.get("exit_code")
    return f"{head} (exit code {'-' if code is None else code})"


def command_rows(result: Mapping[str, Any]) -> list[Row]:
    """The whole command's figures, then the marked work's (only when the script marked some),
    in the results table's layout (value, then Source, then Note)."""
    total = result.get("total") or {}
    label = total.get("label")
    rows = [
        _energy_row("energy_j", "Energy (whole command, gross)", _num(total.get("gross_j")), label),
        _energy_row("energy_net_j", "Energy net of idle", _num(total.get("net_j")), label),
        _row("duration_s", "Time (whole command)", fmt_value(_num(result.get("duration_s")), "s")),
    ]
    if "cpu_time_s" in result or "command" in result:
        rows.append(_row("cpu_time_s", "CPU time", fmt_value(_num(result.get("cpu_time_s")), "s")))
        peak = _num(result.get("peak_rss_bytes"))
        rows.append(_row("peak_rss_bytes", "Peak memory (RSS)", fmt_value(peak, "bytes")))
    return rows + _marked_rows(result)


def _marked_rows(result: Mapping[str, Any]) -> list[Row]:
    """Energy of the marked work, per item, per token and throughput; one "-" row with the
    hint when the script sent no marker."""
    if not _marked(result):
        return [_row("energy_per_item_j", "Energy per item", "-", note=NO_MARKERS_HINT)]
    pe = result.get("measured_phase") or {}
    label = pe.get("label")
    basis = (result.get("markers") or {}).get("energy_basis") or "marked phases"
    phases = ", ".join(str(p) for p in pe.get("phases") or [])
    rows = [
        _energy_row(
            "work_energy_j",
            "Energy of the marked work",
            _num(pe.get("gross_j")),
            label,
            f"{basis}: {phases}" if phases else basis,
        ),
        _energy_row(
            "energy_per_item_j", "Energy per item", _num(result.get("energy_per_item_j")), label
        ),
    ]
    per_token = _num(result.get("energy_per_token_j"))
    if per_token is not None:
        rows.append(_energy_row("energy_per_token_j", "Energy per token", per_token, label))
    thr = _num(result.get("throughput_items_per_s"))
    rows.append(_row("throughput_items_s", "Throughput (marked work)", fmt_value(thr, "items/s")))
    return rows


def marked_phase_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """Each phase the script marked, in the order it ran: time, energy with its label, energy
    per item, items, steps and net energy (cells in PHASE_COLUMNS order)."""
    by_phase = result.get("phase_energy") or {}
    out = []
    for name in _in_order(result, list(by_phase)):
        pe = by_phase[name]
        label = pe.get("label")
        steps, items = pe.get("steps"), pe.get("items")
        out.append(
            [
                str(name),
                units.seconds(_num(pe.get("duration_s"))),
                _labelled(_num(pe.get("gross_j")), "J", label),
                _labelled(_num(pe.get("energy_per_item_j")), "J", label),
                "-" if items is None else str(items),
                str(steps) if steps else "-",
                _labelled(_num(pe.get("net_j")), "J", label),
                label or "-",
            ]
        )
    return out


def _in_order(result: Mapping[str, Any], names: list[str]) -> list[str]:
    """``names`` in the order their phases began (the stored JSON may have sorted the keys)."""
    began = [str(n) for _, n in result.get("phase_marks") or []]
    began += [str(n) for n in (result.get("markers") or {}).get("phases") or []]
    return sorted(names, key=lambda n: began.index(n) if n in began else len(began))


def command_details(result: Mapping[str, Any]) -> list[str]:
    """The lines over the table: the command, where it ran, what its markers said, and its
    warnings (a window too short for its sensor, ...)."""
    lines = []
    cmd = command_text(result)
    if cmd is not None:
        cwd = (result.get("spec") or {}).get("cwd")
        lines.append(f"Command: {cmd}" + (f"  (in {cwd})" if cwd else ""))
    m = result.get("markers") or {}
    if _marked(result):
        phases = [str(p) for p in m.get("phases") or []]
        items = m.get("items")
        lines.append(
            f"Markers: {len(phases)} phase(s) ({', '.join(phases) or '-'}), {m.get('steps', 0)} "
            f"step(s), {'-' if items is None else items} item(s)"
        )
    lines += [f"Warning: {w}" for w in result.get("warnings") or []]
    return lines


# -- a bench --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchRow:
    """One command of a bench: the table's cells (BENCH_COLUMNS) and its verdict's colour."""

    cells: list[str]
    colour: str | None


def bench_rows(out: Mapping[str, Any]) -> list[BenchRow]:
    """The bench's table, as ``wattlab bench`` prints it (bench_text's cells)."""
    rows = []
    for row in out.get("rows") or []:
        cells = bt.row_cells(row)
        rows.append(BenchRow(cells, VERDICT_COLOURS.get(cells[BENCH_VERDICT])))
    return rows


def bench_details(out: Mapping[str, Any]) -> list[str]:
    """The status line, each command with its number, the per-pair notes and the warnings."""
    return [bt.status_line(dict(out)), *bt.command_lines(dict(out)), *bt.note_lines(dict(out))] + [
        f"Warning: {w}" for w in out.get("warnings") or []
    ]


def bench_run_rows(out: Mapping[str, Any]) -> list[list[str]]:
    """Every measured run in the order it ran (cells in BENCH_RUN_COLUMNS order)."""
    rows = []
    for r in out.get("per_run") or []:
        m = r.get("metrics") or {}
        counted = "yes" if r.get("counted") else f"no: {r.get('reason') or r.get('status')}"
        code = r.get("exit_code")
        rows.append(
            [
                str(int(r.get("round", 0)) + 1),
                f"#{int(r.get('command', 0)) + 1}",
                str(r.get("run_id") or "-"),
                _labelled(_num(m.get("energy_j")), "J", r.get("label")),
                units.seconds(_num(m.get("duration_s"))),
                "-" if code is None else str(code),
                counted,
            ]
        )
    return rows
