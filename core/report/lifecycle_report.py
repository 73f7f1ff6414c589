"""A lifecycle comparison's own report pages and CSV, added to the comparison's report.

Page 1, the paper-style tables: every lifecycle figure with its paired 95% interval and verdict,
the energy by stage, and accuracy per epoch. Page 2, the charts: accuracy per epoch, energy by
stage, cumulative energy against queries served with the break-even marked, and the served
models' ROC curves for a binary classifier."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from wattlab.core.fileio import write_csv_atomic
from wattlab.core.report import A4, BASE_C, OPT_C
from wattlab.core.report import lifecycle_text as lt

CSV_NAME = "lifecycle.csv"
CSV_FIELDS = (
    "figure",
    "label",
    "unit",
    "baseline",
    "optimized",
    "change_pct",
    "ci_low_ratio",
    "ci_high_ratio",
    "verdict",
    "energy_source",
    "deploy_queries",
)


def write_csv(folder: Path, life: dict[str, Any]) -> Path:
    path = Path(folder) / CSV_NAME
    write_csv_atomic(path, CSV_FIELDS, ([r[f] for f in CSV_FIELDS] for r in lt.csv_rows(life)))
    return path


def lifecycle_pages(pdf: Any, life: dict[str, Any]) -> None:
    _tables_page(pdf, life)
    _charts_page(pdf, life)


def _table(
    fig: Any,
    rect: tuple[float, float, float, float],
    head: list[str],
    rows: Any,
    widths: list[float] | None = None,
) -> None:
    ax = fig.add_axes(rect)
    ax.axis("off")
    if not rows:
        return
    tbl = ax.table(
        cellText=rows, colLabels=head, loc="upper center", cellLoc="left", colWidths=widths
    )
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(7)
    tbl.scale(1, 1.25)


def _tables_page(pdf: Any, life: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=A4)
    fig.text(0.06, 0.955, "Lifecycle: train, convert, serve", fontsize=15, weight="bold")
    sub = (
        f"{life['pairs']} pair(s); energy {life.get('label') or 'of unknown source'}; totals at "
        f"{life['deploy_queries']:,} queries served. {life['headline']}"
    )
    for i, line in enumerate(textwrap.wrap(sub, 118)):
        fig.text(0.06, 0.93 - 0.016 * i, line, fontsize=7.5)
    rows = [[textwrap.shorten(c[0], 48), *c[1:]] for c in lt.table_rows(life)]
    _table(
        fig,
        (0.04, 0.56, 0.92, 0.3),
        lt.TABLE_HEAD,
        rows,
        [0.33, 0.12, 0.12, 0.2, 0.13, 0.1],
    )
    label = life.get("label") or "unknown"
    fig.text(0.06, 0.54, f"Energy by stage (median, {label})", fontsize=10, weight="bold")
    _table(
        fig,
        (0.04, 0.38, 0.92, 0.15),
        ["stage", "baseline energy", "time", "optimized energy", "time"],
        lt.stage_rows(life),
    )
    fig.text(0.06, 0.35, f"Accuracy per epoch (energy so far, {label})", fontsize=10, weight="bold")
    _table(
        fig,
        (0.04, 0.1, 0.92, 0.24),
        ["epoch", "baseline", "energy", "optimized", "energy"],
        lt.epoch_rows(life)[:14],
    )
    foot = f"Break-even: {life['break_even']['text']}. " + " ".join(life.get("notes") or [])
    for i, line in enumerate(textwrap.wrap(foot, 120)):
        fig.text(0.06, 0.07 - 0.014 * i, line, fontsize=7)
    pdf.savefig(fig)
    plt.close(fig)


def _charts_page(pdf: Any, life: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=A4)
    fig.subplots_adjust(hspace=0.4, wspace=0.32, top=0.93, bottom=0.3, left=0.1, right=0.96)
    fig.suptitle("Lifecycle charts", fontsize=13, weight="bold")
    _accuracy_panel(axes[0, 0], life)
    _stage_panel(axes[0, 1], life)
    _cumulative_panel(axes[1, 0], life)
    _roc_or_note(axes[1, 1], life)
    pdf.savefig(fig)
    plt.close(fig)


def _accuracy_panel(ax: Any, life: dict[str, Any]) -> None:
    for side, colour in (("baseline", BASE_C), ("optimized", OPT_C)):
        eps = life["epochs"][side]
        key = "accuracy" if any(e.get("accuracy") is not None for e in eps) else "perplexity"
        pts = [(e["epoch"], e[key]) for e in eps if e.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", color=colour, label=side)
            ax.set_ylabel(key)
    ax.set(title="Accuracy per epoch", xlabel="epoch")
    ax.legend(fontsize=7)


def _stage_panel(ax: Any, life: dict[str, Any]) -> None:
    """Stacked bars of each side's one-off stages (J)."""
    import numpy as np

    stages = ("prepare", "train", "convert")
    colours = ("#999999", "#4c72b0", "#55a868")
    x = np.arange(2)
    bottom = np.zeros(2)
    for stage, colour in zip(stages, colours, strict=True):
        vals = np.array(
            [life["stages"][s][stage]["energy_j"] or 0.0 for s in ("baseline", "optimized")]
        )
        ax.bar(x, vals, bottom=bottom, color=colour, label=lt.STAGE_NAMES[stage])
        bottom += vals
    ax.set_xticks(x, ["baseline", "optimized"])
    ax.set(title=f"One-off energy by stage ({life.get('label') or 'unknown'})", ylabel="J")
    ax.legend(fontsize=6)


def _cumulative_panel(ax: Any, life: dict[str, Any]) -> None:
    """Total energy against queries served, both sides, the break-even marked."""
    import numpy as np

    rows = {r["key"]: r for r in life["rows"]}
    one_off, per_q = rows.get("train_energy_j"), rows.get("serve_energy_per_query_j")
    be = life["break_even"]
    if not one_off or not per_q:
        ax.text(0.5, 0.5, "a stage's energy is unknown", ha="center", transform=ax.transAxes)
        return
    top = float(life["deploy_queries"])
    if be.get("queries"):
        top = max(top, 2.0 * float(be["queries"]))
    q = np.linspace(0, top, 200)
    for side, colour in (("baseline", BASE_C), ("optimized", OPT_C)):
        t, s = one_off[side], per_q[side]
        if t is not None and s is not None:
            ax.plot(q, (t + q * s) / 3.6e6, color=colour, label=side)
    if be.get("queries") and be["kind"] != "never":
        n = float(be["queries"])
        sure = be["kind"] != "undetermined"
        ax.axvline(n, color="#c44e52" if sure else "#bbbbbb", ls="--", lw=0.8)
        ax.annotate(
            f"break-even\n{n:,.0f}" + ("" if sure else "\n(undetermined)"),
            (n, ax.get_ylim()[1] * 0.85),
            fontsize=6.5,
            color="#c44e52" if sure else "#888888",
        )
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    ax.axvline(life["deploy_queries"], color="#777777", ls=":", lw=0.8)
    ax.set(title="Cumulative energy vs queries served", xlabel="queries", ylabel="kWh")
    ax.legend(fontsize=7)


def _roc_or_note(ax: Any, life: dict[str, Any]) -> None:
    import numpy as np

    roc = life.get("roc") or {}
    if not any(roc.values()):
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "ROC curves: binary classifiers only",
            ha="center",
            transform=ax.transAxes,
            fontsize=8,
            color="#666",
        )
        return
    for side, colour in (("baseline", BASE_C), ("optimized", OPT_C)):
        if roc.get(side):
            pts = np.array(roc[side])
            ax.plot(pts[:, 0], pts[:, 1], color=colour, label=side)
    ax.plot([0, 1], [0, 1], color="#aaaaaa", lw=0.6, ls="--")
    ax.set(title="ROC of the served models", xlabel="false positive rate", ylabel="TPR")
    ax.legend(fontsize=7)
