"""The RAG demo's encoder and generator: defined by ``resources/rag_demo.json``, trained once by
WattLab on the generated gazetteer, cached under ``DATA_DIR/models/rag-demo-KEY``.

The encoder learns contrastively (InfoNCE with in-batch negatives): a question must be closest to
its town's document, and to its own paraphrases rather than to other questions or to its negated
twin. The generator learns to copy the answer out of the context, with the production-style
prompt prefix in front, so the prefix cache layer has the prefix it is built for. Training is
seeded; the cache key hashes the definition and corpus version, so a change retrains.

Their quality is not assumed: a RAG session reports retrieval recall and answer accuracy.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattlab.core.paths import models_dir

ENV_DEFINITION = "WATTLAB_RAG_DEMO_DEFINITION"
# Bumped when the training code changes what a definition produces (2: loss on the whole
# context, frozen prefix), so a cache trained by older code is never reused.
TRAINING_VERSION = 2


def definition() -> dict[str, Any]:
    from wattlab.resources import RESOURCES_DIR

    path = os.environ.get(ENV_DEFINITION) or RESOURCES_DIR / "rag_demo.json"
    return json.loads(Path(path).read_text())


def cache_folder(data_dir: Path | None = None) -> Path:
    from wattlab.core.rag.demo_corpus import VERSION

    d = definition()
    blob = json.dumps(
        {k: d[k] for k in ("corpus", "encoder", "generator", "recipe")}, sort_keys=True
    )
    key = hashlib.sha256(f"{VERSION}:{TRAINING_VERSION}:{blob}".encode()).hexdigest()[:16]
    return models_dir(data_dir) / f"rag-demo-{key}"


def is_cached(folder: Path) -> bool:
    return all(
        (folder / part / f).is_file()
        for part in ("encoder", "generator")
        for f in ("config.json", "model.safetensors", "tokenizer.json")
    )


def _texts_for_vocab(docs: list[tuple[str, str]]) -> list[str]:
    from wattlab.core.rag.demo_corpus import PROMPT_PREFIX, QUESTIONS, towns

    d = definition()["corpus"]
    qs = [
        p.format(t=t.name)
        for t in towns(d["towns"], d["seed"])[:1]
        for phr, neg in QUESTIONS.values()
        for p in (*phr, neg)
    ]
    return [t for _, t in docs] + qs + [PROMPT_PREFIX, "context : question : answer : unknown"]


def prepare(dev: Any, log: Callable[[str], None], data_dir: Path | None = None) -> Path:
    """Train and cache both models unless cached; returns the folder."""
    folder = cache_folder(data_dir)
    if is_cached(folder):
        return folder
    from wattlab.core.models.demo import build_tokenizer
    from wattlab.core.rag.corpus import chunk_documents
    from wattlab.core.rag.demo_corpus import documents
    from wattlab.core.rag.workload import demo_intents
    from wattlab.core.worker.train import seed_everything

    d = definition()
    c, r = d["corpus"], d["recipe"]
    docs = documents(c["towns"], c["seed"])
    chunks = chunk_documents(docs, c["chunk_words"], c["chunk_overlap"])
    intents = demo_intents(c["towns"], c["seed"])
    tok = build_tokenizer(_texts_for_vocab(docs), 1, d["generator"]["n_positions"], True)
    seed_everything(r["seed"])
    t0 = time.perf_counter()
    log(f"RAG demo: training the encoder ({r['encoder_steps']} steps; once, then cached)")
    doc_text: dict[str, str] = {}  # each town's document is one chunk; its first if more
    for ch in chunks:
        doc_text.setdefault(ch.doc, ch.text)
    enc = _train_encoder(tok, doc_text, intents, d, dev)
    log(f"RAG demo: encoder trained in {time.perf_counter() - t0:.0f} s")
    t1 = time.perf_counter()
    log(f"RAG demo: training the generator ({r['generator_steps']} steps; once, then cached)")
    gen = _train_generator(tok, doc_text, intents, d, dev)
    log(f"RAG demo: generator trained in {time.perf_counter() - t1:.0f} s")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".rag-demo-", dir=folder.parent))
    try:
        for name, model in (("encoder", enc), ("generator", gen)):
            model.cpu().save_pretrained(tmp / name, safe_serialization=True)
            tok.save_pretrained(tmp / name)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # atomic: a half-written cache is never seen as cached
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _encode(tok: Any, texts: list[str], dev: Any, max_len: int) -> dict[str, Any]:
    enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _pool(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    from wattlab.core.rag.encoder import mean_pool

    h = model(**batch).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(h, batch["attention_mask"]), dim=-1)


def _train_encoder(tok: Any, doc_chunk: dict[str, str], intents: dict, d: dict, dev: Any) -> Any:
    import torch
    from transformers import BertConfig, BertModel

    r = d["recipe"]
    cfg = BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **d["encoder"])
    model = BertModel(cfg, add_pooling_layer=False).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=r["encoder_lr"])
    towns = sorted({k.split("/")[0] for k in intents})
    attrs = sorted({k.split("/")[1] for k in intents})
    rng = random.Random(r["seed"])
    n = min(r["encoder_batch"], len(towns))
    ml = d["encoder"]["max_position_embeddings"]
    tau = r["temperature"]
    labels = torch.arange(n, device=dev)
    for _ in range(r["encoder_steps"]):
        its = [intents[f"{t}/{rng.choice(attrs)}"] for t in rng.sample(towns, n)]
        pairs = [rng.sample(it.phrasings, 2) for it in its]
        q = _pool(model, _encode(tok, [a for a, _ in pairs], dev, ml))
        p = _pool(model, _encode(tok, [b for _, b in pairs], dev, ml))
        neg = _pool(model, _encode(tok, [it.negated for it in its], dev, ml))
        docs = _pool(model, _encode(tok, [doc_chunk[it.gold_doc] for it in its], dev, ml))
        loss = torch.nn.functional.cross_entropy(q @ docs.T / tau, labels)
        loss = loss + torch.nn.functional.cross_entropy(
            torch.cat([q @ p.T, q @ neg.T], 1) / tau, labels
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _train_generator(tok: Any, doc_chunk: dict[str, str], intents: dict, d: dict, dev: Any) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from wattlab.core.rag.demo_corpus import PROMPT_PREFIX

    r = d["recipe"]
    g = d["generator"]
    cfg = GPT2Config(
        vocab_size=len(tok),
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **g,
    )
    model = GPT2LMHeadModel(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=r["generator_lr"], weight_decay=0.01)
    steps = r["generator_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / 50, max(0.05, (steps - s) / steps))
    )
    prefix = tok(PROMPT_PREFIX, add_special_tokens=False)["input_ids"]
    all_docs = sorted(doc_chunk)
    keys = sorted(intents)
    rng = random.Random(r["seed"] + 1)
    pad = tok.pad_token_id
    n_ctx = r.get("context_chunks", 1)
    # Loss on the whole context too, not only the answer: names recur inside a document, and
    # predicting those repeats is what teaches the attention to copy (induction), which the
    # answer then needs. With the answer alone (3 of ~80 tokens) it learnt nothing in 1,500 steps.
    answer_only = r.get("answer_only_loss", False)

    def lm_from(a: int) -> int:
        return a if answer_only else 0

    batch = r["generator_batch"]
    room = g["n_positions"] - len(prefix)
    for _ in range(steps):
        seqs, masks = [], []
        for _ in range(batch):
            it = intents[rng.choice(keys)]
            ctx = [doc_chunk[it.gold_doc]] + [
                doc_chunk[rng.choice(all_docs)] for _ in range(n_ctx - 1)
            ]
            rng.shuffle(ctx)
            rest = tok(
                " context : " + " ".join(ctx) + f" question : {rng.choice(it.phrasings)} answer :",
                add_special_tokens=False,
            )["input_ids"]
            ans = tok(f" {it.answer} .", add_special_tokens=False)["input_ids"]
            ids = rest[: room - len(ans)] + ans
            seqs.append(ids)
            masks.append(len(ids) - len(ans))
        width = max(map(len, seqs))
        x = torch.full((batch, width), pad, dtype=torch.long)
        y = torch.full_like(x, -100)
        att = torch.zeros((batch, len(prefix) + width), dtype=torch.long)
        att[:, : len(prefix)] = 1
        for i, (s, a) in enumerate(zip(seqs, masks, strict=True)):
            x[i, : len(s)] = torch.tensor(s)
            y[i, lm_from(a) : len(s)] = torch.tensor(s[lm_from(a) :])
            att[i, len(prefix) : len(prefix) + len(s)] = 1
        # The prefix is the same in every sequence: its keys/values are computed once per step
        # without gradient, exactly as the prefix cache layer serves them at inference, so only
        # the context, question and answer are trained through (2-3x less work per step).
        with torch.no_grad():
            pkv = model(
                input_ids=torch.tensor([prefix], device=dev), use_cache=True
            ).past_key_values
        pkv.batch_repeat_interleave(batch)
        out = model(
            input_ids=x.to(dev), attention_mask=att.to(dev), past_key_values=pkv, labels=y.to(dev)
        )
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()
