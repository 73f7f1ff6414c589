"""A bench's reports: bench.json (everything, with each run's stored result), bench.csv (one row
per command), emissions.csv (one CodeCarbon row per measured run, through csv_report's own
writer) and bench.pdf (the table, per-run charts, the method and the runs)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

from wattlab.core.fileio import write_bytes_atomic, write_csv_atomic, write_json_atomic
from wattlab.core.measure.energy import NOT_WORK
from wattlab.core.measure.store import RunStore
from wattlab.core.report import A4, VERDICT_COLOURS
from wattlab.core.report import bench_text as bt

A4_LANDSCAPE = (A4[1], A4[0])
MEDIANS = (  # csv column -> median key
    ("energy_median_j", "energy_j"),
    ("energy_net_median_j", "energy_net_j"),
    ("duration_median_s", "duration_s"),
    ("cpu_time_median_s", "cpu_time_s"),
    ("peak_rss_median_bytes", "peak_mem_bytes"),
    ("items_median", "items"),
    ("tokens_median", "tokens"),
    ("energy_per_item_median_j", "energy_per_item_j"),
    ("energy_per_token_median_j", "energy_per_token_j"),
    ("co2_median_g", "co2_g"),
    ("cost_median", "cost"),
)
CSV_FIELDS = (
    "index", "command", "params", "runs_ok", "runs_failed", "failed_exit_codes",
    "energy_label", *(c for c, _ in MEDIANS), "energy_min_j", "energy_max_j",
    "compared_metric", "change_pct", "ci_low_pct", "ci_high_pct", "verdict", "pairs", "note",
)  # fmt: skip


def csv_row(row: dict[str, Any]) -> list[object]:
    """One command as bench.csv's row: unknown figures are empty cells, never 0."""
    med = row["median"]
    vs = row.get("vs_first") or {}
    ci = vs.get("ratio_ci") or (None, None)
    spread = row["spread"].get("energy_j") or (None, None)
    codes = sorted({str(f["exit_code"]) for f in row["failures"] if f["exit_code"] is not None})
    values: list[object] = [
        row["index"] + 1,
        row["text"],
        " ".join(f"{k}={v}" for k, v in row["params"].items()),
        row["runs_ok"],
        row["runs_failed"],
        " ".join(codes),
        row["energy_label"],
        *(med.get(key) for _, key in MEDIANS),
        spread[0],
        spread[1],
        vs.get("primary_metric") if row["index"] else "reference",
        vs.get("change_pct"),
        None if ci[0] is None else 100 * (ci[0] - 1),
        None if ci[1] is None else 100 * (ci[1] - 1),
        vs.get("verdict"),
        vs.get("pairs"),
        row.get("note"),
    ]
    return ["" if v is None else v for v in values]


def command_window(result: dict[str, Any], started_at: float | None) -> dict[str, Any]:
    """A profile run seen as a session with one measured phase, the command's window, so
    csv_report's CodeCarbon writer (made for comparisons) writes its row unchanged."""
    phases = [p for p in result.get("phases") or {} if p not in NOT_WORK] or ["run"]
    out = {**result, "measured_phase": {"duration_s": result.get("duration_s"), "phases": phases}}
    if started_at is not None:
        out["created_at"] = started_at
    return out


def emissions(out: dict[str, Any], results: dict[int, dict[str, Any]]) -> list[list[Any]]:
    from wattlab.core.report.csv_report import emissions_rows

    per_run = [{"run_id": r["run_id"]} for r in out["per_run"] if r["run_id"] in results]
    started = {r["run_id"]: r.get("started_at") for r in out["per_run"]}
    windows = {rid: command_window(res, started.get(rid)) for rid, res in results.items()}
    comp = {
        "carbon": out["carbon"],
        "manifest": out["manifest"],
        "per_run": per_run,
        "comparison_id": out.get("bench_id", ""),
    }
    return emissions_rows(comp, windows)


def write_bench_reports(out: dict[str, Any], store: RunStore, folder: Path) -> list[Path]:
    from wattlab.core.report.csv_report import EMISSIONS_COLUMNS

    folder = Path(folder)
    ids = [r["run_id"] for r in out["per_run"] if r.get("run_id") is not None]
    results = {rid: res for rid in ids if (res := store.result(rid))}
    json_path = folder / "bench.json"
    write_json_atomic(json_path, {**out, "run_results": list(results.values())})
    csv_path = folder / "bench.csv"
    write_csv_atomic(csv_path, list(CSV_FIELDS), (csv_row(r) for r in out["rows"]))
    em_path = folder / "emissions.csv"
    write_csv_atomic(em_path, EMISSIONS_COLUMNS, emissions(out, results))
    pdf_path = write_pdf(folder / "bench.pdf", out, store)
    return [pdf_path, csv_path, em_path, json_path]


# -- the PDF ---------------------------------------------------------------------------------
def write_pdf(path: Path, out: dict[str, Any], store: RunStore) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages

    from wattlab.core.report.pdf_report import text_page

    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": "WattLab bench report", "Creator": "WattLab"}) as pdf:
        _table_page(pdf, out)
        _runs_page(pdf, out)
        for first in range(0, len(out["rows"]), 4):
            _power_page(pdf, out, store, out["rows"][first : first + 4])
        text_page(pdf, "Method, runs and manifest", detail_blocks(out))
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)


def _table_page(pdf: Any, out: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=A4_LANDSCAPE)
    fig.text(0.04, 0.94, "WattLab bench", fontsize=15, weight="bold")
    fig.text(0.04, 0.905, textwrap.fill(bt.status_line(out), 170), fontsize=7.5, color="#444")
    y = 0.87
    for line in textwrap.wrap(out["headline"], 130):
        fig.text(0.04, y, line, fontsize=10, weight="bold")
        y -= 0.025
    for line in bt.command_lines(out)[:12]:
        fig.text(0.04, y, textwrap.shorten(line, 190), fontsize=7.5, family="monospace")
        y -= 0.02
    cells = [bt.row_cells(r) for r in out["rows"]]
    colours = [
        ["white"] * 10
        + [VERDICT_COLOURS.get((r.get("vs_first") or {}).get("verdict", ""), "white")]
        for r in out["rows"]
    ]
    ax = fig.add_axes((0.02, 0.1, 0.96, max(0.1, y - 0.12)))
    ax.axis("off")
    tbl = ax.table(
        cellText=cells, cellColours=colours, colLabels=list(bt.COLUMNS), loc="upper center",
        colWidths=[0.03, 0.05, 0.12, 0.12, 0.07, 0.07, 0.08, 0.12, 0.1, 0.13, 0.1],
        cellLoc="left",
    )  # fmt: skip
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(6.5)
    tbl.scale(1, 1.3)
    fig.text(
        0.04, 0.04,
        textwrap.fill(
            "Medians over each command's runs that exited 0 (runs ok / measured). Energy: the "
            "command's window, settling and idle excluded. Change: the first command as the "
            "reference, the geometric-mean paired ratio per round, with compare's 95% interval "
            "and verdict (energy per item when both commands mark items, else energy).", 200,
        ),
        fontsize=6.5, color="#444",
    )  # fmt: skip
    pdf.savefig(fig)
    plt.close(fig)


def _runs_page(pdf: Any, out: dict[str, Any]) -> None:
    """Energy and time of every run, by round and command: the noise each verdict is judged
    against. A run that failed is drawn as an x and is in no figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 1, figsize=A4)
    fig.subplots_adjust(hspace=0.35, top=0.94, bottom=0.07, left=0.12, right=0.95)
    for ax, key, title, unit in (
        (axes[0], "energy_j", "Energy of each run (command window, gross)", "J"),
        (axes[1], "duration_s", "Wall time of each run", "s"),
    ):
        for row in out["rows"]:
            runs = [r for r in out["per_run"] if r["command"] == row["index"] and r["metrics"]]
            colour = f"C{row['index'] % 10}"
            ok = [(r["round"] + 1, r["metrics"][key]) for r in runs if r["counted"]]
            bad = [(r["round"] + 1, r["metrics"][key]) for r in runs if not r["counted"]]
            ok = [(x, y) for x, y in ok if y is not None]
            bad = [(x, y) for x, y in bad if y is not None]
            if ok:
                ax.plot(*zip(*ok, strict=True), "o-", color=colour, label=f"#{row['index'] + 1}")
            if bad:
                ax.plot(*zip(*bad, strict=True), "x", color=colour, ms=8)
        label = next((r["energy_label"] for r in out["rows"] if r["energy_label"]), None)
        suffix = f" [{label}]" if key == "energy_j" and label else ""
        ax.set(title=title + suffix, xlabel="round", ylabel=unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title="x: failed, excluded", title_fontsize=6)
    pdf.savefig(fig)
    plt.close(fig)


def _power_page(pdf: Any, out: dict[str, Any], store: RunStore, rows: list[dict[str, Any]]) -> None:
    """Total power over time of every run of up to four commands, aligned at each command's
    start; a failed run dashed."""
    import matplotlib.pyplot as plt

    from wattlab.core.measure.series import total_power

    fig, axes = plt.subplots(4, 1, figsize=A4, squeeze=False)
    fig.subplots_adjust(hspace=0.55, top=0.95, bottom=0.06, left=0.12, right=0.95)
    for ax, row in zip(axes[:, 0], rows + [None] * (4 - len(rows)), strict=True):
        if row is None:
            ax.axis("off")
            continue
        for r in (r for r in out["per_run"] if r["command"] == row["index"] and r["run_id"]):
            marks = [(t, e["name"]) for t, k, e in store.events(r["run_id"]) if k == "phase"]
            start = next((t for t, name in marks if name not in NOT_WORK), None)
            t, w = total_power(store.samples(r["run_id"]))
            if start is None or not t.size:
                continue
            keep = t >= start
            ax.plot(t[keep] - start, w[keep], lw=0.8, ls="-" if r["counted"] else "--",
                    color=f"C{r['round'] % 10}", label=f"round {r['round'] + 1}")  # fmt: skip
        ax.set_title(textwrap.shorten(f"#{row['index'] + 1} {row['text']}", 95), fontsize=8)
        ax.set(xlabel="s from the command's start", ylabel="W (total)")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=5)
    pdf.savefig(fig)
    plt.close(fig)


def detail_blocks(out: dict[str, Any]) -> list[tuple[str, str]]:
    from wattlab.core.report import text as units

    c = out["carbon"]
    hw = out["manifest"]["hardware"]
    sensors = "\n".join(
        f"{s['name']}: {'present' if s['available'] else 'missing'}"
        + (f" ({s['reason']})" if s.get("reason") else "")
        for s in out["manifest"]["sensors"]
    )
    plan = out.get("plan") or {}
    prep = (plan.get("prepare") or {}).get("text")
    return [
        ("Headline", out["headline"]),
        ("Commands", "\n".join(bt.command_lines(out)) + (f"\n--prepare: {prep}" if prep else "")),
        ("Comparisons", "\n".join(bt.note_lines(out)) or "-"),
        ("Warnings", "\n".join(out.get("warnings") or []) or "none"),
        ("Method", out["statistics"]["method"]),
        ("Runs (in the order they ran)", "\n".join(bt.run_lines(out)) or "none"),
        (
            "Carbon and cost",
            f"{c['g_per_kwh']} gCO2e/kWh ({c['intensity_source']}), PUE {c['pue']}, price "
            f"{c['price_per_kwh'] if c['price_per_kwh'] is not None else '-'} {c['currency']}/kWh",
        ),
        ("Sensors", sensors or "-"),
        (
            "Hardware",
            f"CPU {hw['cpu_model']} ({hw['logical_cpus']} logical); memory "
            f"{units.nbytes(hw['memory_bytes'])}; GPUs: "
            f"{', '.join(g['name'] for g in hw['gpus']) or 'none visible'}",
        ),
        (
            "Sampling",
            f"every {out['sampling']['interval_s'] * 1000:.0f} ms, idle baseline "
            f"{out['sampling']['idle_s']} s before each run",
        ),
    ]
