"""The RAG cache's figures as lines of text: one vocabulary for the CLI, the GUI's results
panel and the PDF, so the three never word (or label) a figure differently."""

from __future__ import annotations

from typing import Any

from wattlab.core.report import text as units


def fresh_search_text(ql: dict[str, Any]) -> str:
    """How often a hit's cached chunks equal what a fresh search returns, by kind of hit."""
    v = ql.get("verify") or {}
    pct = lambda x: "-" if x is None else f"{x:.0%}"  # noqa: E731
    return (
        f"exact hits {pct(v.get('exact_same_topk'))} same top-k; semantic hits "
        f"{pct(v.get('semantic_same_topk'))} same top-k, {pct(v.get('semantic_same_top1'))} "
        "same top chunk (the one the prompt gets)"
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def rag_lines(rag: dict, energy: dict | None = None) -> list[str]:
    """What each cache layer did in one run (or one side of a comparison)."""
    ql, pl, ix = rag["query_layer"], rag["prefix_layer"], rag["index"]
    out = [f"cache layers     {', '.join(rag['layers']) or 'none'}"]
    idx = (
        f"index            {ix['chunks']} chunks ({ix.get('index', '-')}), "
        f"{ix['embedded']} embedded, {ix['from_cache']} from the embedding cache"
    )
    if ix.get("energy_j") is not None:
        idx += f", {units.joules(ix['energy_j'])} [{ix.get('energy_label')}]"
    if ix.get("ann_recall_vs_exact") is not None:
        idx += f", recall vs exact search {ix['ann_recall_vs_exact']:.1%}"
    out.append(idx)
    if ql["on"]:
        out.append(
            f"query layer      hit rate {_pct(ql['hit_rate'])} ({ql['exact_hits']} exact, "
            f"{ql['semantic_hits']} semantic); on repeats/paraphrases "
            f"{_pct(ql['hit_rate_on_repeats'])}"
        )
        out.append(
            f"false hits       {ql['false_hits']} of {ql['hits']} hits; hard negatives "
            f"served another question's entry {ql['hard_negative_false_hits']} of "
            f"{ql['hard_negatives']} "
            f"({_pct(ql['false_hit_rate_on_hard_negatives'])}); guard blocked "
            f"{ql['guard_blocked']}"
        )
        out.append(f"vs fresh search  {fresh_search_text(ql)}")
    if pl["on"]:
        out.append(
            f"prefix layer     {pl['prefix_tokens']}-token prefix reused in {pl['generations']} "
            f"generations: {_pct(pl['prefill_saved'])} of prompt tokens not recomputed"
        )
    lat, tt = rag["latency_ms"], rag["ttft_ms"]
    out.append(
        f"latency p50      hits {_ms(lat['hits']['p50'])}, misses {_ms(lat['misses']['p50'])}; "
        f"time to first token p50 hits {_ms(tt['hits']['p50'])}, misses "
        f"{_ms(tt['misses']['p50'])}"
    )
    e = energy or rag.get("energy")
    if e:
        h, m = e["hit"], e["miss"]
        out.append(
            f"energy / query   hits {units.joules(h['energy_per_query_j'])}, misses "
            f"{units.joules(m['energy_per_query_j'])} [{e['label']}, {e['method']}]"
        )
    out.append(
        f"quality          retrieval recall@{rag['options']['top_k']} "
        f"{_pct(rag['retrieval_recall'])}, answer accuracy {_pct(rag['answer_accuracy'])}"
    )
    return out


def rag_comparison_lines(comp: dict) -> list[str]:
    """The cache's own figures for a comparison (CLI output and the GUI's results panel)."""
    rag = comp.get("rag") or {}
    opt = rag.get("optimized")
    out: list[str] = []
    if opt:
        ql = opt["query_layer"]
        out.append(
            f"cache layers {', '.join(opt['layers'])}; query-layer hit rate "
            f"{_pct(ql['hit_rate'])}; false-hit rate on hard negatives "
            f"{_pct(ql['false_hit_rate_on_hard_negatives'])} ({ql['hard_negative_false_hits']} of "
            f"{ql['hard_negatives']}); false hits {ql['false_hits']} of {ql['hits']}"
        )
        out.append(
            f"energy per query (median) hits {units.joules(opt['hit_energy_per_query_j'])}, "
            f"misses {units.joules(opt['miss_energy_per_query_j'])} [{opt['energy_label']}; "
            "attributed by time]"
        )
        out.append(
            f"TTFT p50 hits {_ms(opt['hit_ttft_p50_ms'])}, misses "
            f"{_ms(opt['miss_ttft_p50_ms'])}; prefix layer saved "
            f"{_pct(opt['prefix_layer']['prefill_saved'])} of prompt tokens"
        )
        idx = [f"{x['from_cache']}/{x['unique_chunks']}" for x in opt["index_per_run"]]
        out.append(f"embedding cache hits per run (chunks): {', '.join(idx)}")
        out.append(f"cached retrieval vs a fresh search: {fresh_search_text(ql)}")
        out.append(
            f"retrieval recall {_pct(opt['retrieval_recall'])}, answer accuracy "
            f"{_pct(opt['answer_accuracy'])} (medians)"
        )
    s = rag.get("saved_per_1000_queries")
    if s:
        out.append(
            f"energy saved per 1,000 queries: {units.joules(s['joules'])} "
            f"({s['verdict']}; {s['label']})"
        )
    return out
