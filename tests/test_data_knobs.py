"""Dataset reduction, text augmentation and the training knobs really change what trains:
subset sizes, planted duplicates and scores, augmented copies, and the spec a session runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import get, parse_cli
from wattlab.core.techniques.compose import resolve, spec_with_overrides
from wattlab.core.worker.prepared import PreparedData
from wattlab.core.worker.techniques import data_reduction as dr
from wattlab.core.worker.techniques.catalog import implementation
from wattlab.core.worker.techniques.context import TechniqueContext

CPU_INFER = Target("infer", "cpu", "hf", "classify", "bert")
CPU_TRAIN = Target("train", "cpu", "hf", "classify", "bert")


def prepared(ids: list[list[int]], labels: list[int] | None) -> PreparedData:
    return PreparedData(
        task="classify" if labels is not None else "causal-lm",
        train_ids=ids,
        eval_ids=[[5, 6, 7]],
        train_labels=labels,
        eval_labels=[0] if labels is not None else None,
        pad_id=0,
        num_labels=2 if labels is not None else 0,
        source="planted",
    )


def ctx_with(data: PreparedData, model=None, seed: int = 0) -> TechniqueContext:
    loaded = SimpleNamespace(model=model, tokenizer=tm.tokenizer(), kind="hf")
    ctx = TechniqueContext(
        loaded,
        RunSpec(mode="train", batch_size=8, seed=seed),
        torch.device("cpu"),
        data.task,
        0,
        data.train_ids[:2048],
        Path(tempfile.gettempdir()),
        lambda m: None,
    )
    ctx.data = data
    return ctx


def apply(name: str, ctx: TechniqueContext, **raw):
    tech = implementation(name)
    return tech.apply(ctx, tech.parse_params({k: str(v) for k, v in raw.items()}))


# -- data: random ---------------------------------------------------------------------------------
def test_random_subset_is_exact_seeded_and_keeps_each_label_with_its_item():
    ids = [[100 + i, 7] for i in range(101)]
    labels = [i % 3 % 2 for i in range(101)]
    data = prepared(ids, labels)
    ctx = ctx_with(data)
    app = apply("data", ctx, keep=0.3, method="random")
    new = ctx.data
    assert len(new.train_ids) == len(new.train_labels) == 30  # round(0.3 * 101)
    assert all(
        lab == labels[x[0] - 100] for x, lab in zip(new.train_ids, new.train_labels, strict=True)
    )
    assert new.eval_ids is data.eval_ids and new.eval_labels is data.eval_labels
    assert ctx.calib_ids == new.train_ids
    det = app.details
    assert (det["items_before"], det["items_after"], det["method"], det["seed"]) == (
        101,
        30,
        "random",
        0,
    )
    again = ctx_with(data)
    apply("data", again, keep=0.3)
    other = ctx_with(data, seed=1)
    apply("data", other, keep=0.3)
    assert again.data.train_ids == new.train_ids != other.data.train_ids


def test_keep_rounds_and_never_leaves_nothing():
    assert dr.kept_count(10, 0.25) == 2 and dr.kept_count(3, 0.01) == 1
    assert dr.kept_count(7, 1.0) == 7


# -- data: dedup ----------------------------------------------------------------------------------
def planted_duplicates() -> tuple[list[list[int]], list[int], set[int]]:
    """30 distinct random texts, then 10 exact copies, 5 copies with the last token changed
    (Jaccard of bigrams 10/12 >= 0.8) and 5 with a middle token changed (9/13 < 0.8: not
    duplicates at the default threshold), shuffled in after their originals."""
    rng = np.random.default_rng(7)
    originals = [[int(t) for t in rng.integers(20, 60, 12)] for _ in range(30)]
    exact = [list(originals[i]) for i in range(10)]
    near = [originals[i][:-1] + [99] for i in range(10, 15)]
    apart = [originals[i][:6] + [98] + originals[i][7:] for i in range(15, 20)]
    ids = originals + exact + near + apart
    labels = [i % 2 for i in range(30)] + [i % 2 for i in range(20)]
    keep = set(range(30)) | set(range(45, 50))
    return ids, labels, keep


def test_dedup_removes_planted_duplicates_and_keeps_the_first_of_each():
    ids, labels, expected = planted_duplicates()
    ctx = ctx_with(prepared(ids, labels))
    app = apply("data", ctx, keep=1.0, method="dedup")
    assert ctx.data.train_ids == [ids[i] for i in sorted(expected)]
    assert ctx.data.train_labels == [labels[i] for i in sorted(expected)]
    assert app.details["duplicates"] == 15 and app.details["random_cut"] is False
    assert "15 of 50 items were near-duplicates" in app.description


def test_dedup_ignores_special_tokens_and_cuts_at_random_to_keep():
    ids, labels, expected = planted_duplicates()
    ids = [x + [0, 0] if i % 2 else x for i, x in enumerate(ids)]  # padding is no content
    ctx = ctx_with(prepared(ids, labels))
    app = apply("data", ctx, keep=0.5, method="dedup")
    assert app.details["duplicates"] == 15 and app.details["random_cut"] is True
    assert len(ctx.data.train_ids) == 25  # round(0.5 * 50) of the 35 left
    kept = {ids.index(x) for x in ctx.data.train_ids}
    assert kept <= expected


def test_lsh_bands_find_pairs_at_the_threshold():
    for thr in (0.3, 0.5, 0.8, 1.0):
        r = dr.rows_per_band(thr)
        assert 1 - (1 - thr**r) ** (dr.NUM_PERM // r) >= 0.99


# -- data: score ----------------------------------------------------------------------------------
class PlantedModel(torch.nn.Module):
    """Predicts class (first token % 2) with confidence: items labelled otherwise are hard."""

    def forward(self, input_ids, attention_mask):
        logits = 6.0 * torch.nn.functional.one_hot(input_ids[:, 0] % 2, 2).float() - 3.0
        return SimpleNamespace(logits=logits)


def test_score_keeps_the_hardest_items_by_el2n():
    rng = np.random.default_rng(3)
    ids = [[int(t), 9, 9] for t in rng.integers(20, 60, 40)]
    hard = set(rng.choice(40, 10, replace=False).tolist())
    labels = [(x[0] % 2) ^ (i in hard) for i, x in enumerate(ids)]
    ctx = ctx_with(prepared(ids, labels), PlantedModel())
    app = apply("data", ctx, keep=0.25, method="score", warmup_steps=0)
    assert ctx.data.train_ids == [ids[i] for i in sorted(hard)]
    assert app.details["score"] == "el2n" and "model as loaded" in app.description
    assert app.details["score_min_kept"] > 1.0  # a confident wrong prediction: EL2N near sqrt(2)


def test_highest_ranks_nan_last_and_breaks_ties_by_order():
    scores = np.array([0.5, np.nan, 0.9, 0.5, 0.1])
    assert dr.highest(scores, 2) == [0, 2]
    assert dr.highest(scores, 4) == [0, 2, 3, 4]


# -- augment --------------------------------------------------------------------------------------
CLS, SEP, MASK = 101, 102, 103
SPECIALS = {0, CLS, SEP, MASK}


def texts(n: int = 20) -> tuple[list[list[int]], list[int]]:
    """Label 0 texts use tokens 10-29, label 1 texts 30-49: a copy's label is readable."""
    rng = np.random.default_rng(5)
    labels = [i % 2 for i in range(n)]
    ids = [[CLS, *(int(t) for t in rng.integers(10 + 20 * y, 30 + 20 * y, 8)), SEP] for y in labels]
    return ids, labels


def params_of(**raw) -> dict:
    return get("augment").parse_params({k: str(v) for k, v in raw.items()})


@pytest.mark.parametrize("factor,added", [(1.0, 20), (0.5, 10), (2.5, 50)])
def test_augment_adds_factor_copies_keeping_specials_and_labels(factor, added):
    ids, labels = texts()
    p = params_of(factor=factor)
    new_ids, new_labels, stats = dr.augment_split(ids, labels, p, SPECIALS, MASK, 0)
    assert len(new_ids) == len(new_labels) == 20 + added
    assert new_ids[:20] == ids and new_labels[:20] == labels
    assert sum(stats["copies_per_op"].values()) == added
    for x, y in zip(new_ids[20:], new_labels[20:], strict=True):
        assert x[0] == CLS and x[-1] == SEP and CLS not in x[1:-1] and SEP not in x[1:-1]
        content = [t for t in x if t not in SPECIALS]
        assert content and all(10 + 20 * y <= t < 30 + 20 * y for t in content)


def source_of(x: list[int], ids: list[list[int]], op: str) -> list[int]:
    """The one text ``x`` was copied from: the same tokens where not masked, the same tokens in
    order less the deleted ones, or the same tokens in another order."""

    def came_from(src: list[int]) -> bool:
        if op == "mask":
            return len(x) == len(src) and all(b in (a, MASK) for a, b in zip(src, x, strict=True))
        if op == "delete":
            it = iter(src)
            return all(t in it for t in x)
        return sorted(x) == sorted(src)

    found = [src for src in ids if came_from(src)]
    assert len(found) == 1
    return found[0]


def test_each_op_changes_only_what_it_says():
    ids, labels = texts()
    for op in ("mask", "delete", "swap"):
        p = params_of(ops=op, rate=0.25)
        new, _, stats = dr.augment_split(ids, labels, p, SPECIALS, MASK, 0)
        assert stats["copies_per_op"] == {op: 20} and stats["unchanged_copies"] == 0
        sources = [source_of(x, ids, op) for x in new[20:]]
        assert sorted(sources) == sorted(ids)  # factor 1: every text copied once
        for src, x in zip(sources, new[20:], strict=True):
            assert (x[0], x[-1]) == (CLS, SEP) and x != src
            if op == "mask":  # 2 of 8 content tokens (rate 0.25)
                assert sum(a != b for a, b in zip(src, x, strict=True)) == 2
            elif op == "delete":
                assert len(x) == len(src) - 2


def test_augment_is_seeded_and_a_one_token_text_keeps_its_token():
    ids, labels = texts()
    a = dr.augment_split(ids, labels, params_of(), SPECIALS, MASK, 0)[0]
    b = dr.augment_split(ids, labels, params_of(), SPECIALS, MASK, 0)[0]
    c = dr.augment_split(ids, labels, params_of(), SPECIALS, MASK, 1)[0]
    assert a == b != c
    one = dr.augment_one([CLS, 42, SEP], "delete", SPECIALS, MASK, 0.5, np.random.default_rng(0))
    assert one == [CLS, 42, SEP]


def test_augment_applies_to_the_session_data_with_the_tokenizers_unknown_token():
    ids, labels = texts()
    ctx = ctx_with(prepared(ids, labels))
    app = apply("augment", ctx, factor=1.0, ops="mask")
    assert len(ctx.data.train_ids) == 40 and ctx.data.eval_ids == [[5, 6, 7]]
    assert app.details["items_before"] == 20 and app.details["items_after"] == 40
    assert app.details["mask_token"] == "[UNK]"  # the tiny tokenizer has no [MASK]
    assert all(1 in x for x in ctx.data.train_ids[20:])  # [UNK] is id 1


# -- refusals and the knobs' spec ---------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["data:keep=0.5", "augment", "grad-accum:steps=2", "early-stopping:patience=1"]
)
def test_train_only_techniques_refuse_inference_in_one_line(text):
    with pytest.raises(SpecError, match="choose training mode") as e:
        resolve([parse_cli(text)], CPU_INFER)
    assert "\n" not in str(e.value)


def test_augment_refuses_a_language_model():
    lm = Target("train", "cpu", "hf", "causal-lm", "gpt2")
    with pytest.raises(SpecError, match="language model"):
        resolve([parse_cli("augment")], lm)


def test_knobs_set_their_spec_fields_in_both_modes_where_they_apply():
    got = resolve(
        [parse_cli(t) for t in ("batch-size:size=4", "seq-len:tokens=8", "threads")], CPU_INFER
    )
    assert {t.name for t, _ in got} == {"batch-size", "seq-len", "threads"}
    texts_ = ("grad-accum:steps=4", "early-stopping:patience=2", "batch-size:size=16")
    spec = RunSpec(
        mode="train", techniques=tuple(parse_cli(t) for t in (*texts_, "seq-len", "threads:n=3"))
    )
    new = spec_with_overrides(spec)
    assert (new.grad_accum, new.patience, new.batch_size, new.seq_len, new.threads) == (
        4,
        2,
        16,
        32,
        3,
    )
    assert get("grad-accum").spec_overrides({"steps": 4}) == {"grad_accum": 4}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("batch-size:size=0", "size must be between 1"),
        ("grad-accum:steps=5000", "steps must be between 1 and 4096"),
        ("data:keep=0", "keep must be between"),
        ("data:method=best", "method must be one of random, dedup, score"),
        ("augment:ops=swap+shuffle", "ops must be one of"),
    ],
)
def test_bad_parameters_are_one_line(text, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(text)], CPU_TRAIN)


# -- sessions on a tiny BERT ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("dk")
    return tm.bert_classifier(root / "bert"), tm.write_csv(root / "d.csv", tm.sentences(80))


def session(bert, *techniques: str) -> tuple[dict, list[dict]]:
    """A training session in this process: 64 training items, batches of 8, one epoch."""
    from wattlab.core.worker.events import CancelToken, Emitter
    from wattlab.core.worker.runner import run_session

    folder, data = bert
    spec = RunSpec(
        model=str(folder),
        dataset=str(data),
        mode="train",
        epochs=1,
        batch_size=8,
        seq_len=16,
        techniques=tuple(parse_cli(t) for t in techniques),
    )
    stream = io.StringIO()
    result = run_session(spec, Emitter(stream), CancelToken())
    torch.set_num_threads(1)  # a threads knob changed this process's pool
    return result, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_session_trains_with_the_knobs_and_on_the_reduced_data(bert):
    base, _ = session(bert)
    assert base["steps"] == 8 and base["items"] == 64
    r, _ = session(bert, "grad-accum:steps=2", "data:keep=0.5", "threads:n=1")
    assert r["dataset"]["train_items"] == 32 and r["items"] == 32
    assert r["steps"] == 2  # 4 batches, 2 per optimizer step
    by = {t["name"]: t for t in r["techniques"]}
    assert by["grad-accum"]["details"]["value"] == 2
    assert (
        by["grad-accum"]["description"].startswith("grad_accum")
        and by["data"]["details"]["items_after"] == 32
    )
    r2, _ = session(bert, "batch-size:size=4", "augment:factor=1")
    assert r2["dataset"]["train_items"] == 128 and r2["steps"] == 32  # 128 items / 4
    assert r2["dataset"]["eval_items"] == base["dataset"]["eval_items"] == 16


def test_score_warm_up_trains_in_the_prepare_phase(bert):
    r, events = session(bert, "data:keep=0.25,method=score,warmup_steps=3")
    det = r["techniques"][0]["details"]
    assert det["warmup_steps"] == 3 and det["items_after"] == 16 and r["items"] == 16
    phases = [e["name"] for e in events if e["event"] == "phase"]
    first_train = phases.index("train")
    assert "prepare" in phases[:first_train]
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert any("data pruning warm-up" in m for m in logs)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 1  # the warm-up's epochs are logged, not reported as the session's


@pytest.mark.e2e
def test_compare_measures_knobs_and_data_reduction_like_any_technique(bert, tmp_path):
    folder, data = bert
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "wattlab.core.cli.main", "compare", "--model", str(folder)]
        + ["--dataset", str(data), "--mode", "train", "--epochs", "1", "--batch-size", "8"]
        + ["--seq-len", "16", "--optimized", "grad-accum:steps=2 data:keep=0.5"]
        + ["--repeats", "1", "--interval", "0.05", "--idle", "0", "--cooldown", "0"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    comp = json.loads((out / "comparison.json").read_text())
    sides = {p["side"]: str(p["run_id"]) for p in comp["per_run"]}
    runs = comp["runs"]
    base, opt = runs[sides["baseline"]]["session"], runs[sides["optimized"]]["session"]
    assert (base["steps"], base["items"]) == (8, 64)
    assert (opt["steps"], opt["items"]) == (2, 32)
    assert [t["name"] for t in opt["techniques"]] == ["grad-accum", "data"]
