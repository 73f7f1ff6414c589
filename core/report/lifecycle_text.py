"""A lifecycle comparison in words and tables: the terminal's lines, the PDF's paper-style
tables, and the CSV's rows, all from the comparison's ``lifecycle`` block (run/lifecycle.py).

Every energy figure names its source label; a row whose interval is not a verdict says so."""

from __future__ import annotations

from typing import Any

from wattlab.core.report.text import aligned, fmt_value, nbytes, seconds

STAGE_NAMES = {
    "prepare": "prepare (techniques)",
    "train": "train + eval",
    "convert": "convert + warm-up",
    "serve": "serve",
}


def row_value(value: float | None, unit: str) -> str:
    """A lifecycle figure with its unit (bytes as KiB/MiB, seconds as minutes when long)."""
    if value is None:
        return "unknown"
    if unit == "B":
        return nbytes(value)
    if unit == "s":
        return seconds(value)
    if unit == "J":
        return f"{value:.4g} J"
    if unit == "":
        return f"{value:.4f}"
    return fmt_value(value, unit)


def change_text(row: dict[str, Any]) -> str:
    """The change and its paired 95% interval, in points for an accuracy."""
    if row["key"] == "serve_accuracy":
        b, o = row["baseline"], row["optimized"]
        return "-" if b is None or o is None else f"{100 * (o - b):+.2f} pt"
    if row["change_pct"] is None:
        return "-"
    ci = row.get("ci")
    ci_text = f" [{100 * (ci[0] - 1):+.1f}, {100 * (ci[1] - 1):+.1f}]" if ci else ""
    return f"{row['change_pct']:+.1f}%{ci_text}"


ENERGY_UNITS = ("J", "kWh", "g")  # the rows made from energy, which carry its source label
TABLE_HEAD = ["figure", "baseline", "optimized", "change [95% CI]", "verdict", "source"]


def table_rows(life: dict[str, Any]) -> list[list[str]]:
    """Figure, baseline, optimized, change [95% interval], verdict and the energy's source
    label (measured / integrated / estimated) for the rows made from energy: one per figure."""
    source = life.get("label") or "unknown"
    return [
        [
            r["label"],
            row_value(r["baseline"], r["unit"]),
            row_value(r["optimized"], r["unit"]),
            change_text(r),
            r["verdict"],
            source if r["unit"] in ENERGY_UNITS else "-",
        ]
        for r in life["rows"]
    ]


def stage_rows(life: dict[str, Any]) -> list[list[str]]:
    """Stage, then per side its median energy and time (the energy by stage table)."""
    out = []
    for stage, name in STAGE_NAMES.items():
        b = life["stages"]["baseline"][stage]
        o = life["stages"]["optimized"][stage]
        out.append(
            [
                name,
                row_value(b["energy_j"], "J"),
                seconds(b["duration_s"]),
                row_value(o["energy_j"], "J"),
                seconds(o["duration_s"]),
            ]
        )
    return out


def epoch_rows(life: dict[str, Any]) -> list[list[str]]:
    """Epoch, then per side its eval accuracy (or perplexity) and energy so far (the seed's
    accuracy-per-epoch table)."""
    base, opt = life["epochs"]["baseline"], life["epochs"]["optimized"]
    rows = []
    for k in range(max(len(base), len(opt))):
        cells = [str(k + 1)]
        for side in (base, opt):
            e = side[k] if k < len(side) else {}
            cells += [_quality(e), row_value(e.get("energy_j_so_far"), "J")]
        rows.append(cells)
    return rows


def _quality(epoch: dict[str, Any]) -> str:
    if epoch.get("accuracy") is not None:
        return f"{epoch['accuracy']:.4f}"
    if epoch.get("perplexity") is not None:
        return f"ppl {epoch['perplexity']:.2f}"
    return "-"


def lifecycle_lines(life: dict[str, Any]) -> list[str]:
    """The terminal's lifecycle section."""
    label = life.get("label") or "unknown source"
    lines = [
        f"Lifecycle (train, convert, serve), {life['pairs']} pair(s), energy {label}:",
        "  " + life["headline"],
        "",
    ]
    lines += _table(TABLE_HEAD, table_rows(life))
    lines += ["", f"  Energy by stage (median, {label}):"]
    lines += _table(["stage", "baseline J", "time", "optimized J", "time"], stage_rows(life))
    if life["epochs"]["baseline"] or life["epochs"]["optimized"]:
        lines += ["", f"  Accuracy per epoch (first run of each side; energy so far, {label}):"]
        lines += _table(["epoch", "baseline", "energy", "optimized", "energy"], epoch_rows(life))
    be = life["break_even"]
    lines += ["", f"  Break-even: {be['text']}."]
    lines += [f"  note: {n}" for n in life.get("notes") or []]
    return lines


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return aligned([head, *rows], indent="  ")


def csv_rows(life: dict[str, Any]) -> list[dict[str, Any]]:
    """lifecycle.csv: one row per figure with raw numbers (no units in the cells)."""
    return [
        {
            "figure": r["key"],
            "label": r["label"],
            "unit": r["unit"],
            "baseline": r["baseline"],
            "optimized": r["optimized"],
            "change_pct": r["change_pct"],
            "ci_low_ratio": (r.get("ci") or [None, None])[0],
            "ci_high_ratio": (r.get("ci") or [None, None])[1],
            "verdict": r["verdict"],
            "energy_source": life.get("label") if r["unit"] in ("J", "kWh", "g") else "",
            "deploy_queries": life["deploy_queries"],
        }
        for r in life["rows"]
    ]
