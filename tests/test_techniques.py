"""Techniques really change the model: sizes, shapes, sparsity, files; bad combinations refused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.models.hf import load_hf_folder
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import parse_cli
from wattlab.core.techniques.compose import resolve
from wattlab.core.worker.techniques.catalog import implementation
from wattlab.core.worker.techniques.context import TechniqueContext

CPU_INFER = Target("infer", "cpu", "hf", "classify", "bert")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tech")
    return {"bert": tm.bert_classifier(root / "bert"), "gpt2": tm.gpt2(root / "gpt2")}


def ctx_for(loaded, mode="infer"):
    from wattlab.core.spec import RunSpec

    ids = loaded.tokenizer([t for t, _ in tm.sentences(64)], truncation=True, max_length=16)[
        "input_ids"
    ]
    return TechniqueContext(
        loaded,
        RunSpec(mode=mode, batch_size=8),
        torch.device("cpu"),
        loaded.task,
        loaded.tokenizer.pad_token_id,
        ids,
        Path(tempfile.mkdtemp()),
        lambda m: None,
    )


def logits(loaded, text="the food was great"):
    enc = loaded.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def test_structured_pruning_shrinks_bert_layers_physically(folders):
    lm = load_hf_folder(folders["bert"], None, 2)
    n0 = sum(p.numel() for p in lm.model.parameters())
    tech = implementation("pruning")
    app = tech.apply(ctx_for(lm), tech.parse_params({"method": "structured", "amount": "0.5"}))
    layer = lm.model.bert.encoder.layer[0]
    assert layer.intermediate.dense.out_features == 32  # 64 -> 32 neurons
    assert layer.output.dense.in_features == 32
    assert layer.attention.self.query.out_features == 16  # 2 heads -> 1 head of 16
    assert layer.attention.self.num_attention_heads == 1
    assert sum(p.numel() for p in lm.model.parameters()) < n0
    assert app.details["weights_bytes_after"] < app.details["weights_bytes_before"]
    assert logits(lm).shape == (1, 2)  # still runs


def test_structured_pruning_gpt2_heads_and_ffn(folders):
    lm = load_hf_folder(folders["gpt2"])
    tech = implementation("pruning")
    tech.apply(ctx_for(lm), tech.parse_params({"method": "structured", "amount": "0.5"}))
    blk = lm.model.transformer.h[0]
    assert blk.mlp.c_fc.weight.shape == (32, 64)  # Conv1D (in, out): 128 -> 64 neurons
    assert blk.attn.c_attn.weight.shape == (32, 48) and blk.attn.num_heads == 1
    enc = lm.tokenizer(["the food was good"], return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**enc, labels=enc["input_ids"])
    assert out.logits.shape[-1] == len(lm.tokenizer) and torch.isfinite(out.loss)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_unstructured_pruning_hits_target_and_is_permanent(folders, scope):
    lm = load_hf_folder(folders["bert"], None, 2)
    tech = implementation("pruning")
    app = tech.apply(ctx_for(lm), tech.parse_params({"amount": "0.6", "scope": scope}))
    assert app.details["sparsity"] == pytest.approx(0.6, abs=0.01)
    if scope == "layer":
        assert all(s == pytest.approx(0.6, abs=0.02) for s in app.details["per_layer"].values())
    keys = lm.model.state_dict().keys()
    assert not any(k.endswith("weight_orig") or k.endswith("weight_mask") for k in keys)
    assert app.details["csr_bytes_estimate"] < app.details["dense_bytes"]
    assert "no time or energy saving" in " ".join(app.warnings)


def test_unstructured_pruning_during_training_keeps_masks_until_finalize(folders):
    lm = load_hf_folder(folders["bert"], None, 2, for_training=True)
    tech = implementation("pruning")
    params = tech.parse_params({"amount": "0.5"})
    ctx = ctx_for(lm, mode="train")
    app = tech.apply(ctx, params)
    assert any(k.endswith("weight_mask") for k in lm.model.state_dict())
    tech.finalize(ctx, params, app)
    assert not any(k.endswith("weight_mask") for k in lm.model.state_dict())
    assert app.details["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_ort_int8_file_is_smaller_and_runs(folders):
    lm = load_hf_folder(folders["bert"], None, 2)
    tech = implementation("quantization")
    app = tech.apply(ctx_for(lm), tech.parse_params({"backend": "ort"}))
    assert lm.kind == "onnx" and lm.session is not None
    assert app.details["bytes_after"] < app.details["bytes_before"]
    assert set(app.details["cpu_flags"]) >= {"avx512_vnni", "amx_int8"}


def test_ort_static_quantization_calibrates(folders):
    lm = load_hf_folder(folders["bert"], None, 2)
    tech = implementation("quantization")
    app = tech.apply(
        ctx_for(lm),
        tech.parse_params({"backend": "ort", "mode": "static", "calibration_batches": "2"}),
    )
    assert app.details["bytes_after"] < app.details["bytes_before"] and lm.kind == "onnx"


def test_torch_dynamic_int8_is_smaller(folders):
    lm = load_hf_folder(folders["bert"], None, 2)
    tech = implementation("quantization")
    app = tech.apply(ctx_for(lm), tech.parse_params({"backend": "torch"}))
    assert app.details["bytes_after"] < app.details["bytes_before"]
    assert "DynamicQuantizedLinear" in repr(lm.model)


def test_mixed_precision_cast_and_autocast(folders):
    lm = load_hf_folder(folders["bert"], None, 2)
    tech = implementation("mixed-precision")
    ctx = ctx_for(lm)
    tech.apply(ctx, tech.parse_params({"mode": "autocast"}))
    assert ctx.autocast is not None and next(lm.model.parameters()).dtype == torch.float32
    with ctx.autocast():
        assert logits(lm).dtype == torch.bfloat16
    before = lm.size_bytes
    tech.apply(ctx, tech.parse_params({"mode": "cast"}))
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert lm.size_bytes < 0.6 * before  # bf16 weights: half of fp32


@pytest.mark.parametrize(
    "specs,target,needle",
    [
        (["mixed-precision", "quantization"], CPU_INFER, "cannot be combined"),
        (["onnx-runtime", "quantization:backend=ort"], CPU_INFER, "already runs on ONNX Runtime"),
        (["pruning", "pruning:amount=0.5"], CPU_INFER, "given twice"),
        (["quantization"], Target("train", "cpu", "hf"), "quantization-aware training is not"),
        (["pruning:method=semi-structured"], CPU_INFER, "compute capability >= 8.0"),
        (
            ["pruning:method=semi-structured"],
            Target("infer", "cuda", "hf", cuda_capability=(7, 5)),
            "this GPU has 7.5",
        ),
        (["quantization:backend=torchao"], CPU_INFER, "targets CUDA GPUs"),
        (["mixed-precision:dtype=fp16"], Target("train", "cpu", "hf"), "fp16 training needs"),
        (["pruning"], Target("infer", "cpu", "onnx"), "an ONNX file cannot be pruned"),
    ],
)
def test_refused_combinations_say_why(specs, target, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(s) for s in specs], target)


def test_fixed_order_regardless_of_input_order():
    chosen = resolve(
        [parse_cli("quantization:backend=torch"), parse_cli("pruning:method=structured")], CPU_INFER
    )
    assert [t.name for t, _ in chosen] == ["pruning", "quantization"]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("pruning:amount=1.5", "between 0.0 and 0.95"),
        ("pruning:method=random", "must be one of"),
        ("pruning:colour=red", "unknown parameter"),
        ("pruning:amount", "is not KEY=VALUE"),
        ("no-such-technique", "unknown technique"),
        ("pruning:amount=lots", "must be a float"),
    ],
)
def test_parameter_errors(text, needle):
    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(text)], CPU_INFER)


def test_worker_applies_techniques_and_reports_agreement(folders, tmp_path):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(80))
    spec = RunSpec(
        model=str(folders["bert"]),
        dataset=str(data),
        batch_size=8,
        seq_len=16,
        techniques=(parse_cli("quantization:backend=ort"),),
    )
    import glob
    import tempfile

    work = f"{tempfile.gettempdir()}/wattlab-tech-*"
    before = set(glob.glob(work))
    r = SessionRunner(spec, RunStore(tmp_path / "w.db"), MeasureSettings(0.05, 0.1)).run()
    # ORT quantization wrote three ONNX copies of the model into its work folder: gone now.
    # (A folder another live process holds, e.g. a parallel test run, is not ours: the owner's
    # PID is in the name, and this run's worker has exited.)
    import psutil

    leaked = [
        d for d in set(glob.glob(work)) - before if not psutil.pid_exists(int(d.split("-")[2]))
    ]
    assert leaked == []
    s = r["session"]
    assert s["techniques"][0]["name"] == "quantization"
    assert s["model"]["kind"] == "onnx" and s["model_before"]["kind"] == "hf"
    det = s["techniques"][0]["details"]
    assert s["model"]["size_bytes"] == det["bytes_after"] < det["bytes_before"]
    assert 0.0 <= s["agreement"]["prediction_agreement"] <= 1.0
    assert s["agreement"]["items"] == 16
    assert "prepare" in r["phases"]


def test_lottery_ticket_rounds_raise_sparsity_and_report_energy(folders, tmp_path):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(80))
    spec = RunSpec(
        model=str(folders["bert"]),
        dataset=str(data),
        mode="train",
        epochs=1,
        batch_size=8,
        seq_len=16,
        techniques=(parse_cli("pruning:method=lottery,amount=0.5,rounds=2,rewind_steps=2"),),
    )
    r = SessionRunner(spec, RunStore(tmp_path / "w.db"), MeasureSettings(0.05, 0.1)).run()
    rounds = r["session"]["lottery_rounds"]
    assert [x["round"] for x in rounds] == [0, 1, 2]
    sp = [x["sparsity"] for x in rounds]
    assert sp[0] == pytest.approx(0.0, abs=0.01) and sp[1] == pytest.approx(1 - 0.5**0.5, abs=0.01)
    assert sp[2] == pytest.approx(0.5, abs=0.01)
    energy = [x["energy_j_so_far"] for x in rounds]
    assert energy == sorted(energy) and energy[0] > 0
    det = r["session"]["techniques"][0]["details"]
    assert det["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_lottery_needs_training_mode():
    with pytest.raises(SpecError, match="choose training mode"):
        resolve([parse_cli("pruning:method=lottery")], CPU_INFER)


def test_work_folders_of_dead_workers_are_swept(tmp_path):
    import subprocess
    import sys

    from wattlab.core.tempdirs import TECH_PREFIX, sweep_dead

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    gone = tmp_path / f"wattlab-tech-{dead}-abc"
    mine = tmp_path / f"wattlab-tech-{os.getpid()}-def"
    legacy = tmp_path / "wattlab-tech-k66lv_we"  # no PID in the name: not ours to judge
    for d in (gone, mine, legacy):
        d.mkdir()
    (gone / "model.int8.onnx").write_bytes(b"x" * 1024)
    assert sweep_dead(TECH_PREFIX, tmp_path) == [gone]
    assert not gone.exists() and mine.exists() and legacy.exists()
