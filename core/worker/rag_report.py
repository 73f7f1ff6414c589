"""A RAG session's result: the per-query log summed up by cache layer (hits, false hits, hard
negatives, prefill saved), latencies of hits and misses, answer accuracy and retrieval recall,
next to the fields every session reports (model, dataset, device, throughput, peak memory)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wattlab.core.models.loaded import LoadedModel
from wattlab.core.rag.options import RagOptions
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Applied
from wattlab.core.worker import device as devmod

# The query-log fields the result keeps per query (the parent attributes energy by t0/t1).
QUERY_LOG_FIELDS = (
    "i",
    "kind",
    "hit",
    "false_hit",
    "t0",
    "t1",
    "latency_s",
    "ttft_s",
    "generated",
    "correct",
    "answer",
)


@dataclass(frozen=True)
class CacheLayers:
    """The rag-cache technique as this session applies it: its parameters (None: no cache) and
    what applying it reported."""

    params: dict[str, Any] | None
    applied: list[Applied]

    @property
    def names(self) -> set[str]:
        return set(self.params["layers"]) if self.params else set()


@dataclass(frozen=True)
class RagModels:
    """The encoder that embeds chunks and queries, and the generator that answers (with the
    loaded causal LM it wraps)."""

    encoder: Any  # rag.encoder.Encoder
    lm: LoadedModel
    gen: Any  # worker.rag_generator.Generator


@dataclass(frozen=True)
class RagOutcome:
    """What the session measured and checked: one record per answered query, the query
    stream's duration, the index's statistics, and the verification of cache hits."""

    log: list[dict[str, Any]]
    elapsed_s: float
    index_stats: dict[str, Any]
    verify: dict[str, Any]


def rate(num: float, den: int) -> float | None:
    return num / den if den else None


def _percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "mean": None}
    a = np.array(xs) * 1000
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
    }


def _by_kind(log: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for r in log:
        k = by_kind.setdefault(r["kind"], {"queries": 0, "hits": 0})
        k["queries"] += 1
        k["hits"] += bool(r.get("hit"))
    return by_kind


def _query_layer(
    log: list[dict[str, Any]], layers: set[str], verify: dict[str, Any]
) -> dict[str, Any]:
    """Hits of the query layer, and the ones that must not happen: false hits, above all on
    hard negatives (negations and entity swaps of an earlier question)."""
    on = "query" in layers
    hits = [r for r in log if r.get("hit")]
    hard = [r for r in log if r["kind"] in ("negation", "entity-swap")]
    repeats = [r for r in log if r["kind"] in ("repeat", "paraphrase")]
    false_hits = sum(bool(r.get("false_hit")) for r in hits)
    hard_false_hits = sum(bool(r.get("false_hit")) for r in hard)
    return {
        "on": on,
        "hits": len(hits),
        "exact_hits": sum(r["hit"] == "exact" for r in hits),
        "semantic_hits": sum(r["hit"] == "semantic" for r in hits),
        "hit_rate": rate(len(hits), len(log)) if on else None,
        "hit_rate_on_repeats": rate(sum(bool(r.get("hit")) for r in repeats), len(repeats)),
        "false_hits": false_hits,
        "false_hit_rate_of_hits": rate(false_hits, len(hits)),
        "hard_negatives": len(hard),
        # A hard negative may hit its own earlier copy (the same negated question asked
        # twice): a true hit. It is a false hit when served another intent's entry.
        "hard_negative_hits": sum(bool(r.get("hit")) for r in hard),
        "hard_negative_false_hits": hard_false_hits,
        "false_hit_rate_on_hard_negatives": rate(hard_false_hits, len(hard)) if on else None,
        "guard_blocked": sum(bool(r.get("guard_blocked")) for r in log),
        "retrieval_same_as_fresh": verify["same_as_fresh"],
        "verify": verify,
    }


def _prefix_layer(log: list[dict[str, Any]], layers: set[str], gen: Any) -> dict[str, Any]:
    """How much of the generated answers' prompts the prefix KV cache spared the model."""
    gens = [r for r in log if r.get("generated")]
    prompt = sum(r.get("prompt_tokens", 0) for r in gens)
    prefilled = sum(r.get("prefilled", 0) for r in gens)
    return {
        "on": "prefix" in layers,
        "prefix_tokens": len(gen.prefix_ids),
        "generations": len(gens),
        "prompt_tokens": prompt,
        "prefilled_tokens": prefilled,
        "prefill_saved": rate(prompt - prefilled, prompt),
    }


def _rag_block(
    opts: RagOptions, cache: CacheLayers, outcome: RagOutcome, gen: Any
) -> dict[str, Any]:
    """The result's ``rag`` entry: everything specific to retrieval and its caches."""
    log = outcome.log
    layers = cache.names
    hits = [r for r in log if r.get("hit")]
    misses = [r for r in log if not r.get("hit")]
    known = [r for r in log if r["correct"] is not None]
    gold = [r for r in log if r["retrieved_gold"] is not None]
    return {
        "layers": sorted(layers),
        "params": cache.params,
        "options": opts.to_dict(),
        "queries": len(log),
        "by_kind": _by_kind(log),
        "index": outcome.index_stats,
        "query_layer": _query_layer(log, layers, outcome.verify),
        "prefix_layer": _prefix_layer(log, layers, gen),
        "latency_ms": {
            "hits": _percentiles([r["latency_s"] for r in hits]),
            "misses": _percentiles([r["latency_s"] for r in misses]),
        },
        "ttft_ms": {
            "hits": _percentiles([r["ttft_s"] for r in hits]),
            "misses": _percentiles([r["ttft_s"] for r in misses]),
            "all": _percentiles([r["ttft_s"] for r in log]),
        },
        "answer_accuracy": rate(sum(r["correct"] for r in known), len(known)),
        "retrieval_recall": rate(sum(r["retrieved_gold"] for r in gold), len(gold)),
        "query_log": [{k: r.get(k) for k in QUERY_LOG_FIELDS} for r in log],
    }


def rag_result(
    spec: RunSpec,
    opts: RagOptions,
    cache: CacheLayers,
    models: RagModels,
    outcome: RagOutcome,
    dev: Any,
) -> dict[str, Any]:
    """The session's result, shaped like every other session's plus its ``rag`` entry."""
    rag = _rag_block(opts, cache, outcome, models.gen)
    log, elapsed = outcome.log, outcome.elapsed_s
    n = len(log)
    lat = _percentiles([r["latency_s"] for r in log])
    tokens = sum(r.get("generated", 0) for r in log)
    metrics: dict[str, Any] = {}
    if rag["answer_accuracy"] is not None:
        metrics["accuracy"] = rag["answer_accuracy"]
    peak, how = devmod.peak_memory(dev)
    lm, encoder = models.lm, models.encoder
    return {
        "mode": "rag",
        "task": "rag",
        "model": {
            "source": lm.source if spec.model != "demo" else "demo generator",
            "size_bytes": models.gen.size_bytes + encoder.size_bytes,
            "num_params": lm.num_params,
            "encoder": encoder.identity,
        },
        "dataset": {
            "source": spec.dataset,
            "chunks": outcome.index_stats["chunks"],
            "queries": n,
        },
        "device": devmod.describe(dev),
        "items": n,
        "tokens": tokens,
        "metrics": metrics,
        "latency_ms": {"p50": lat["p50"], "p95": lat["p95"]},
        "throughput": {
            "items_per_s": n / elapsed if elapsed > 0 else None,
            "tokens_per_s": tokens / elapsed if elapsed > 0 else None,
        },
        **({"techniques": [a.as_dict() for a in cache.applied]} if cache.applied else {}),
        "rag": rag,
        "peak_mem_bytes": peak,
        "peak_mem_source": how,
    }
