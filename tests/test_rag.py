"""The RAG pipeline and its cache layers: corpus, workload, caches, invalidation, generator prefix
reuse, energy attribution, and a session end to end through the worker and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import tiny_models as tm

TINY_RAG = {
    "corpus": {"towns": 24, "seed": 7, "chunk_words": 80, "chunk_overlap": 16},
    "encoder": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "generator": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 320},
    "recipe": {
        "encoder_steps": 20,
        "encoder_batch": 16,
        "encoder_lr": 0.003,
        "temperature": 0.05,
        "generator_steps": 5,
        "generator_batch": 4,
        "generator_lr": 0.003,
        "seed": 0,
    },
}


@pytest.fixture
def tiny_rag_demo(tmp_path, monkeypatch):
    p = tmp_path / "rag_demo.json"
    p.write_text(json.dumps(TINY_RAG))
    monkeypatch.setenv("WATTLAB_RAG_DEMO_DEFINITION", str(p))
    return p


# -- corpus ----------------------------------------------------------------------------------------
def test_folder_corpus_reads_txt_and_md_and_chunks_with_overlap(tmp_path):
    from wattlab.core.rag.corpus import chunk_documents, load_documents

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text(" ".join(f"w{i}" for i in range(25)))
    (tmp_path / "sub" / "b.md").write_text("hello world")
    (tmp_path / "skip.csv").write_text("x,y")
    docs = load_documents(str(tmp_path))
    assert [d for d, _ in docs] == ["a.txt", "sub/b.md"]
    chunks = chunk_documents(docs, 10, 2)
    a = [c for c in chunks if c.doc == "a.txt"]
    assert [c.text.split()[0] for c in a] == ["w0", "w8", "w16"]
    assert a[0].text.split()[-2:] == a[1].text.split()[:2]  # the overlap
    assert len({c.content_hash for c in chunks}) == len(chunks)
    assert chunk_documents(docs, 10, 2) == chunks  # deterministic ids and hashes


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p / "missing", "corpus not found"),
        (lambda p: (p / "e").mkdir() or p / "e", "holds no .txt or .md files"),
        (
            lambda p: (p / "x.jsonl").write_text('{"text": "ok"}\n{bad\n') and p / "x.jsonl",
            "line 2",
        ),
        (
            lambda p: (p / "y.jsonl").write_text('{"title": "t"}\n') and p / "y.jsonl",
            "no text field",
        ),
        (lambda p: (p / "z.pdf").write_text("x") and p / "z.pdf", "unsupported corpus"),
    ],
)
def test_bad_corpus_is_a_specific_error(tmp_path, make, needle):
    from wattlab.core.errors import DataError
    from wattlab.core.rag.corpus import load_documents

    with pytest.raises(DataError, match=needle):
        load_documents(str(make(tmp_path)))


def test_non_utf8_corpus_file_names_the_file(tmp_path):
    from wattlab.core.errors import DataError
    from wattlab.core.rag.corpus import load_documents

    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match="bad.txt is not UTF-8"):
        load_documents(str(tmp_path))


# -- workload --------------------------------------------------------------------------------------
def test_stream_is_seeded_and_keeps_its_rates():
    from wattlab.core.rag.workload import demo_intents, make_stream

    intents = demo_intents(240, 7)
    s = make_stream(intents, 2000, 0.5, 0.5, 0.1, seed=3)
    assert s == make_stream(intents, 2000, 0.5, 0.5, 0.1, seed=3)
    kinds = [q.kind for q in s]
    rep = sum(k in ("repeat", "paraphrase") for k in kinds) / len(s)
    neg = sum(k in ("negation", "entity-swap") for k in kinds) / len(s)
    assert 0.46 < rep < 0.54 and 0.07 < neg < 0.13
    for q in s:
        if q.kind == "repeat":
            assert q.text == s[q.twin].text and q.intent == s[q.twin].intent
        elif q.kind == "paraphrase":
            assert q.text != s[q.twin].text and q.intent == s[q.twin].intent
        elif q.kind == "negation":
            assert " not " in q.text and q.intent != s[q.twin].intent
        elif q.kind == "entity-swap":
            assert q.intent != s[q.twin].intent and q.answer is not None


def test_stream_says_when_the_corpus_has_too_few_questions():
    from wattlab.core.errors import DataError
    from wattlab.core.rag.workload import demo_intents, make_stream

    with pytest.raises(DataError, match="too few"):
        make_stream(demo_intents(2, 7), 50, 0.0, 0.5, 0.0, seed=0)


# -- query cache -----------------------------------------------------------------------------------
def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_negated_query_does_not_hit_its_positive_twin_even_at_similarity_one():
    from wattlab.core.rag.cache import QueryCache

    v = _unit([1, 2, 3])
    c = QueryCache(threshold=0.9)
    c.put("Which river flows through Varholm?", v, {"answer": "Ostra"})
    neg = c.lookup("Which river does not flow through Varholm?", v)
    assert not neg.hit and neg.guard_blocked and neg.similarity == pytest.approx(1.0)
    swap = c.lookup("Which river flows through Varbrook?", v)
    assert not swap.hit and swap.guard_blocked
    para = c.lookup("What river runs through Varholm?", v)
    assert para.hit and para.how == "semantic"
    # Without the guard the same lookups hit: the guard is what stops them.
    c2 = QueryCache(threshold=0.9, guard=False)
    c2.put("Which river flows through Varholm?", v, {"answer": "Ostra"})
    assert c2.lookup("Which river does not flow through Varholm?", v).hit


def test_query_cache_threshold_exact_hits_lru_and_version():
    from wattlab.core.rag.cache import QueryCache

    c = QueryCache(threshold=0.95, max_entries=2)
    a, b = _unit([1, 0, 0]), _unit([0, 1, 0])
    c.put("Who is the mayor of Elmgate?", a, {"answer": "x"})
    assert c.lookup_exact("who is  the MAYOR of elmgate?").how == "exact"
    assert not c.lookup("Who leads Elmgate?", _unit([1, 1, 0])).hit  # cosine 0.71 < 0.95
    c.put("q2", b, {})
    c.lookup_exact("Who is the mayor of Elmgate?")  # touch: q2 is now least recently used
    c.put("q3", _unit([0, 0, 1]), {})
    assert len(c) == 2 and not c.lookup_exact("q2").hit and c.lookup_exact("q3").hit
    assert c.use_version("v1") is False and len(c) == 2
    assert c.use_version("v2") is True and len(c) == 0


# -- embedding cache and invalidation ------------------------------------------------------------
def test_embedding_cache_keys_on_model_and_content(tmp_path):
    from wattlab.core.rag.cache import EmbeddingCache

    c = EmbeddingCache(tmp_path / "e.sqlite")
    c.put_many("m1", {"h1": np.ones(4, np.float32), "h2": np.zeros(4, np.float32)})
    got = c.get_many("m1", ["h1", "h2", "h3"])
    assert set(got) == {"h1", "h2"} and np.array_equal(got["h1"], np.ones(4))
    assert c.get_many("m2", ["h1"]) == {}  # another model never sees m1's vectors
    c.close()
    assert EmbeddingCache(tmp_path / "e.sqlite").count("m1") == 2  # persisted


def test_changed_corpus_file_reembeds_only_its_chunks_and_never_serves_stale(tmp_path):
    import torch

    from wattlab.core.rag.corpus import chunk_documents, load_documents
    from wattlab.core.rag.encoder import Encoder
    from wattlab.core.worker.events import Emitter
    from wattlab.core.worker.rag import _index

    enc = Encoder.from_folder(tm.bert_encoder(tmp_path / "enc"), torch.device("cpu"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"d{i}.txt").write_text(" ".join(t for t, _ in tm.sentences(3, seed=i)))
    emit = Emitter(open(os.devnull, "w"))

    def index():
        chunks = chunk_documents(load_documents(str(corpus)), 80, 16)
        return chunks, *_index(chunks, enc, True, emit)

    _, v1, s1 = index()
    assert s1["embedded"] == 4 and s1["from_cache"] == 0
    _, v2, s2 = index()
    assert s2["embedded"] == 0 and s2["from_cache"] == 4 and np.array_equal(v1, v2)
    (corpus / "d2.txt").write_text("the service was really awful")
    chunks, v3, s3 = index()
    assert s3["embedded"] == 1 and s3["from_cache"] == 3
    fresh = enc.embed([c.text for c in chunks])
    np.testing.assert_allclose(v3, fresh, atol=1e-5)  # the edited file got a new vector


def test_encoder_identity_changes_with_its_weights(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from wattlab.core.rag.encoder import Encoder

    f = tm.bert_encoder(tmp_path / "enc")
    a = Encoder.from_folder(f, torch.device("cpu")).identity
    sd = load_file(f / "model.safetensors")
    k = next(iter(sd))
    sd[k] = sd[k] + 1
    save_file(sd, f / "model.safetensors", metadata={"format": "pt"})
    assert Encoder.from_folder(f, torch.device("cpu")).identity != a


def test_a_causal_lm_is_refused_as_encoder(tmp_path):
    import torch

    from wattlab.core.errors import ModelError
    from wattlab.core.rag.encoder import Encoder

    with pytest.raises(ModelError, match="is a causal language model"):
        Encoder.from_folder(tm.gpt2(tmp_path / "g"), torch.device("cpu"))


# -- index -----------------------------------------------------------------------------------------
def test_exact_index_returns_the_best_rows_in_order():
    from wattlab.core.rag.index import build_index

    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    idx = build_index(v, "exact")
    top, scores = idx.search(v[42], 5)
    assert top[0] == 42 and scores[0] == pytest.approx(1.0)
    assert list(top) == list(np.argsort(-(v @ v[42]))[:5])


def test_faiss_index_recall_against_exact():
    pytest.importorskip("faiss")
    from wattlab.core.rag.index import build_index, recall_vs_exact

    rng = np.random.default_rng(1)
    v = rng.normal(size=(3000, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    idx = build_index(v, "faiss")
    assert idx.kind == "faiss-hnsw"
    assert recall_vs_exact(idx, v, v[:50], 5) > 0.9


# -- generator -------------------------------------------------------------------------------------
def test_prefix_reuse_gives_the_same_answer_with_less_prefill(tmp_path):
    import torch

    from wattlab.core.models.hf import load_hf_folder
    from wattlab.core.worker.rag_generator import Generator

    lm = load_hf_folder(tm.gpt2(tmp_path / "g"), "causal-lm")
    gen = Generator(lm.model, lm.tokenizer, torch.device("cpu"), "the movie was good " * 4, 6)
    for q in ("the food was", "a service is very"):
        rest = gen.rest_ids(["the movie was not bad"], q)
        full, reused = gen.generate(rest, False), gen.generate(rest, True)
        assert full.text == reused.text and full.new_tokens == reused.new_tokens
        assert reused.prefilled_tokens == full.prefilled_tokens - len(gen.prefix_ids)


# -- attribution -----------------------------------------------------------------------------------
def test_energy_attribution_splits_by_query_time():
    from wattlab.core.measure.attribution import attribute_queries
    from wattlab.core.measure.sampling import Sample
    from wattlab.core.measure.sensors.base import EnergyChannel

    ch = EnergyChannel("cpu", "cpu.power_w", "power", "estimated", "test")
    samples = [Sample(t / 10, {"cpu.power_w": 10.0}) for t in range(0, 11)]  # 10 W for 1 s
    log = [
        {"hit": None, "t0": 0.1, "t1": 0.5},  # 0.4 s miss -> 4 J
        {"hit": "exact", "t0": 0.5, "t1": 0.6},  # 0.1 s hit -> 1 J
        {"hit": "semantic", "t0": 0.6, "t1": 0.7},  # 0.1 s hit -> 1 J
    ]
    e = attribute_queries(log, samples, [ch], 0.0)
    assert e["miss"]["energy_per_query_j"] == pytest.approx(4.0)
    assert e["hit"]["energy_per_query_j"] == pytest.approx(1.0)
    # A split by time of estimated energy: labelled attributed, never measured.
    assert e["hit"]["queries"] == 2 and e["label"] == "attributed"
    assert e["of_label"] == "estimated"


# -- technique -------------------------------------------------------------------------------------
def test_rag_cache_parses_comma_lists_and_applies_only_to_rag():
    from wattlab.core.errors import SpecError
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.catalog import get, parse_cli
    from wattlab.core.techniques.compose import resolve

    spec = parse_cli("rag-cache:layers=embed,query,prefix,threshold=0.95")
    params = get("rag-cache").parse_params(spec["params"])
    assert params["layers"] == ("embed", "query", "prefix") and params["threshold"] == 0.95
    with pytest.raises(SpecError, match="must be one of"):
        get("rag-cache").parse_params({"layers": "embed,kv"})
    with pytest.raises(SpecError, match="applies to retrieval-augmented"):
        resolve([spec], Target("infer", "cpu", "hf"))
    with pytest.raises(SpecError, match="does not apply to RAG sessions"):
        resolve([parse_cli("quantization:backend=ort")], Target("rag", "cpu", "hf"))


# -- sessions end to end ---------------------------------------------------------------------------
def _session(spec):
    from wattlab.core.worker.events import CancelToken, Emitter
    from wattlab.core.worker.runner import run_session

    return run_session(spec, Emitter(open(os.devnull, "w")), CancelToken())


def test_rag_session_hits_equal_fresh_search_and_no_hard_negative_hits(tiny_rag_demo):
    from wattlab.core.spec import RunSpec

    spec = RunSpec(
        mode="rag",
        rag={"queries": 60, "repeat_rate": 0.5, "paraphrase_share": 0.0, "negative_rate": 0.2},
        techniques=({"name": "rag-cache", "params": {"layers": "query,prefix"}},),
    ).validate()
    r = _session(spec)["rag"]
    ql = r["query_layer"]
    assert ql["exact_hits"] > 10 and ql["hits"] == ql["exact_hits"] + ql["semantic_hits"]
    # Exact repeats: the cached retrieval is exactly what a fresh search returns.
    assert ql["retrieval_same_as_fresh"] == 1.0 and ql["verify"]["exact_same_topk"] == 1.0
    assert (
        ql["hard_negatives"] > 3 and ql["hard_negative_false_hits"] == 0 and ql["false_hits"] == 0
    )
    assert r["prefix_layer"]["prefill_saved"] > 0.3
    assert r["index"]["layer_on"] is False and r["index"]["embedded"] == 24
    hits = [q for q in r["query_log"] if q["hit"]]
    assert all(q["generated"] == 0 for q in hits)  # answers served from the cache


def test_rag_session_without_cache_generates_every_answer(tiny_rag_demo):
    from wattlab.core.spec import RunSpec

    r = _session(RunSpec(mode="rag", rag={"queries": 20}).validate())
    assert r["items"] == 20 and r["rag"]["query_layer"]["hits"] == 0
    assert all(q["generated"] > 0 for q in r["rag"]["query_log"])
    assert r["rag"]["prefix_layer"]["prefill_saved"] == 0


WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]


def wattlab_rag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WATTLAB, "rag", *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_wattlab_rag_compares_and_writes_reports(tiny_rag_demo, tmp_path):
    out = tmp_path / "out"
    r = wattlab_rag(
        "--queries",
        "40",
        "--repeats",
        "1",
        "--idle",
        "0",
        "--cooldown",
        "0",
        "--technique",
        "rag-cache:layers=embed,query,prefix",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Energy per query" in r.stdout and "energy saved per 1,000 queries" in r.stdout
    assert "false-hit rate on hard negatives" in r.stdout
    comp = json.loads((out / "comparison.json").read_text())
    opt = comp["rag"]["optimized"]
    assert opt["query_layer"]["hits"] > 0 and comp["rag"]["baseline"]["query_layer"]["hits"] == 0
    assert opt["hit_energy_per_query_j"] is not None and opt["energy_label"] == "attributed"
    assert (out / "report.pdf").stat().st_size > 10_000
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(out / "report.pdf").pages)
    assert "RAG retrieval cache" in text and "hard negatives" in text


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--corpus", "/nonexistent"], "corpus not found"),
        (["--generator", "/nonexistent"], "model path does not exist"),
        (["--repeat-rate", "0.8", "--negative-rate", "0.5"], "cannot exceed 1"),
        (["--technique", "quantization:backend=ort"], "does not apply to RAG sessions"),
        (["--technique", "rag-cache:layers=kv"], "must be one of"),
    ],
)
def test_bad_rag_input_is_one_line_exit_2(args, needle):
    r = wattlab_rag(*args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_generic_corpus_builds_its_own_queries(tmp_path, tiny_rag_demo):
    from wattlab.core.rag.corpus import chunk_documents, load_documents
    from wattlab.core.rag.workload import corpus_intents, make_stream

    corpus = tmp_path / "c"
    corpus.mkdir()
    tm.write_text_corpus(corpus / "notes.txt", 30)
    (corpus / "more.md").write_text("The lighthouse keeper wrote the logbook every night.\n")
    chunks = chunk_documents(load_documents(str(corpus)), 40, 8)
    s = make_stream(corpus_intents(chunks, 50, 0), 30, 0.5, 0.5, 0.1, 0)
    assert any(q.kind == "negation" for q in s) and all(q.gold_doc for q in s if q.kind == "new")


def test_rag_session_stopped_before_the_first_answer_is_cancelled_not_failed(tiny_rag_demo):
    from wattlab.core.spec import RunSpec
    from wattlab.core.worker.events import CancelToken, Emitter
    from wattlab.core.worker.runner import run_session

    token = CancelToken()
    token.cancel()
    r = run_session(RunSpec(mode="rag", rag={"queries": 10}), Emitter(open(os.devnull, "w")), token)
    assert r["cancelled"] is True and r["items"] == 0


def test_unusable_embedding_cache_is_reported_and_the_run_goes_on(tiny_rag_demo, tmp_path):
    import torch

    from wattlab.core.rag.corpus import chunk_documents, load_documents
    from wattlab.core.rag.encoder import Encoder
    from wattlab.core.worker.events import Emitter
    from wattlab.core.worker.rag import _index

    blocker = tmp_path / "wattlab-data" / "rag"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the cache folder should be")
    enc = Encoder.from_folder(tm.bert_encoder(tmp_path / "enc"), torch.device("cpu"))
    chunks = chunk_documents(load_documents("demo", 5, 7), 80, 16)
    vecs, stats = _index(chunks, enc, True, Emitter(open(os.devnull, "w")))
    assert vecs.shape == (5, 32) and stats["embedded"] == 5
    assert "embedding cache cannot be used" in stats["write_error"]


def test_wattlab_rag_runs_on_user_models_and_a_folder_corpus(tmp_path):
    """No demo at all: a tiny encoder folder, a tiny GPT-2 folder and a folder of .txt files."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        lines = [f"{t} said reviewer {i} {j}" for j, (t, _) in enumerate(tm.sentences(8, seed=i))]
        (corpus / f"doc{i}.txt").write_text("\n".join(lines))  # no punctuation: 12-word windows
    enc, gen, out = tm.bert_encoder(tmp_path / "enc"), tm.gpt2(tmp_path / "gen"), tmp_path / "o"
    r = wattlab_rag(
        "--corpus",
        str(corpus),
        "--generator",
        str(gen),
        "--encoder",
        str(enc),
        "--queries",
        "24",
        "--idle",
        "0",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "result.json").read_text())
    rag = res["session"]["rag"]
    assert rag["queries"] == 24 and rag["layers"] == [] and rag["retrieval_recall"] is not None
    assert rag["answer_accuracy"] is None  # a user corpus has no known answers
    assert "cache layers     none" in r.stdout


def test_rag_session_with_faiss_reports_its_recall_against_exact(tiny_rag_demo):
    pytest.importorskip("faiss")
    from wattlab.core.spec import RunSpec

    r = _session(RunSpec(mode="rag", rag={"queries": 10, "index": "faiss"}).validate())
    ix = r["rag"]["index"]
    assert ix["index"] == "faiss-hnsw" and 0.9 <= ix["ann_recall_vs_exact"] <= 1.0
