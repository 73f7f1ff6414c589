"""A sweep's reports: sweep.json (everything, with each candidate's comparison), sweep.csv (the
table, every column) and sweep.pdf (the table, the Pareto charts, the recommendation, then each
candidate's comparison pages)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

from wattlab.core.fileio import write_bytes_atomic, write_csv_atomic, write_json_atomic
from wattlab.core.measure.store import RunStore
from wattlab.core.report import A4, BASE_C, OPT_C
from wattlab.core.report import sweep_text as st

A4_LANDSCAPE = (A4[1], A4[0])
FRONT_C = "#2a9d55"
PANELS = (  # front name, row field, axis label, scale
    ("energy_accuracy", "accuracy", "accuracy", 1.0),
    ("energy_latency", "latency_p50_ms", "latency p50 per batch (ms)", 1.0),
    ("energy_memory", "peak_mem_bytes", "peak memory (MiB)", 1 / 2**20),
)
CSV_FIELDS = (
    "key",
    "text",
    "status",
    "rounds",
    "energy_metric",
    "energy_median_j",
    "energy_label",
    "energy_change_pct",
    "energy_ci_pct",
    "energy_verdict",
    "accuracy",
    "accuracy_change_points",
    "accuracy_gap_points",
    "fairness_change_points",
    "within_budget",
    "throughput_items_s",
    "latency_p50_ms",
    "model_size_bytes",
    "peak_mem_bytes",
    "prepare_s",
    "prepare_j",
    "prepare_label",
    "dominated_by",
    "comparison_id",
    "note",
)


def _csv_value(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, list):
        return " | ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in v)
    return v


def write_sweep_reports(out: dict[str, Any], store: RunStore, folder: Path) -> list[Path]:
    folder = Path(folder)
    comps = {cid: comp for cid in out.get("comparison_ids") or [] if (comp := store.result(cid))}
    json_path = folder / "sweep.json"
    write_json_atomic(json_path, {**out, "comparisons": list(comps.values())})
    csv_path = folder / "sweep.csv"
    rows = ([_csv_value(r.get(f)) for f in CSV_FIELDS] for r in out["rows"])
    write_csv_atomic(csv_path, list(CSV_FIELDS), rows)
    pdf_path = write_pdf(folder / "sweep.pdf", out, comps, store)
    return [pdf_path, csv_path, json_path]


def pareto_figure(out: dict[str, Any]) -> Any:
    """Three panels, energy against accuracy, latency and memory; the front joined in green,
    the recommendation ringed, the baseline in blue. Points carry their row number (0 is the
    baseline) and the key under the panels names each set, so long names never overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in out["rows"] if r.get("energy_median_j") is not None]
    number = {r["key"]: i for i, r in enumerate(out["rows"])}
    key_lines = textwrap.wrap("   ".join(f"{number[r['key']]}: {r['text']}" for r in rows), 190)
    line_in = 0.16  # one line of the key, in inches
    height_in = 4.4 + line_in * len(key_lines)
    fig, axes = plt.subplots(1, 3, figsize=(A4_LANDSCAPE[0], height_in))
    axes_bottom_in = 0.75 + line_in * len(key_lines)  # the x labels sit above the key
    fig.subplots_adjust(
        left=0.08, right=0.98, bottom=axes_bottom_in / height_in, top=0.9, wspace=0.32
    )
    rec = out["recommendation"]["key"]
    for ax, (front, field, label, scale) in zip(axes, PANELS, strict=True):
        _pareto_panel(ax, rows, out["fronts"].get(front, []), field, scale, rec, number)
        ax.set(xlabel=st.energy_axis_label(out), ylabel=label)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Energy against accuracy, latency and memory (medians over rounds; green: Pareto "
        "front; ringed: recommended)",
        fontsize=10,
    )
    for i, line in enumerate(key_lines):
        fig.text(0.02, (line_in * (len(key_lines) - i) - 0.05) / height_in, line, fontsize=6.5)
    return fig


def _pareto_panel(
    ax: Any,
    rows: list[dict[str, Any]],
    front: list[str],
    field: str,
    scale: float,
    rec: str,
    number: dict[str, int],
) -> None:
    pts = [(r, r[field] * scale) for r in rows if r.get(field) is not None]
    for r, y in pts:
        colour = BASE_C if r["key"] == "baseline" else OPT_C
        ax.scatter(r["energy_median_j"], y, color=colour, s=28, zorder=3)
        if r["key"] == rec:
            ax.scatter(r["energy_median_j"], y, s=140, facecolors="none", edgecolors="k")
        ax.annotate(
            str(number[r["key"]]), (r["energy_median_j"], y), fontsize=7,
            xytext=(3, 3), textcoords="offset points",
        )  # fmt: skip
    on = sorted((r["energy_median_j"], y) for r, y in pts if r["key"] in front)
    if len(on) > 1:
        ax.plot([p[0] for p in on], [p[1] for p in on], "-", color=FRONT_C, lw=1.2, zorder=2)


def pareto_png(out: dict[str, Any], dpi: int = 110) -> bytes:
    import matplotlib.pyplot as plt

    fig = pareto_figure(out)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_pdf(
    path: Path, out: dict[str, Any], comps: dict[int, dict[str, Any]], store: RunStore
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from wattlab.core.report.charts import load_run_data
    from wattlab.core.report.pdf_report import comparison_pages, text_page

    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": "WattLab sweep report", "Creator": "WattLab"}) as pdf:
        _table_page(pdf, out)
        fig = pareto_figure(out)
        pdf.savefig(fig)
        plt.close(fig)
        text_page(pdf, "Fronts, dominance and notes", _detail_blocks(out))
        for comp in comps.values():
            comparison_pages(pdf, comp, *load_run_data(comp, store))
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)


def _table_page(pdf: Any, out: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    from wattlab.core.report import VERDICT_COLOURS

    fig = plt.figure(figsize=A4_LANDSCAPE)
    fig.text(0.04, 0.94, "WattLab sweep: which technique set to use", fontsize=15, weight="bold")
    fig.text(0.04, 0.905, textwrap.fill(st.status_line(out), 170), fontsize=7.5, color="#444")
    for i, line in enumerate(st.recommendation_lines(out)):
        for j, part in enumerate(textwrap.wrap(line, 150)):
            fig.text(
                0.04,
                0.86 - 0.022 * (i * 2 + j),
                part,
                fontsize=9,
                weight="bold" if i == 0 else "normal",
            )
    cells = [st.row_cells(r, out["fronts"]) for r in out["rows"]]
    for c in cells:
        c[0] = textwrap.shorten(c[0], 48)
    colours = [
        ["white"] * 3
        + [VERDICT_COLOURS.get(r.get("energy_verdict") or "", "white")]
        + ["white"] * 8
        for r in out["rows"]
    ]
    ax = fig.add_axes((0.02, 0.08, 0.96, 0.66))
    ax.axis("off")
    tbl = ax.table(
        cellText=cells, cellColours=colours, colLabels=list(st.COLUMNS), loc="upper center",
        colWidths=[0.22, 0.1, 0.11, 0.07, 0.05, 0.06, 0.06, 0.06, 0.06, 0.06, 0.09, 0.04],
        cellLoc="left",
    )  # fmt: skip
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(6)
    tbl.scale(1, 1.3)
    fig.text(
        0.04, 0.04,
        "Change: energy per item against the baseline, median ratio with its 95% interval. "
        "Front: A energy-accuracy, L energy-latency, M energy-memory. Preparation: time and "
        "energy spent applying the techniques (median per run).",
        fontsize=6.5, color="#444",
    )  # fmt: skip
    pdf.savefig(fig)
    plt.close(fig)


def _detail_blocks(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Recommendation", "\n".join(st.recommendation_lines(out))),
        ("Pareto fronts", "\n".join(st.front_lines(out))),
        ("Dominated sets", "\n".join(st.dominated_lines(out)) or "none"),
        ("Each set", "\n".join(f"{r['text']}: {r['note']}" for r in out["rows"])),
        ("Refused or stopped", "\n".join(st.other_lines(out)) or "none"),
        ("Method", out.get("method") or ""),
    ]
