"""Sparse training and quantization-aware training: the schedule's values, the sparsity and the
sizes the weights really reach, fake quantization in the loop and gone after the int8
conversion, the two together (zeros stay zeros), refusals with their reasons, and whole sessions
on tiny models (in-process, and one through the CLI)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.models.hf import load_hf_folder
from wattlab.core.spec import RunSpec
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import parse_cli
from wattlab.core.techniques.compose import resolve
from wattlab.core.techniques.sparse_training import pruning_updates, scheduled_sparsity
from wattlab.core.worker.batching import collate
from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.prepared import PreparedData, TrainSettings
from wattlab.core.worker.techniques import qat as qat_impl
from wattlab.core.worker.techniques.catalog import implementation
from wattlab.core.worker.techniques.context import TechniqueContext
from wattlab.core.worker.techniques.pruning import _prunable, sparsity_report
from wattlab.core.worker.train import train

CPU_TRAIN = Target("train", "cpu", "hf", "classify", "bert")
CPU_INFER = Target("infer", "cpu", "hf", "classify", "bert")
STEPS = 8


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse_qat")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        "gpt2": tm.gpt2(root / "gpt2"),
        "csv": tm.write_csv(root / "d.csv", tm.sentences(80)),
        "corpus": tm.write_text_corpus(root / "c.txt", 40),
    }


def _session(folder: Path, mode: str = "train", workdir: Path | None = None):
    """A loaded tiny model, its data, and the technique context a session would give it."""
    lm = load_hf_folder(folder, None, 2, for_training=mode == "train")
    rows = tm.sentences(64)
    ids = lm.tokenizer([t for t, _ in rows], truncation=True, max_length=16)["input_ids"]
    labels = [1 if lab == "pos" else 0 for _, lab in rows]
    cls = lm.task == "classify"
    data = PreparedData(
        task=lm.task,
        train_ids=ids,
        eval_ids=ids[48:],
        train_labels=labels if cls else None,
        eval_labels=labels[48:] if cls else None,
        pad_id=lm.tokenizer.pad_token_id,
        num_labels=2 if cls else 0,
        source="tiny sentences",
    )
    spec = RunSpec(mode=mode, epochs=1, batch_size=8, max_steps=STEPS)
    ctx = TechniqueContext(
        lm, spec, torch.device("cpu"), lm.task, data.pad_id, ids, workdir or Path("."), print
    )
    ctx.data, ctx.emit, ctx.cancel = data, Emitter(io.StringIO()), CancelToken()
    return lm, data, ctx


def _apply(ctx, text: str):
    spec = parse_cli(text)
    tech = implementation(spec["name"])
    params = tech.parse_params(spec["params"])
    return tech, params, tech.apply(ctx, params)


def _train(lm, data, ctx, probes=()) -> None:
    settings = TrainSettings.from_spec(ctx.spec, ctx.dev, after_update=(*ctx.after_update, *probes))
    train(lm.model, data, settings, Emitter(io.StringIO()), CancelToken())


def _logits(model, data) -> np.ndarray:
    x, m = collate(data.eval_ids, data.pad_id)
    model.eval()
    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(m)
        ).logits.numpy()


# -- the schedule ----------------------------------------------------------------------------------
def test_cubic_schedule_is_zero_before_start_target_from_end_and_cubic_between():
    sched = [scheduled_sparsity(u, 100, 0.6, 0.1, 0.8) for u in range(101)]
    assert sched[:11] == [0.0] * 11  # nothing before 10% of the steps
    assert sched[80:] == [0.6] * 21  # the target from 80% on
    # Halfway from start to end: target * (1 - 0.5^3); a quarter: target * (1 - 0.75^3).
    assert sched[45] == pytest.approx(0.6 * (1 - 0.5**3))
    assert scheduled_sparsity(2750, 10000, 0.6, 0.1, 0.8) == pytest.approx(0.6 * (1 - 0.75**3))
    assert all(a <= b for a, b in zip(sched, sched[1:], strict=False))
    steps = pruning_updates(100, 0.1, 0.8, 10)
    assert steps == [17, 24, 31, 38, 45, 52, 59, 66, 73, 80]
    # A short training still ends on the target: the last pruning step is the end's.
    assert pruning_updates(4, 0.1, 0.8, 10) == [1, 2, 3, 4]


# -- sparse training ------------------------------------------------------------------------------
def _masked_sparsity(model) -> float:
    layers = [m for _, m in _prunable(model)]
    if not any(hasattr(m, "weight_mask") for m in layers):
        return 0.0
    zeros = sum(int((m.weight_mask == 0).sum()) for m in layers if hasattr(m, "weight_mask"))
    return zeros / sum(m.weight.numel() for m in layers)


def test_unstructured_sparse_training_follows_the_schedule_to_the_target(folders):
    lm, data, ctx = _session(folders["bert"])
    tech, params, app = _apply(ctx, "sparse-training:target=0.6")
    assert app.warnings and "dense kernels" in app.warnings[0]
    seen: list[tuple[int, float]] = []  # runs after the pruning hook at every optimizer step
    _train(lm, data, ctx, (lambda u, n: seen.append((u, _masked_sparsity(lm.model))),))
    assert [u for u, _ in seen] == list(range(1, STEPS + 1))
    total = sum(m.weight.numel() for _, m in _prunable(lm.model))
    steps = pruning_updates(STEPS, 0.1, 0.8, 10)
    for u, measured in seen:  # the masks hold what the schedule asked at its last pruning step
        due = [s for s in steps if s <= u]
        want = scheduled_sparsity(due[-1], STEPS, 0.6, 0.1, 0.8) if due else 0.0
        assert measured == pytest.approx(round(want * total) / total)
    sparsities = [s for _, s in seen]
    assert sparsities == sorted(sparsities) and 0 < sparsities[2] < 0.6  # gradual, not at once
    tech.finalize(ctx, params, app)
    assert sparsity_report(lm.model)["sparsity"] == pytest.approx(0.6, abs=1 / total)
    assert app.details["sparsity"] == pytest.approx(0.6, abs=1 / total)
    assert app.details["schedule"]["history"][-1]["sparsity"] == 0.6
    names = [n for n, _ in lm.model.named_buffers()] + [n for n, _ in lm.model.named_parameters()]
    assert not [n for n in names if n.endswith(("_mask", "_orig"))]  # made permanent
    assert app.details["params_after"] == app.details["params_before"]
    assert app.details["nonzero_weights_after"] < app.details["nonzero_weights_before"]


def test_structured_sparse_training_removes_the_masked_neurons_and_heads(folders):
    lm, data, ctx = _session(folders["bert"])
    n0 = sum(p.numel() for p in lm.model.parameters())
    tech, params, app = _apply(ctx, "sparse-training:target=0.5,method=structured")
    _train(lm, data, ctx)
    masked = _logits(lm.model, data)  # masks on, units still in place
    tech.finalize(ctx, params, app)
    for layer in lm.model.bert.encoder.layer:
        assert layer.intermediate.dense.out_features == 32  # 64 -> 32 neurons
        assert layer.output.dense.in_features == 32
        assert layer.attention.self.num_attention_heads == 1  # 2 -> 1 head
        assert layer.attention.self.query.out_features == 16
    n1 = sum(p.numel() for p in lm.model.parameters())
    assert n1 < n0 and app.details["params_after"] == n1 == lm.num_params
    assert app.details["ffn_sparsity"] == 0.5 and app.details["head_sparsity"] == 0.5
    # The units sliced out are exactly the masked ones: the outputs do not move.
    np.testing.assert_allclose(_logits(lm.model, data), masked, atol=1e-5)


def test_structured_sparse_training_on_gpt2_narrows_ffn_and_heads(folders):
    lm, data, ctx = _session(folders["gpt2"])
    tech, params, app = _apply(ctx, "sparse-training:target=0.5,method=structured")
    _train(lm, data, ctx)
    tech.finalize(ctx, params, app)
    block = lm.model.transformer.h[0]
    assert block.mlp.c_fc.weight.shape[1] == 64  # 4 x 32 -> 64 neurons
    assert block.attn.num_heads == 1 and block.attn.c_attn.weight.shape[1] == 3 * 16
    assert app.details["structure_after"] == {"ffn_neurons": 128, "heads": 2}


# -- quantization-aware training ------------------------------------------------------------------
def test_qat_inserts_fake_quant_and_gradients_flow_through_it(folders):
    lm, data, ctx = _session(folders["bert"])
    _, _, app = _apply(ctx, "qat:backend=torch")
    layers = qat_impl.fake_quant_layers(lm.model)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in lm.model.modules())
    assert len(layers) == n_linear == app.details["layers_fake_quantized"] == 14
    inter = lm.model.bert.encoder.layer[0].intermediate.dense
    assert type(inter).__name__ == "FakeQuantLinear" and hasattr(inter, "weight_fake_quant")
    # What the layer computes with is on the int8 grid of its channel's scale.
    wq = inter.weight_fake_quant(inter.weight).detach()
    steps = wq / qat_impl.weight_scale(inter.weight, 0)[:, None]
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127.001
    assert not torch.equal(wq, inter.weight.detach())
    lm.model.train()
    x, m = collate(data.train_ids[:8], data.pad_id)
    out = lm.model(
        input_ids=torch.from_numpy(x),
        attention_mask=torch.from_numpy(m),
        labels=torch.tensor(data.train_labels[:8]),
    )
    out.loss.backward()
    grad = inter.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_qat_torch_finalize_leaves_real_int8_that_computes_what_qat_trained(folders):
    lm, data, ctx = _session(folders["bert"])
    fp32 = _logits(lm.model, data)
    tech, params, app = _apply(ctx, "qat:backend=torch")
    _train(lm, data, ctx)
    fake = _logits(lm.model, data)
    tech.finalize(ctx, params, app)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    assert not qat_impl.fake_quant_layers(lm.model)
    assert not [m for m in lm.model.modules() if "FakeQuant" in type(m).__name__]
    assert sum(isinstance(m, DynamicInt8Linear) for m in lm.model.modules()) == 14
    int8 = app.details["int8"]
    assert lm.size_bytes == int8["bytes_after"] < int8["bytes_before"]
    # The int8 kernels compute what the fake-quantized model trained on (same grids, no second
    # rounding), far closer than the fp32 model it started from.
    q = _logits(lm.model, data)
    np.testing.assert_allclose(q, fake, atol=1e-5)
    assert np.abs(q - fp32).max() > 100 * np.abs(q - fake).max()


def test_qat_ort_finalize_runs_an_int8_onnx_session(folders, tmp_path):
    import onnx

    lm, data, ctx = _session(folders["bert"], workdir=tmp_path)
    tech, params, app = _apply(ctx, "qat:backend=ort")
    _train(lm, data, ctx)
    fake = _logits(lm.model, data)
    tech.finalize(ctx, params, app)
    assert lm.kind == "onnx" and lm.model is None and lm.session is not None
    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 14  # every Linear is int8
    assert lm.size_bytes == app.details["int8"]["bytes_after"]
    x, m = collate(data.eval_ids, data.pad_id)
    q = lm.session.run(["logits"], {"input_ids": x, "attention_mask": m})[0]
    np.testing.assert_allclose(q, fake, atol=1e-5)


def test_qat_after_sparse_training_keeps_the_zeros_in_int8(folders):
    lm, data, ctx = _session(folders["bert"])
    chosen = [_apply(ctx, "sparse-training:target=0.5"), _apply(ctx, "qat:backend=torch")]
    _train(lm, data, ctx)
    sparse_tech, sparse_params, sparse_app = chosen[0]
    sparse_tech.finalize(ctx, sparse_params, sparse_app)  # the session's order: sparse first
    zeros = {n: m.weight == 0 for n, m in _prunable(lm.model)}
    assert sum(int(z.sum()) for z in zeros.values()) >= 0.5 * sum(z.numel() for z in zeros.values())
    qat_tech, qat_params, qat_app = chosen[1]
    qat_tech.finalize(ctx, qat_params, qat_app)
    int8 = dict(lm.model.named_modules())
    for name, z in zeros.items():
        ints = int8[name].weight().int_repr()
        assert (ints[z] == 0).all(), name
    assert qat_app.details["zero_weights"] >= 0.45


# -- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "texts, target, needle",
    [
        (["sparse-training"], CPU_INFER, "for a trained model use pruning"),
        (["sparse-training:start=0.8,end=0.2"], CPU_TRAIN, "start .* must come before end"),
        (["sparse-training", "pruning"], CPU_TRAIN, "both prune the weights"),
        (["qat"], Target("train", "cpu", "onnx", "classify"), "an ONNX file cannot"),
        (["qat"], Target("train", "cuda", "hf", "classify", "bert"), "run it on the CPU"),
        (["qat:backend=torch"], Target("infer", "cpu", "hf", "causal-lm", "gpt2"), "Conv1D"),
        (["qat", "quantization"], CPU_INFER, "drop quantization"),
        (["qat", "onnx-runtime"], CPU_INFER, "drop onnx-runtime"),
        (["qat", "mixed-precision"], CPU_TRAIN, "autocast would round"),
        (["qat", "early-exit"], CPU_INFER, "early-exit fits its exit heads"),
        (["pruning", "qat"], CPU_INFER, "grow them back"),
        (["qat"], Target("rag", "cpu", "hf"), "RAG"),
    ],
)
def test_refusals_say_why(texts, target, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(t) for t in texts], target)


def test_sparse_training_then_qat_is_allowed_in_that_order():
    chosen = resolve([parse_cli("qat"), parse_cli("sparse-training")], CPU_TRAIN)
    assert [t.name for t, _ in chosen] == ["sparse-training", "qat"]


# -- whole sessions -------------------------------------------------------------------------------
def _run(folders, model: str, mode: str, *techniques: str, **kw):
    from wattlab.core.worker.runner import run_session

    data = folders["csv"] if model == "bert" else folders["corpus"]
    spec = RunSpec(
        model=str(folders[model]),
        dataset=str(data),
        mode=mode,
        epochs=1,
        max_steps=4,
        batch_size=8,
        seq_len=16,
        min_measure_s=0,
        techniques=tuple(parse_cli(t) for t in techniques),
        **kw,
    )
    stream = io.StringIO()
    result = run_session(spec, Emitter(stream), CancelToken())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return result, [e["name"] for e in events if e["event"] == "phase"]


def test_session_trains_bert_with_structured_sparse_training_and_qat(folders):
    r, _ = _run(folders, "bert", "train", "qat:backend=torch", "sparse-training:method=structured")
    sparse, qat = r["techniques"]
    assert (sparse["name"], qat["name"]) == ("sparse-training", "qat")
    assert sparse["details"]["structure_after"] == {"ffn_neurons": 64, "heads": 2}
    assert r["model"]["num_params"] < r["model_before"]["num_params"]
    assert r["model"]["size_bytes"] == qat["details"]["int8"]["bytes_after"]
    assert r["model"]["size_bytes"] < r["model_before"]["size_bytes"]
    assert r["steps"] == 4


def test_session_infers_bert_after_qat_in_the_prepare_phase(folders):
    r, phases = _run(folders, "bert", "infer", "qat")
    assert "train" not in phases and "eval" not in phases  # QAT's training is preparation
    assert phases.index("prepare") < phases.index("infer")
    qat = r["techniques"][0]
    assert qat["details"]["qat_training"]["steps"] == 4
    int8 = qat["details"]["int8"]  # the tiny model's graph outweighs its weights: vs fp32 ONNX
    assert r["model"]["kind"] == "onnx"
    assert r["model"]["size_bytes"] == int8["bytes_after"] < int8["bytes_before"]
    assert r["items"] > 0 and r["agreement"]["items"] == 16


def test_session_infers_gpt2_after_qat_ort_and_refuses_torch(folders):
    r, _ = _run(folders, "gpt2", "infer", "qat:backend=ort")
    qat = r["techniques"][0]
    assert qat["details"]["layers_fake_quantized"] == 9  # 4 Conv1D per block + the LM head
    assert r["model"]["kind"] == "onnx" and 1 < r["metrics"]["perplexity"] < 100
    with pytest.raises(SpecError, match="transformers' Conv1D"):
        _run(folders, "gpt2", "train", "qat:backend=torch")


@pytest.mark.e2e
def test_cli_trains_with_sparse_training_and_qat(folders, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "wattlab.core.cli.main",
            "run",
            "--model",
            str(folders["bert"]),
            "--dataset",
            str(folders["csv"]),
            "--mode",
            "train",
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--seq-len",
            "16",
            "--idle",
            "0",
            "--technique",
            "sparse-training:target=0.5",
            "--technique",
            "qat",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert "sparse-training: gradual unstructured pruning to 50%" in r.stdout
    session = json.loads((out / "result.json").read_text())["session"]
    sparse, qat = session["techniques"]
    assert sparse["details"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert session["model"]["kind"] == "onnx"
    assert qat["details"]["zero_weights"] >= 0.45
