"""The PDF a user hands to a colleague: verdict, side-by-side table, charts, methods, manifest.

Rendered with matplotlib's Agg backend (off-screen, no display, no Qt: ``core`` never imports
Qt). A4 pages; long text is wrapped and tables sized so nothing runs off a page.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from wattlab.core.report import A4, VERDICT_COLOURS
from wattlab.core.report import text as units
from wattlab.core.report.charts import chart_page, rag_page
from wattlab.core.report.text import methods_text, verdict_cells, verdict_footnote
from wattlab.core.results import Comparison


def text_page(pdf: Any, title: str, blocks: list[tuple[str, str]]) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=A4)
    y = 0.95
    fig.text(0.07, y, title, fontsize=15, weight="bold")
    y -= 0.04
    for head, body in blocks:
        if y < 0.08:
            pdf.savefig(fig)
            plt.close(fig)
            fig = plt.figure(figsize=A4)
            y = 0.95
        fig.text(0.07, y, head, fontsize=10.5, weight="bold")
        y -= 0.022
        for para in body.split("\n"):
            for line in textwrap.wrap(para, 105) or [""]:
                fig.text(0.07, y, line, fontsize=8, family="monospace")
                y -= 0.0145
                if y < 0.05:
                    pdf.savefig(fig)
                    plt.close(fig)
                    fig = plt.figure(figsize=A4)
                    y = 0.95
        y -= 0.012
    pdf.savefig(fig)
    plt.close(fig)


def _summary_page(pdf: Any, comp: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=A4)
    b = comp["baseline_spec"]
    fig.text(0.07, 0.955, "WattLab comparison report", fontsize=17, weight="bold")
    sub = (
        f"{comp['created']}   model: {b['model']}   dataset: {b['dataset']}   mode: "
        f"{b['mode']}   device: {comp.get('device', '-')}   repeats: {comp['repeats']} "
        "(interleaved)"
    )
    for i, line in enumerate(textwrap.wrap(sub, 110)):
        fig.text(0.07, 0.93 - i * 0.015, line, fontsize=8, color="#444444")
    fig.text(0.07, 0.885, f"Optimized: {comp['technique_text']}", fontsize=10)
    for i, line in enumerate(textwrap.wrap(comp["headline"], 68)):
        fig.text(0.07, 0.855 - i * 0.022, line, fontsize=12, weight="bold")
    rows, colours = [], []
    for v in Comparison.from_dict(comp).verdicts:
        rows.append(verdict_cells(v))
        colours.append(["white"] * 4 + [VERDICT_COLOURS.get(v.verdict, "white"), "white"])
    ax = fig.add_axes((0.05, 0.12, 0.9, 0.66))
    ax.axis("off")
    tbl = ax.table(
        cellText=rows,
        cellColours=colours,
        loc="upper center",
        colLabels=[
            "Metric (median over repeats)",
            "Baseline",
            "Optimized",
            "Delta",
            "Verdict",
            "Source",
        ],
        colWidths=[0.33, 0.15, 0.15, 0.09, 0.14, 0.12],
        cellLoc="left",
    )
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(7.5)
    tbl.scale(1, 1.45)
    from wattlab.core.report.result_view import untrained_head_caveat

    footnote = verdict_footnote(comp)
    caveat = untrained_head_caveat(comp)
    if caveat:
        footnote += f" {caveat}"
    fig.text(0.07, 0.09, textwrap.fill(footnote, 120), fontsize=7, color="#444444")
    pdf.savefig(fig)
    plt.close(fig)


def write(
    path: Path,
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]],
    phases: dict[int, list[tuple[float, str]]],
) -> Path:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages

    from wattlab.core.fileio import write_bytes_atomic

    buf = io.BytesIO()
    with PdfPages(
        buf, metadata={"Title": "WattLab comparison report", "Creator": "WattLab"}
    ) as pdf:
        comparison_pages(pdf, comp, results, samples, phases)
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)


def comparison_pages(
    pdf: Any,
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]],
    phases: dict[int, list[tuple[float, str]]],
) -> None:
    """A comparison's pages; a sweep's PDF appends them once per candidate."""
    _summary_page(pdf, comp)
    chart_page(pdf, comp, results, samples, phases)
    if comp.get("rag") and comp["rag"].get("optimized"):
        rag_page(pdf, comp)
    if comp.get("lifecycle"):
        from wattlab.core.report.lifecycle_report import lifecycle_pages

        lifecycle_pages(pdf, comp["lifecycle"])
    text_page(
        pdf, "Techniques, methods and manifest", manifest_blocks(comp) + _nodes_block(comp, results)
    )


def _nodes_block(comp: dict[str, Any], results: dict[int, dict[str, Any]]) -> list[tuple[str, str]]:
    """Other nodes' energy per side and per run (--nodes / --prometheus), when measured."""
    from wattlab.core.report.nodes_text import comparison_nodes_lines, nodes_lines

    runs = [(pr["side"], results.get(pr["run_id"]) or {}) for pr in comp.get("per_run") or []]
    summary = comparison_nodes_lines(runs)
    if not summary:
        return []
    per_run = [
        f"{side} run {r.get('run_id')}: " + "\n".join(nodes_lines(r["nodes"]))
        for side, r in runs
        if r.get("nodes")
    ]
    return [("Other nodes (--nodes / --prometheus)", "\n".join(summary + per_run))]


def _fairness_block(comp: dict[str, Any]) -> list[tuple[str, str]]:
    """Per-group accuracy of each side and how the parity figures were computed, when the
    comparison had a --sensitive-column (the verdict table has the medians)."""
    sides = comp.get("fairness") or {}
    lines = [
        line
        for side in ("baseline", "optimized")
        for line in units.fairness_lines(sides.get(side), f"{side}: ")
    ]
    if not lines:
        return []
    method = next((f.get("method") for f in sides.values() if isinstance(f, dict)), None)
    body = "\n".join(dict.fromkeys(lines)) + (f"\nMethod: {method}" if method else "")
    return [("Fairness across groups (first run of each side)", body)]


def manifest_blocks(comp: dict[str, Any]) -> list[tuple[str, str]]:
    """The last page's blocks: techniques, methods, power model, carbon, sensors, hardware,
    software, sampling and the runs, so a reader can repeat or audit the comparison."""
    tech = (
        "\n".join(
            f"{t['name']} {t['params']}: {t['description']}"
            + "".join(f"\n  warning: {w}" for w in t.get("warnings") or [])
            for t in comp.get("techniques") or []
        )
        or "none"
    )
    hw, sw = comp["manifest"]["hardware"], comp["manifest"]["software"]
    flags = ", ".join(k for k, v in hw["cpu_flags"].items() if v) or "none"
    gpus = ", ".join(g["name"] for g in hw["gpus"]) or "none visible"
    c = comp["carbon"]
    pm = comp.get("power_model")
    from wattlab.core.measure.sensors.estimate import describe_model

    model_txt = "none (hardware counters only)" if not pm else describe_model(pm)
    sensors = "\n".join(
        f"{s['name']}: {'present' if s['available'] else 'missing'}"
        + (f" ({s['reason']})" if s.get("reason") else "")
        for s in comp["manifest"]["sensors"]
    )
    return [
        ("Techniques applied (optimized side)", tech),
        *_fairness_block(comp),
        ("Methods", methods_text(comp)),
        ("Power model", model_txt),
        (
            "Carbon and cost",
            f"{c['g_per_kwh']} gCO2e/kWh ({c['intensity_source']}), "
            f"PUE {c['pue']}, price "
            f"{c['price_per_kwh'] if c['price_per_kwh'] is not None else '-'}"
            f" {c['currency']}/kWh",
        ),
        ("Sensors", sensors),
        (
            "Hardware",
            f"CPU {hw['cpu_model']} ({hw['logical_cpus']} logical), flags: {flags}"
            f"\nmemory {units.nbytes(hw['memory_bytes'])}; GPUs: {gpus}; driver "
            f"{hw['nvidia_driver'] or '-'}",
        ),
        ("Software", ", ".join(f"{k} {v}" for k, v in sw.items() if v)),
        (
            "Sampling",
            f"every {comp['sampling']['interval_s'] * 1000:.0f} ms, idle baseline "
            f"{comp['sampling']['idle_s']} s, cool-down {comp['cooldown_s']} s",
        ),
        (
            "Runs",
            ", ".join(
                f"{pr['side']} {pr['index'] + 1}: run {pr['run_id']}" for pr in comp["per_run"]
            ),
        ),
    ]
