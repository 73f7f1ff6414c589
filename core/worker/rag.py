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
from wattlab.core.rag.cache import Lookup, QueryCache
from wattlab.core.rag.index import Index
from wattlab.core.rag.options import RagOptions
from wattlab.core.rag.workload import Query
from wattlab.core.spec import RunSpec
from wattlab.core.worker import device as devmod
from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.rag_report import (
    CacheLayers,
    RagModels,
    RagOutcome,
    rag_result,
    rate,
)


def _cache_layers(spec: RunSpec, dev: Any, emit: Emitter) -> CacheLayers:
    """The rag-cache technique's parameters (None without it) and what applying it said; its
    warnings are logged."""
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.compose import resolve
    from wattlab.core.worker.techniques.catalog import implementation

    chosen = resolve(spec.techniques, Target("rag", dev.type, "hf", "causal-lm"))
    applied = [implementation(t.name).apply(None, p) for t, p in chosen]
    for (t, p), a in zip(chosen, applied, strict=True):
        w = t.warning(Target("rag", dev.type, "hf"), p)
        if w:
            a.warnings.append(w)
    for a in applied:
        for w in a.warnings:
            emit.log(f"rag-cache: {w}")
    return CacheLayers(chosen[0][1] if chosen else None, applied)


def _demo_part(folder: Path | None, part: str) -> Path:
    assert folder is not None, "the demo models are prepared whenever a demo part is asked for"
    return folder / part


def _load_models(spec: RunSpec, opts: RagOptions, dev: Any, emit: Emitter) -> tuple[Any, Any, str]:
    from wattlab.core.models.hf import load_hf_folder
    from wattlab.core.rag.encoder import Encoder
    from wattlab.core.worker import rag_demo as demo_models
    from wattlab.core.worker.rag_generator import GENERIC_PREFIX

    demo_folder: Path | None = None
    if spec.model == "demo" or opts.encoder == "demo":
        emit.phase("prepare")
        demo_folder = demo_models.prepare(dev, emit.log)
    enc_folder = (
        _demo_part(demo_folder, "encoder") if opts.encoder == "demo" else Path(opts.encoder)
    )
    encoder = Encoder.from_folder(
        enc_folder, dev, name="demo-encoder" if opts.encoder == "demo" else None
    )
    gen_folder = _demo_part(demo_folder, "generator") if spec.model == "demo" else Path(spec.model)
    lm = load_hf_folder(gen_folder, "causal-lm")
    for note in lm.notes:
        emit.log(note)
    if spec.dataset == "demo":
        from wattlab.core.rag.demo_corpus import PROMPT_PREFIX

        prefix = PROMPT_PREFIX
    else:
        prefix = GENERIC_PREFIX
    return encoder, lm, prefix


def _queries(spec: RunSpec, opts: RagOptions, chunks: list[Any]) -> list[Query]:
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
    vecs = np.stack([cached[h] if h in cached else new[h] for h in hashes])
    stats["hit_rate"] = stats["from_cache"] / stats["unique_chunks"] if use_cache else None
    stats["time_s"] = time.perf_counter() - t0
    return vecs.astype(np.float32), stats


def _documents(spec: RunSpec) -> list[tuple[str, str]]:
    from wattlab.core.rag.corpus import load_documents

    if spec.dataset == "demo":
        from wattlab.core.worker.rag_demo import definition

        c = definition()["corpus"]
        return load_documents("demo", c["towns"], c["seed"])
    return load_documents(spec.dataset)


def _searchable_index(
    chunks: list[Any], encoder: Any, opts: RagOptions, embed_cache: bool, emit: Emitter
) -> tuple[Index, dict[str, Any]]:
    """Embed the chunks and index them; an approximate index reports what it misses against
    exact search, never hides it."""
    from wattlab.core.rag.index import build_index

    vecs, index_stats = _index(chunks, encoder, embed_cache, emit)
    index = build_index(vecs, opts.index)
    index_stats["index"] = index.kind
    if index.kind != "exact":
        from wattlab.core.rag.index import recall_vs_exact

        sample = vecs[np.random.default_rng(0).choice(len(vecs), min(200, len(vecs)), False)]
        recall = recall_vs_exact(index, vecs, sample, opts.top_k)
        index_stats["ann_recall_vs_exact"] = recall
        emit.log(f"{index.kind}: recall@{opts.top_k} vs exact search {recall:.3f}")
    return index, index_stats


def _query_cache(cache: CacheLayers, encoder: Any, chunks: list[Any]) -> QueryCache | None:
    """The query layer's cache, bound to this encoder and corpus (None when the layer is off)."""
    if "query" not in cache.names:
        return None
    params = cache.params
    assert params is not None, "a layer is on only when the technique has parameters"
    version = hashlib.sha256(
        (encoder.identity + "".join(c.content_hash for c in chunks)).encode()
    ).hexdigest()[:16]
    qcache = QueryCache(params["threshold"], params["guard"], params["max_entries"])
    qcache.use_version(version)
    return qcache


class _Answerer:
    """Answers one query: the query cache first (exact, then semantic), else a search of the
    index; then the cached answer when the cache serves answers, else the generator."""

    def __init__(
        self,
        chunks: list[Any],
        models: RagModels,
        index: Index,
        qcache: QueryCache | None,
        opts: RagOptions,
        cache: CacheLayers,
    ) -> None:
        self.chunks = chunks
        self.doc_of = [c.doc for c in chunks]
        self.encoder, self.gen = models.encoder, models.gen
        self.index, self.qcache, self.opts = index, qcache, opts
        self.reuse_prefix = "prefix" in cache.names
        self.serve_answers = bool(cache.params and cache.params["answers"])

    def _lookup(self, q: Query) -> tuple[Lookup | None, np.ndarray | None]:
        """The cache's verdict (None without a query cache) and the query's embedding (None
        when an exact hit made embedding unnecessary)."""
        if self.qcache is None:
            return None, self.encoder.embed([q.text])[0]
        found = self.qcache.lookup_exact(q.text)
        if found.hit:
            return found, None
        qvec = self.encoder.embed([q.text])[0]
        return self.qcache.lookup(q.text, qvec), qvec

    def _cached_value(self, found: Lookup | None) -> dict[str, Any] | None:
        if found is None or not found.hit:
            return None
        assert self.qcache is not None and found.entry is not None, "a hit names its entry"
        return self.qcache.value(found.entry)

    def answer(self, i: int, q: Query) -> dict[str, Any]:
        """The query's record: cache verdict, chunks, answer, timings (wall clock for the
        parent's energy attribution) and whether answer and retrieval were right."""
        w0 = time.time()
        p0 = time.perf_counter()
        rec: dict[str, Any] = {"i": i, "kind": q.kind, "intent": q.intent, "hit": None}
        found, qvec = self._lookup(q)
        value = self._cached_value(found)
        if found is not None:
            rec.update(
                hit=found.how, similarity=found.similarity, guard_blocked=found.guard_blocked
            )
        if value is not None:
            top_ids = value["chunks"]
            rec["false_hit"] = value["intent"] != q.intent
        else:
            assert qvec is not None, "a query the cache did not serve has been embedded"
            top, _ = self.index.search(qvec, self.opts.top_k)
            top_ids = [int(x) for x in top]
        answer = value.get("answer") if value is not None and self.serve_answers else None
        if answer is None:
            answer = self._generate(q, top_ids, rec)
        else:
            rec.update(generated=0, ttft_s=time.perf_counter() - p0)  # the answer is served
        if self.qcache is not None and value is None:
            assert qvec is not None, "a query the cache did not serve has been embedded"
            self.qcache.put(q.text, qvec, {"chunks": top_ids, "answer": answer, "intent": q.intent})
        rec["latency_s"] = time.perf_counter() - p0
        rec["t0"], rec["t1"] = w0, time.time()
        rec["answer"] = answer
        rec["correct"] = (answer.lower() == q.answer.lower()) if q.answer else None
        rec["retrieved_gold"] = (
            q.gold_doc in {self.doc_of[j] for j in top_ids} if q.gold_doc else None
        )
        rec["chunks"] = top_ids
        return rec

    def _generate(self, q: Query, top_ids: list[int], rec: dict[str, Any]) -> str:
        ctx = [self.chunks[j].text for j in top_ids[: self.opts.context_chunks]]
        g = self.gen.generate(self.gen.rest_ids(ctx, q.text), self.reuse_prefix)
        rec.update(
            ttft_s=g.ttft_s,
            generated=g.new_tokens,
            prompt_tokens=g.prompt_tokens,
            prefilled=g.prefilled_tokens,
        )
        return str(g.text)


def _answer_stream(
    answerer: _Answerer, queries: list[Query], dev: Any, emit: Emitter, cancel: CancelToken
) -> tuple[list[dict[str, Any]], float]:
    """The measured phase: every query in order until done or cancelled; (records, seconds)."""
    log: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for i, q in enumerate(queries):
        if cancel.cancelled:
            break
        log.append(answerer.answer(i, q))
        emit.step(batch=i + 1, batches=len(queries), items=i + 1)
    devmod.sync(dev)
    return log, time.perf_counter() - t_start


def _start(spec: RunSpec, emit: Emitter) -> tuple[RagOptions, Any]:
    """The RAG options and the device, announced; every random generator seeded."""
    from wattlab.core.worker.train import seed_everything

    opts = RagOptions.from_dict(spec.rag)  # the caller has started the "load" phase
    dev = devmod.resolve(spec.device)
    emit.emit("device", **devmod.describe(dev))
    seed_everything(spec.seed)
    return opts, dev


def run_rag_session(spec: RunSpec, emit: Emitter, cancel: CancelToken) -> dict[str, Any]:
    from wattlab.core.rag.corpus import chunk_documents
    from wattlab.core.worker.rag_generator import Generator

    opts, dev = _start(spec, emit)
    cache = _cache_layers(spec, dev, emit)
    encoder, lm, prefix = _load_models(spec, opts, dev, emit)
    models = RagModels(
        encoder, lm, Generator(lm.model, lm.tokenizer, dev, prefix, opts.max_new_tokens)
    )
    docs = _documents(spec)
    chunks = chunk_documents(docs, opts.chunk_words, opts.chunk_overlap)
    queries = _queries(spec, opts, chunks)
    emit.log(
        f"corpus: {len(docs)} documents, {len(chunks)} chunks; {len(queries)} queries; "
        f"cache layers: {', '.join(sorted(cache.names)) or 'none'}"
    )

    emit.phase("index")
    index, index_stats = _searchable_index(chunks, encoder, opts, "embed" in cache.names, emit)
    answerer = _Answerer(chunks, models, index, _query_cache(cache, encoder, chunks), opts, cache)

    devmod.reset_peak(dev)
    emit.phase("infer")
    log, elapsed = _answer_stream(answerer, queries, dev, emit, cancel)
    if not log:  # stopped before the first answer: nothing to report, nothing lost
        return {"mode": "rag", "task": "rag", "items": 0, "tokens": 0, "cancelled": True}

    emit.phase("verify")
    verify = _verify_hits(log, queries, encoder, index, opts.top_k)
    out = rag_result(spec, opts, cache, models, RagOutcome(log, elapsed, index_stats, verify), dev)
    out["cancelled"] = len(log) < len(queries)
    return out


def _verify_hits(
    log: list[dict[str, Any]], queries: list[Query], encoder: Any, index: Index, k: int
) -> dict[str, Any]:
    """For every hit, is the cached retrieval what a fresh search would return now?"""
    hits = [r for r in log if r.get("hit")]
    out: dict[str, Any] = {"hits_checked": len(hits), "same_as_fresh": None}
    if not hits:
        return out
    vecs = encoder.embed([queries[r["i"]].text for r in hits])
    fresh = [[int(x) for x in index.search(v, k)[0]] for v in vecs]
    out["same_as_fresh"] = rate(
        sum(f == r["chunks"] for f, r in zip(fresh, hits, strict=True)), len(hits)
    )
    # A paraphrase's own search may order the runners-up differently; what the prompt gets
    # (the top chunk) is the part that matters for the answer.
    for how in ("exact", "semantic"):
        pairs = [(f, r) for f, r in zip(fresh, hits, strict=True) if r["hit"] == how]
        out[f"{how}_same_topk"] = rate(sum(f == r["chunks"] for f, r in pairs), len(pairs))
        out[f"{how}_same_top1"] = rate(sum(f[:1] == r["chunks"][:1] for f, r in pairs), len(pairs))
    return out
