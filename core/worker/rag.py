"""A RAG session inside the worker: index the corpus, answer a seeded query stream, report.

Phases: ``load`` -> ``prepare`` (the demo models train once if not cached) -> ``index`` (chunk and
embed the corpus; the embedding cache layer applies here) -> ``infer`` (the query stream: the
measured phase, so energy per query is energy of the stream / queries) -> ``verify`` (not
measured: each cache hit's retrieval is compared with a fresh search for the same query).

Each query's wall-clock interval is kept, so the parent can attribute the measured energy to
hits and misses from its own power samples (``rag/attribution.py``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from wattlab.core.paths import rag_embeddings_db
from wattlab.core.spec import RunSpec
from wattlab.core.worker import device as devmod
from wattlab.core.worker.events import CancelToken, Emitter


def _percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p95": None, "mean": None}
    a = np.array(xs) * 1000
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
    }


def _cache_params(spec: RunSpec, dev: Any) -> tuple[dict[str, Any] | None, list[Any]]:
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.compose import resolve
    from wattlab.core.worker.techniques.catalog import implementation

    chosen = resolve(spec.techniques, Target("rag", dev.type, "hf", "causal-lm"))
    applied = [implementation(t.name).apply(None, p) for t, p in chosen]
    for (t, p), a in zip(chosen, applied, strict=True):
        w = t.warning(Target("rag", dev.type, "hf"), p)
        if w:
            a.warnings.append(w)
    return (chosen[0][1] if chosen else None), applied


def _load_models(spec: RunSpec, opts: Any, dev: Any, emit: Emitter) -> tuple[Any, Any, str]:
    from wattlab.core.models.hf import load_hf_folder
    from wattlab.core.rag.encoder import Encoder
    from wattlab.core.worker import rag_demo as demo_models
    from wattlab.core.worker.rag_generator import GENERIC_PREFIX

    demo_folder = None
    if spec.model == "demo" or opts.encoder == "demo":
        emit.phase("prepare")
        demo_folder = demo_models.prepare(dev, emit.log)
    enc_folder = demo_folder / "encoder" if opts.encoder == "demo" else Path(opts.encoder)
    encoder = Encoder.from_folder(
        enc_folder, dev, name="demo-encoder" if opts.encoder == "demo" else None
    )
    gen_folder = demo_folder / "generator" if spec.model == "demo" else Path(spec.model)
    lm = load_hf_folder(gen_folder, "causal-lm")
    for note in lm.notes:
        emit.log(note)
    if spec.dataset == "demo":
        from wattlab.core.rag.demo_corpus import PROMPT_PREFIX

        prefix = PROMPT_PREFIX
    else:
        prefix = GENERIC_PREFIX
    return encoder, lm, prefix


def _queries(spec: RunSpec, opts: Any, chunks: list[Any]) -> list[Any]:
    from wattlab.core.rag import workload as wl

    if opts.queries_file:
        qs = wl.load_queries_file(Path(opts.queries_file))
        return qs[: opts.queries]
    if spec.dataset == "demo":
        from wattlab.core.worker.rag_demo import definition

        c = definition()["corpus"]
        intents = wl.demo_intents(c["towns"], c["seed"])
    else:
        intents = wl.corpus_intents(chunks, opts.queries, spec.seed)
    return wl.make_stream(
        intents,
        opts.queries,
        opts.repeat_rate,
        opts.paraphrase_share,
        opts.negative_rate,
        spec.seed,
    )


def _index(
    chunks: list[Any], encoder: Any, use_cache: bool, emit: Emitter
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed every chunk, reusing cached vectors when the embed layer is on."""
    from wattlab.core.rag.cache import EmbeddingCache

    t0 = time.perf_counter()
    hashes = [c.content_hash for c in chunks]
    cached: dict[str, np.ndarray] = {}
    store = None
    problem = None
    if use_cache:
        try:
            store = EmbeddingCache(rag_embeddings_db())
            cached = store.get_many(encoder.identity, hashes)
        except (OSError, sqlite3.Error) as exc:
            # The cache is an optimisation: without it the run embeds everything and says so.
            problem = f"the embedding cache cannot be used ({exc}); embedding every chunk"
            emit.log(problem)
            store, cached = None, {}
    todo = list(dict.fromkeys(h for h in hashes if h not in cached))
    text_of = {c.content_hash: c.text for c in chunks}
    fresh = encoder.embed([text_of[h] for h in todo]) if todo else np.zeros((0, encoder.dim))
    new = dict(zip(todo, fresh, strict=True))
    stats: dict[str, Any] = {
        "chunks": len(chunks),
        "unique_chunks": len(text_of),
        "embedded": len(todo),
        "from_cache": len(text_of) - len(todo),
        "layer_on": use_cache,
    }
    if problem:
        stats["write_error"] = problem
    if store is not None:
        if new:
            store.put_many(encoder.identity, new)
        if store.write_error:
            emit.log(store.write_error)
            stats["write_error"] = store.write_error
        stats["cache_file"] = str(store.path)
        store.close()
    vecs = np.stack([cached.get(h) if h in cached else new[h] for h in hashes])
    stats["hit_rate"] = stats["from_cache"] / stats["unique_chunks"] if use_cache else None
    stats["time_s"] = time.perf_counter() - t0
    return vecs.astype(np.float32), stats


def run_rag_session(spec: RunSpec, emit: Emitter, cancel: CancelToken) -> dict[str, Any]:
    from wattlab.core.rag.cache import QueryCache
    from wattlab.core.rag.corpus import chunk_documents, load_documents
    from wattlab.core.rag.index import build_index
    from wattlab.core.rag.options import RagOptions
    from wattlab.core.worker.rag_generator import Generator

    opts = RagOptions.from_dict(spec.rag)  # the caller has started the "load" phase
    dev = devmod.resolve(spec.device)
    emit.emit("device", **devmod.describe(dev))
    from wattlab.core.worker.train import seed_everything

    seed_everything(spec.seed)
    params, applied = _cache_params(spec, dev)
    layers = set(params["layers"]) if params else set()
    for a in applied:
        for w in a.warnings:
            emit.log(f"rag-cache: {w}")
    encoder, lm, prefix = _load_models(spec, opts, dev, emit)
    gen = Generator(lm.model, lm.tokenizer, dev, prefix, opts.max_new_tokens)
    if spec.dataset == "demo":
        from wattlab.core.worker.rag_demo import definition

        c = definition()["corpus"]
        docs = load_documents("demo", c["towns"], c["seed"])
    else:
        docs = load_documents(spec.dataset)
    chunks = chunk_documents(docs, opts.chunk_words, opts.chunk_overlap)
    queries = _queries(spec, opts, chunks)
    emit.log(
        f"corpus: {len(docs)} documents, {len(chunks)} chunks; {len(queries)} queries; "
        f"cache layers: {', '.join(sorted(layers)) or 'none'}"
    )

    emit.phase("index")
    vecs, index_stats = _index(chunks, encoder, "embed" in layers, emit)
    index = build_index(vecs, opts.index)
    index_stats["index"] = index.kind
    if index.kind != "exact":  # an approximate index reports what it misses, never hides it
        from wattlab.core.rag.index import recall_vs_exact

        sample = vecs[np.random.default_rng(0).choice(len(vecs), min(200, len(vecs)), False)]
        recall = recall_vs_exact(index, vecs, sample, opts.top_k)
        index_stats["ann_recall_vs_exact"] = recall
        emit.log(f"{index.kind}: recall@{opts.top_k} vs exact search {recall:.3f}")
    version = hashlib.sha256(
        (encoder.identity + "".join(c.content_hash for c in chunks)).encode()
    ).hexdigest()[:16]
    qcache = None
    if "query" in layers:
        qcache = QueryCache(params["threshold"], params["guard"], params["max_entries"])
        qcache.use_version(version)
    reuse_prefix = "prefix" in layers
    doc_of = [c.doc for c in chunks]

    devmod.reset_peak(dev)
    emit.phase("infer")
    log: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for i, q in enumerate(queries):
        if cancel.cancelled:
            break
        w0 = time.time()
        p0 = time.perf_counter()
        rec: dict[str, Any] = {"i": i, "kind": q.kind, "intent": q.intent, "hit": None}
        found = qcache.lookup_exact(q.text) if qcache is not None else None
        qvec = None
        if qcache is not None and not found.hit:
            qvec = encoder.embed([q.text])[0]
            found = qcache.lookup(q.text, qvec)
        elif qcache is None:
            qvec = encoder.embed([q.text])[0]
        value = qcache.value(found.entry) if found is not None and found.hit else None
        if found is not None:
            rec.update(
                hit=found.how,
                similarity=found.similarity,
                guard_blocked=found.guard_blocked,
            )
        if value is not None:
            top_ids = value["chunks"]
            rec["false_hit"] = value["intent"] != q.intent
        else:
            top, scores = index.search(qvec, opts.top_k)
            top_ids = [int(x) for x in top]
        answer = value.get("answer") if value is not None and params["answers"] else None
        if answer is None:
            ctx = [chunks[j].text for j in top_ids[: opts.context_chunks]]
            g = gen.generate(gen.rest_ids(ctx, q.text), reuse_prefix)
            answer = g.text
            rec.update(
                ttft_s=g.ttft_s,
                generated=g.new_tokens,
                prompt_tokens=g.prompt_tokens,
                prefilled=g.prefilled_tokens,
            )
        else:
            rec.update(generated=0, ttft_s=time.perf_counter() - p0)  # the answer is served
        if qcache is not None and value is None:
            qcache.put(q.text, qvec, {"chunks": top_ids, "answer": answer, "intent": q.intent})
        rec["latency_s"] = time.perf_counter() - p0
        rec["t0"], rec["t1"] = w0, time.time()
        rec["answer"] = answer
        rec["correct"] = (answer.lower() == q.answer.lower()) if q.answer else None
        rec["retrieved_gold"] = q.gold_doc in {doc_of[j] for j in top_ids} if q.gold_doc else None
        rec["chunks"] = top_ids
        log.append(rec)
        emit.step(batch=i + 1, batches=len(queries), items=i + 1)
    devmod.sync(dev)
    elapsed = time.perf_counter() - t_start
    if not log:  # stopped before the first answer: nothing to report, nothing lost
        return {"mode": "rag", "task": "rag", "items": 0, "tokens": 0, "cancelled": True}

    emit.phase("verify")
    verify = _verify_hits(log, queries, encoder, index, opts.top_k)
    out = _summary(
        spec,
        opts,
        layers,
        params,
        applied,
        log,
        elapsed,
        index_stats,
        verify,
        gen,
        encoder,
        lm,
        dev,
    )
    out["cancelled"] = len(log) < len(queries)
    return out


def _verify_hits(
    log: list[dict[str, Any]], queries: list[Any], encoder: Any, index: Any, k: int
) -> dict[str, Any]:
    """For every hit, is the cached retrieval what a fresh search would return now?"""
    hits = [r for r in log if r.get("hit")]
    out: dict[str, Any] = {"hits_checked": len(hits), "same_as_fresh": None}
    if not hits:
        return out
    vecs = encoder.embed([queries[r["i"]].text for r in hits])
    fresh = [[int(x) for x in index.search(v, k)[0]] for v in vecs]
    out["same_as_fresh"] = _rate(
        sum(f == r["chunks"] for f, r in zip(fresh, hits, strict=True)), len(hits)
    )
    # A paraphrase's own search may order the runners-up differently; what the prompt gets
    # (the top chunk) is the part that matters for the answer.
    for how in ("exact", "semantic"):
        pairs = [(f, r) for f, r in zip(fresh, hits, strict=True) if r["hit"] == how]
        out[f"{how}_same_topk"] = _rate(sum(f == r["chunks"] for f, r in pairs), len(pairs))
        out[f"{how}_same_top1"] = _rate(sum(f[:1] == r["chunks"][:1] for f, r in pairs), len(pairs))
    return out


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _summary(
    spec: RunSpec,
    opts: Any,
    layers: set[str],
    params: dict[str, Any] | None,
    applied: list[Any],
    log: list[dict[str, Any]],
    elapsed: float,
    index_stats: dict[str, Any],
    verify: dict[str, Any],
    gen: Any,
    encoder: Any,
    lm: Any,
    dev: Any,
) -> dict[str, Any]:
    n = len(log)
    hits = [r for r in log if r.get("hit")]
    misses = [r for r in log if not r.get("hit")]
    hard = [r for r in log if r["kind"] in ("negation", "entity-swap")]
    repeats = [r for r in log if r["kind"] in ("repeat", "paraphrase")]
    known = [r for r in log if r["correct"] is not None]
    gold = [r for r in log if r["retrieved_gold"] is not None]
    gens = [r for r in log if r.get("generated")]
    by_kind: dict[str, dict[str, Any]] = {}
    for r in log:
        k = by_kind.setdefault(r["kind"], {"queries": 0, "hits": 0})
        k["queries"] += 1
        k["hits"] += bool(r.get("hit"))
    prompt = sum(r.get("prompt_tokens", 0) for r in gens)
    prefilled = sum(r.get("prefilled", 0) for r in gens)
    rag = {
        "layers": sorted(layers),
        "params": params,
        "options": opts.to_dict(),
        "queries": n,
        "by_kind": by_kind,
        "index": index_stats,
        "query_layer": {
            "on": "query" in layers,
            "hits": len(hits),
            "exact_hits": sum(r["hit"] == "exact" for r in hits),
            "semantic_hits": sum(r["hit"] == "semantic" for r in hits),
            "hit_rate": _rate(len(hits), n) if "query" in layers else None,
            "hit_rate_on_repeats": _rate(sum(bool(r.get("hit")) for r in repeats), len(repeats)),
            "false_hits": sum(bool(r.get("false_hit")) for r in hits),
            "false_hit_rate_of_hits": _rate(sum(bool(r.get("false_hit")) for r in hits), len(hits)),
            "hard_negatives": len(hard),
            # A hard negative may hit its own earlier copy (the same negated question asked
            # twice): a true hit. It is a false hit when served another intent's entry.
            "hard_negative_hits": sum(bool(r.get("hit")) for r in hard),
            "hard_negative_false_hits": sum(bool(r.get("false_hit")) for r in hard),
            "false_hit_rate_on_hard_negatives": _rate(
                sum(bool(r.get("false_hit")) for r in hard), len(hard)
            )
            if "query" in layers
            else None,
            "guard_blocked": sum(bool(r.get("guard_blocked")) for r in log),
            "retrieval_same_as_fresh": verify["same_as_fresh"],
            "verify": verify,
        },
        "prefix_layer": {
            "on": "prefix" in layers,
            "prefix_tokens": len(gen.prefix_ids),
            "generations": len(gens),
            "prompt_tokens": prompt,
            "prefilled_tokens": prefilled,
            "prefill_saved": _rate(prompt - prefilled, prompt),
        },
        "latency_ms": {
            "hits": _percentiles([r["latency_s"] for r in hits]),
            "misses": _percentiles([r["latency_s"] for r in misses]),
        },
        "ttft_ms": {
            "hits": _percentiles([r["ttft_s"] for r in hits]),
            "misses": _percentiles([r["ttft_s"] for r in misses]),
            "all": _percentiles([r["ttft_s"] for r in log]),
        },
        "answer_accuracy": _rate(sum(r["correct"] for r in known), len(known)),
        "retrieval_recall": _rate(sum(r["retrieved_gold"] for r in gold), len(gold)),
        "query_log": [
            {
                k: r.get(k)
                for k in (
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
            }
            for r in log
        ],
    }
    lat = _percentiles([r["latency_s"] for r in log])
    tokens = sum(r.get("generated", 0) for r in log)
    metrics: dict[str, Any] = {}
    if rag["answer_accuracy"] is not None:
        metrics["accuracy"] = rag["answer_accuracy"]
    peak, how = devmod.peak_memory(dev)
    return {
        "mode": "rag",
        "task": "rag",
        "model": {
            "source": lm.source if spec.model != "demo" else "demo generator",
            "size_bytes": gen.size_bytes + encoder.size_bytes,
            "num_params": lm.num_params,
            "encoder": encoder.identity,
        },
        "dataset": {
            "source": spec.dataset,
            "chunks": index_stats["chunks"],
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
        **({"techniques": [a.as_dict() for a in applied]} if applied else {}),
        "rag": rag,
        "peak_mem_bytes": peak,
        "peak_mem_source": how,
    }
