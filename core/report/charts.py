"""The charts of a comparison (power over time with the measured window shaded, per-repeat
figures), drawn with matplotlib's Agg backend: one page for the PDF, or a PNG for the app."""

from __future__ import annotations

from typing import Any

import numpy as np

from wattlab.core.measure.series import total_power
from wattlab.core.report import A4, BASE_C, OPT_C
from wattlab.core.report import text as units
from wattlab.core.report.rag_text import fresh_search_text
from wattlab.core.results import Comparison


def _per_repeat(ax: Any, comp: dict[str, Any], key: str, title: str, ylabel: str) -> None:
    for side, colour in (("baseline", BASE_C), ("optimized", OPT_C)):
        runs = [pr for pr in comp["per_run"] if pr["side"] == side]
        ax.plot(
            [pr["index"] + 1 for pr in runs],
            [pr["metrics"].get(key) for pr in runs],
            "o-",
            color=colour,
            label=side,
        )
    ax.set(title=title, xlabel="repeat", ylabel=ylabel)
    ax.legend(fontsize=7)


SIDES = (("baseline", BASE_C), ("optimized", OPT_C))


def chart_page(
    pdf: Any | None,
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    samples: dict[int, list[Any]],
    phases: dict[int, list[tuple[float, str]]],
) -> Any:
    """Six panels of one comparison; saved into ``pdf``, or returned as a figure (app PNG)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=A4)
    fig.subplots_adjust(hspace=0.55, wspace=0.3, top=0.94, bottom=0.06, left=0.1, right=0.96)
    first = {
        side: next(pr for pr in comp["per_run"] if pr["side"] == side)
        for side in ("baseline", "optimized")
    }
    _power_panel(axes[0, 0], comp, first, samples, phases)
    _phase_energy_panel(axes[0, 1], first, results)
    # The noise the verdict is judged against: each repeat's figure.
    _per_repeat(axes[1, 0], comp, "energy_per_item_j", "Energy per item, each repeat", "J/item")
    _per_repeat(axes[1, 1], comp, "throughput_items_s", "Throughput, each repeat", "items/s")
    _quality_panel(axes[2, 0], comp)
    _technique_panel(axes[2, 1], comp)
    _style(axes)
    if pdf is None:
        return fig
    pdf.savefig(fig)
    plt.close(fig)
    return None


def _power_panel(
    ax: Any,
    comp: dict[str, Any],
    first: dict[str, dict[str, Any]],
    samples: dict[int, list[Any]],
    phases: dict[int, list[tuple[float, str]]],
) -> None:
    """Power over time, both sides aligned at the start of the measured phase, the window
    every per-item figure is computed over shaded."""
    measured = set(comp["measured_phases"])
    for side, colour in SIDES:
        rid = first[side]["run_id"]
        t, w = total_power(samples.get(rid, []))
        marks = phases.get(rid, [])
        start = next((pt for pt, name in marks if name in measured), None)
        if t.size and start is not None:
            ax.plot(t - start, w, color=colour, lw=0.9, label=side)
            end = next((pt for pt, n in marks if pt > start and n not in measured), None)
            if end is not None:
                ax.axvspan(0, end - start, color=colour, alpha=0.1, lw=0)
                ax.axvline(end - start, color=colour, lw=0.6, ls="--")
    ax.axvline(0, color="#888888", lw=0.6, ls="--")
    ax.set(
        title="Total power (repeat 1); shaded: measured window",
        xlabel="s from start of measured phase",
        ylabel="W",
    )
    ax.legend(fontsize=7)


def _phase_energy_panel(
    ax: Any, first: dict[str, dict[str, Any]], results: dict[int, dict[str, Any]]
) -> None:
    """Energy per phase, stacked: where the joules went besides the measured work."""
    import matplotlib.pyplot as plt

    energy = {s: results[first[s]["run_id"]]["energy"] for s in ("baseline", "optimized")}
    names = sorted({p for rows in energy.values() for e in rows for p in e["by_phase_j"]})
    bottoms = np.zeros(2)
    cmap = plt.get_cmap("tab10")
    for k, ph in enumerate(names):
        vals = np.array(
            [
                sum(e["by_phase_j"].get(ph, 0.0) for e in energy[s])
                for s in ("baseline", "optimized")
            ]
        )
        ax.bar(["baseline", "optimized"], vals, bottom=bottoms, label=ph, color=cmap(k % 10))
        bottoms += vals
    ax.set(title="Energy per phase (repeat 1)", ylabel="J")
    ax.legend(fontsize=6)


def _quality_panel(ax: Any, comp: dict[str, Any]) -> None:
    """Accuracy per epoch (training) or quality per repeat (inference)."""
    ep = comp.get("epochs") or {}
    if any(ep.values()):
        key = "perplexity"
        for side, colour in SIDES:
            rows = ep.get(side) or []
            key = "accuracy" if rows and "accuracy" in rows[0] else "perplexity"
            ax.plot(
                [r["epoch"] for r in rows],
                [r.get(key) for r in rows],
                "o-",
                color=colour,
                label=side,
            )
        ax.set(title=f"Eval {key} per epoch (repeat 1)", xlabel="epoch")
    else:
        key = (
            "accuracy"
            if any(pr["metrics"].get("accuracy") is not None for pr in comp["per_run"])
            else "perplexity"
        )
        _per_repeat(ax, comp, key, f"Eval {key}, each repeat", key)
    ax.legend(fontsize=7)


def _technique_panel(ax: Any, comp: dict[str, Any]) -> None:
    """The technique's own chart: RAG cache hits, exit layers, ROC, sparsity or agreement."""
    ep = comp.get("epochs") or {}
    roc = {s: (ep.get(s) or [{}])[-1].get("roc_points") for s in ("baseline", "optimized")}
    sparsity = next(
        (
            t["details"].get("per_layer")
            for t in comp.get("techniques") or []
            if t["details"].get("per_layer")
        ),
        None,
    )
    ee = comp.get("early_exit")
    rag_opt = (comp.get("rag") or {}).get("optimized")
    if rag_opt:
        _rag_hits_panel(ax, rag_opt)
    elif ee and ee.get("exit_histogram"):
        _exit_panel(ax, ee)
    elif any(roc.values()):
        _roc_panel(ax, roc)
    elif sparsity:
        ax.bar(range(len(sparsity)), list(sparsity.values()), color=OPT_C)
        ax.set(
            title="Sparsity per pruned layer", xlabel="layer #", ylabel="fraction zero", ylim=(0, 1)
        )
    elif comp.get("agreement"):
        ag = comp["agreement"]
        ax.bar(["agreement"], [ag["prediction_agreement"]], color=OPT_C)
        ax.set(
            ylim=(0, 1.05),
            title=f"Predictions unchanged vs baseline\n"
            f"(max |logit diff| {ag['max_abs_logit_diff']:.3f})",
        )
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no technique-specific chart", ha="center", fontsize=8)


def _rag_hits_panel(ax: Any, rag_opt: dict[str, Any]) -> None:
    kinds = rag_opt["by_kind"]
    ks = list(kinds)
    ax.bar(ks, [kinds[k]["hits"] / kinds[k]["queries"] for k in ks], color=OPT_C)
    ql = rag_opt["query_layer"]
    ax.set(
        ylim=(0, 1.05),
        ylabel="share served from the cache",
        title=f"Cache hits by query kind (optimized)\nfalse hits {ql['false_hits']} of "
        f"{ql['hits']}; hard negatives wrongly served {ql['hard_negative_false_hits']} of "
        f"{ql['hard_negatives']}",
    )
    ax.tick_params(axis="x", rotation=20)


def _exit_panel(ax: Any, ee: dict[str, Any]) -> None:
    hist = ee["exit_histogram"]
    ax.bar(range(1, len(hist) + 1), hist, color=OPT_C)
    ax.set_xticks(range(1, len(hist) + 1))  # layers are whole numbers
    ax.set(
        title=f"Exit layer (optimized, measured phase)\nmean {ee['mean_layers']:.2f} "
        f"of {ee['layers']} layers, theoretical speedup "
        f"{ee['theoretical_speedup']:.2f}x",
        xlabel="layer",
        ylabel="items",
    )


def _roc_panel(ax: Any, roc: dict[str, Any]) -> None:
    for side, colour in SIDES:
        if roc[side]:
            pts = np.array(roc[side])
            ax.plot(pts[:, 0], pts[:, 1], color=colour, label=side)
    ax.plot([0, 1], [0, 1], color="#aaaaaa", lw=0.6, ls="--")
    ax.set(title="ROC (last epoch)", xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(fontsize=7)


def _style(axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    for a in (axes[1, 0], axes[1, 1], axes[2, 0]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    for a in axes.flat:
        a.title.set_fontsize(9)
        a.tick_params(labelsize=7)
        a.xaxis.label.set_fontsize(7)
        a.yaxis.label.set_fontsize(7)


def load_run_data(comp: dict[str, Any], store: Any) -> tuple[dict, dict, dict]:
    """(results, samples, phases) of a comparison's runs, from the store."""
    ids = [pr["run_id"] for pr in comp["per_run"]]
    results = {i: store.result(i) for i in ids}
    samples = {i: store.samples(i) for i in ids}
    phases = {i: [(t, e["name"]) for t, k, e in store.events(i) if k == "phase"] for i in ids}
    return results, samples, phases


def chart_png(comp: dict[str, Any], store: Any, dpi: int = 80) -> bytes:
    """The report's chart page as a PNG, for the GUI's results view."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = chart_page(None, comp, *load_run_data(comp, store))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def rag_page(pdf: Any, comp: dict[str, Any]) -> None:
    """Hit rate per cache layer, false hits on the hard negatives, and what hits and misses
    cost, next to the baseline's energy per query."""
    import matplotlib.pyplot as plt

    rag = comp["rag"]
    opt = rag["optimized"]
    ql, pl = opt["query_layer"], opt["prefix_layer"]
    fig, axes = plt.subplots(2, 2, figsize=A4)
    fig.subplots_adjust(hspace=0.5, wspace=0.35, top=0.9, bottom=0.3, left=0.1, right=0.96)
    fig.suptitle("RAG retrieval cache: what each layer did (optimized side)", fontsize=12)
    idx = opt["index_per_run"]
    embed = [x["from_cache"] / x["unique_chunks"] for x in idx if x.get("layer_on")]
    rates = {
        "embed\n(chunks)": embed[-1] if embed else None,
        "query\n(queries)": ql["hit_rate"],
        "prefix\n(prompt tokens)": pl["prefill_saved"] if pl["on"] else None,
    }
    ax = axes[0, 0]
    names = list(rates)
    ax.bar(names, [v or 0 for v in rates.values()], color=OPT_C)
    for i, v in enumerate(rates.values()):
        ax.text(i, (v or 0) + 0.02, "off" if v is None else f"{v:.0%}", ha="center", fontsize=7)
    ax.set(ylim=(0, 1.1), title="Hit rate per layer (last run)", ylabel="share reused")
    ax = axes[0, 1]
    kinds = opt["by_kind"]
    ks = list(kinds)
    ax.bar(ks, [kinds[k]["hits"] / kinds[k]["queries"] for k in ks], color=OPT_C)
    ax.set(ylim=(0, 1.05), title="Query-layer hit rate by query kind", ylabel="share hit")
    ax.tick_params(axis="x", rotation=20)
    ax = axes[1, 0]
    e = Comparison.from_dict(comp).verdict("energy_per_item_j")
    bars = {
        "baseline\n(all)": e.baseline_median if e else None,
        "cached\n(all)": e.optimized_median if e else None,
        "cached\nhits": opt["hit_energy_per_query_j"],
        "cached\nmisses": opt["miss_energy_per_query_j"],
    }
    ax.bar(list(bars), [v or 0 for v in bars.values()], color=[BASE_C, OPT_C, OPT_C, OPT_C])
    ax.set(title=f"Energy per query, J [{opt['energy_label']}]", ylabel="J")
    ax = axes[1, 1]
    lat = {
        "hit\nlatency": opt["hit_latency_p50_ms"],
        "miss\nlatency": opt["miss_latency_p50_ms"],
        "hit\nTTFT": opt["hit_ttft_p50_ms"],
        "miss\nTTFT": opt["miss_ttft_p50_ms"],
    }
    ax.bar(list(lat), [v or 0 for v in lat.values()], color=OPT_C)
    for i, v in enumerate(lat.values()):
        ax.text(i, v or 0, "-" if v is None else f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set(title="Median latency and time to first token", ylabel="ms")
    for a in axes.flat:
        a.title.set_fontsize(9)
        a.tick_params(labelsize=7)
        a.yaxis.label.set_fontsize(7)
    lines = rag_page_lines(rag)
    import textwrap

    y = 0.25
    for line in lines:
        for part in textwrap.wrap(line, 100):
            fig.text(0.08, y, part, fontsize=7.5)
            y -= 0.018
    pdf.savefig(fig)
    plt.close(fig)


def rag_page_lines(rag: dict[str, Any]) -> list[str]:
    """The RAG page's text under its charts: what each cache layer did and saved."""
    opt = rag["optimized"]
    ql, pl, idx = opt["query_layer"], opt["prefix_layer"], opt["index_per_run"]
    saved = rag.get("saved_per_1000_queries")
    lines = [
        f"Query layer: {ql['hits']} hits ({ql['exact_hits']} exact, {ql['semantic_hits']} "
        f"semantic); false hits {ql['false_hits']}; hard negatives served another question's "
        f"entry: {ql['hard_negative_false_hits']} of {ql['hard_negatives']} hard negatives; "
        f"blocked by the guard {ql['guard_blocked']}.",
        "Cached retrieval vs a fresh search for the same query: " + fresh_search_text(ql),
        f"Prefix layer: {pl['prefix_tokens']}-token prefix; {pl['prefilled_tokens']} of "
        f"{pl['prompt_tokens']} prompt tokens prefilled.",
        "Embedding cache, chunks reused per run: "
        + ", ".join(f"{x['from_cache']}/{x['unique_chunks']}" for x in idx),
        "Quality (median): retrieval recall "
        + ("-" if opt["retrieval_recall"] is None else f"{opt['retrieval_recall']:.1%}")
        + ", answer accuracy "
        + ("-" if opt["answer_accuracy"] is None else f"{opt['answer_accuracy']:.1%}"),
        (
            f"Energy saved per 1,000 queries: {units.joules(saved['joules'])} "
            f"({saved['verdict']}; {saved['label']})."
            if saved
            else "Energy saved per 1,000 queries: -"
        ),
        f"Hit/miss energy: {opt['energy_method']}.",
    ]
    return lines
