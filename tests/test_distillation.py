"""Knowledge distillation: the student is a real, smaller copy cut from the teacher, its loss
really uses the frozen teacher, and sessions report the student as the model they measured."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests import tiny_models as tm
from wattlab.core.errors import ModelError, SpecError
from wattlab.core.models.hf import load_hf_folder
from wattlab.core.spec import RunSpec, demo_training_spec
from wattlab.core.techniques.base import Target
from wattlab.core.techniques.catalog import parse_cli
from wattlab.core.techniques.compose import resolve
from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.prepared import PreparedData, TrainSettings
from wattlab.core.worker.runner import run_session
from wattlab.core.worker.techniques.distillation import (
    DistillationLoss,
    build_student,
    narrow_ffn,
    spaced_layers,
    student_layers_for,
)
from wattlab.core.worker.train import train

TINY_DEMO = {
    "model": {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
    "data": {"n": 200, "seed": 13, "min_word_freq": 2},
    "recipe": {"epochs": 1, "batch_size": 32, "learning_rate": 0.001, "seq_len": 32, "seed": 0},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("distil")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        "gpt2": tm.gpt2(root / "gpt2"),
        "csv": tm.write_csv(root / "d.csv", tm.sentences(80)),
        "text": tm.write_text_corpus(root / "t.txt"),
    }


def deep_bert(layers: int = 4):
    """A tiny BERT classifier with more layers than tiny_models' two, to see the spacing."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tm.tokenizer()),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return BertForSequenceClassification(cfg).eval()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def batch(tok, labels=(1, 0)):
    enc = tok(
        ["the food was great", "the service was very slow"], padding=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"], torch.tensor(list(labels))


def session(spec: RunSpec) -> tuple[dict, list[str]]:
    """One session in this process; its result and its log lines."""
    buf = io.StringIO()
    result = run_session(spec.validate(), Emitter(buf), CancelToken())
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    return result, [e["message"] for e in events if e["event"] == "log"]


# -- the student ---------------------------------------------------------------------------------
def test_layers_are_evenly_spaced_as_distilbert_took_them():
    assert spaced_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert spaced_layers(4, 2) == [0, 3]
    assert spaced_layers(2, 1) == [0]


def test_student_is_cut_from_the_teachers_layers_embeddings_and_head():
    teacher = deep_bert(4)
    student, chosen = build_student(teacher, 2)
    assert chosen == [0, 3]
    assert len(student.bert.encoder.layer) == 2 and student.config.num_hidden_layers == 2
    assert n_params(student) < n_params(teacher)
    for i, j in enumerate(chosen):
        s_state = student.bert.encoder.layer[i].state_dict()
        t_state = teacher.bert.encoder.layer[j].state_dict()
        assert s_state.keys() == t_state.keys()
        assert all(torch.equal(s_state[k], t_state[k]) for k in s_state)
    assert torch.equal(
        student.bert.embeddings.word_embeddings.weight,
        teacher.bert.embeddings.word_embeddings.weight,
    )
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    # its own tensors: training the student cannot write into the teacher
    assert student.classifier.weight.data_ptr() != teacher.classifier.weight.data_ptr()


def test_gpt2_student_keeps_its_tied_head_and_runs(folders):
    teacher = load_hf_folder(folders["gpt2"], None, None).model
    student, chosen = build_student(teacher, 1)
    assert chosen == [0] and len(student.transformer.h) == 1 and student.config.n_layer == 1
    assert n_params(student) < n_params(teacher)
    assert torch.equal(
        student.transformer.h[0].attn.c_attn.weight, teacher.transformer.h[0].attn.c_attn.weight
    )
    assert student.lm_head.weight.data_ptr() == student.transformer.wte.weight.data_ptr()
    x = torch.tensor([[3, 4, 5, 6]])
    assert student(input_ids=x).logits.shape == (1, 4, teacher.config.vocab_size)


def test_width_narrows_every_ffn_and_the_config_says_so(tmp_path):
    student, _ = build_student(deep_bert(4), 2)
    assert narrow_ffn(student, 0.5) == 32
    assert [lay.intermediate.dense.out_features for lay in student.bert.encoder.layer] == [32, 32]
    assert student.config.intermediate_size == 32
    student.save_pretrained(tmp_path)  # a folder that loads back as the same small model
    from transformers import BertForSequenceClassification

    again = BertForSequenceClassification.from_pretrained(tmp_path)
    assert n_params(again) == n_params(student)


def test_student_layers_must_be_fewer_than_the_teachers():
    teacher = deep_bert(4)
    assert student_layers_for(teacher, 0) == 2  # default: half
    with pytest.raises(SpecError, match="student_layers=4 must be fewer than the teacher's 4"):
        student_layers_for(teacher, 4)


# -- the loss --------------------------------------------------------------------------------------
def test_loss_uses_the_teacher_and_only_the_student_gets_gradients():
    tok = tm.tokenizer()
    teacher = deep_bert(4)
    teacher.requires_grad_(False)
    student, _ = build_student(teacher, 2)
    student.train()
    x, m, y = batch(tok)
    out = student(input_ids=x, attention_mask=m, labels=y)
    loss = DistillationLoss(teacher, 2.0, 0.5, classify=True)(out, x, m, y)
    assert not torch.isclose(loss, out.loss)
    assert DistillationLoss(teacher, 2.0, 1.0, True)(out, x, m, y) is out.loss
    loss.backward()
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_soft_loss_is_zero_against_itself_and_reads_the_teachers_outputs():
    tok = tm.tokenizer()
    teacher = deep_bert(4)
    x, m, y = batch(tok)
    with torch.no_grad():
        out = teacher(input_ids=x, attention_mask=m, labels=y)
        same = DistillationLoss(teacher, 3.0, 0.25, classify=True)(out, x, m, y)
        assert same.item() == pytest.approx(0.25 * out.loss.item(), abs=1e-5)
        # a confident teacher: the same student output now costs more, by the soft term only
        sure = torch.tensor([[6.0, -6.0], [-6.0, 6.0]])
        confident = DistillationLoss(lambda **kw: SimpleNamespace(logits=sure), 3.0, 0.25, True)
        soft = confident.soft_loss(out.logits, sure, m)
        assert soft.item() > 0.1
        assert confident(out, x, m, y).item() == pytest.approx(same.item() + 0.75 * soft.item())


def test_lm_soft_loss_ignores_padding_positions():
    teacher = torch.nn.Identity()
    loss = DistillationLoss(teacher, 2.0, 0.0, classify=False)
    t = torch.randn(2, 5, 11)
    s = t.clone()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert loss.soft_loss(s, t, mask).item() == pytest.approx(0.0, abs=1e-6)
    s[1, 3:] += 10 * torch.randn(2, 11)  # padding positions: no effect
    assert loss.soft_loss(s, t, mask).item() == pytest.approx(0.0, abs=1e-6)
    s[1, 2] += 10 * torch.randn(11)  # a real token: counted
    assert loss.soft_loss(s, t, mask).item() > 0.01


def test_training_with_the_loss_moves_the_student_and_never_the_teacher():
    tok = tm.tokenizer()
    rows = tm.sentences(32)
    ids = tok([t for t, _ in rows], truncation=True, max_length=16)["input_ids"]
    labels = [int(lab == "pos") for _, lab in rows]
    data = PreparedData("classify", ids, ids[:8], labels, labels[:8], tok.pad_token_id, 2, "t")
    teacher = deep_bert(4)
    teacher.requires_grad_(False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, _ = build_student(teacher, 2)
    s0 = student.classifier.weight.detach().clone()
    hook = DistillationLoss(teacher, 2.0, 0.5, classify=True)
    spec = RunSpec(epochs=1, batch_size=8, max_steps=3, learning_rate=1e-3)
    s = TrainSettings.from_spec(spec, torch.device("cpu"), loss_hook=hook)
    out = train(student, data, s, Emitter(io.StringIO()), CancelToken())
    assert out.steps == 3
    assert not torch.equal(student.classifier.weight, s0)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


# -- sessions --------------------------------------------------------------------------------------
def distil_spec(
    model, data, mode, technique="distillation:student_layers=1,temperature=2,alpha=0.5"
):
    return RunSpec(
        model=str(model),
        dataset=str(data),
        mode=mode,
        epochs=1,
        max_steps=3,
        batch_size=8,
        seq_len=16,
        techniques=(parse_cli(technique),),
    )


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_bert_session_measures_the_student(folders, mode):
    r, logs = session(distil_spec(folders["bert"], folders["csv"], mode))
    entry = r["techniques"][0]
    det = entry["details"]
    assert entry["name"] == "distillation"
    assert (det["teacher_layers"], det["student_layers"]) == (2, 1)
    assert det["temperature"] == 2.0 and det["alpha"] == 0.5
    assert r["model"]["size_bytes"] == det["student_bytes"] < det["teacher_bytes"]
    assert r["model"]["num_params"] == det["student_params"] < det["teacher_params"]
    assert r["model_before"]["num_params"] == det["teacher_params"]
    if mode == "train":
        assert r["steps"] == 3  # the student's training is the measured work
        assert "distill_steps" not in det
    else:
        assert det["distill_steps"] == 3 and det["distill_items"] == 24
        assert 0.0 <= det["student_eval_accuracy"] <= 1.0
        assert any("distilling the student: epoch 1" in line for line in logs)
        assert r["agreement"]["items"] == 16  # the student's predictions against the teacher's


def test_narrow_student_without_soft_targets_says_so(folders):
    tech = "distillation:student_layers=1,width=0.5,alpha=1"
    r, _ = session(distil_spec(folders["bert"], folders["csv"], "train", tech))
    entry = r["techniques"][0]
    assert entry["details"]["student_ffn_width"] == 32  # of the teacher's 64
    assert "FFN width 32" in entry["description"]
    assert any("no weight on the teacher's soft targets" in w for w in entry["warnings"])


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_gpt2_session_distils_a_causal_lm(folders, mode):
    r, _ = session(distil_spec(folders["gpt2"], folders["text"], mode, "distillation"))
    det = r["techniques"][0]["details"]
    assert (det["teacher_layers"], det["student_layers"]) == (2, 1)
    assert r["model"]["size_bytes"] == det["student_bytes"] < det["teacher_bytes"]
    if mode == "infer":
        assert det["student_eval_perplexity"] > 1.0
    else:
        assert r["metrics"]["perplexity"] > 1.0


def test_demo_training_distils_from_the_cached_trained_demo(tmp_path, monkeypatch):
    d = tmp_path / "demo.json"
    d.write_text(json.dumps(TINY_DEMO))
    monkeypatch.setenv("WATTLAB_DEMO_DEFINITION", str(d))
    spec = RunSpec(
        model="demo",
        mode="train",
        epochs=1,
        max_steps=2,
        batch_size=16,
        seq_len=32,
        techniques=(parse_cli("distillation:student_layers=1"),),
    )
    assert demo_training_spec(dataclasses.replace(spec, techniques=())) is None
    with pytest.raises(ModelError, match="has not been trained yet"):
        session(spec)
    first = demo_training_spec(spec)  # what the CLI and GUI run first
    assert first is not None and first.techniques == () and first.max_steps is None
    session(first)
    assert demo_training_spec(spec) is None  # cached now
    r, _ = session(spec)
    det = r["techniques"][0]["details"]
    assert (det["teacher_layers"], det["student_layers"]) == (2, 1)
    assert r["model"]["size_bytes"] == det["student_bytes"] < det["teacher_bytes"]
    assert "student distilled from demo (cached weights" in r["model"]["source"]


# -- refusals --------------------------------------------------------------------------------------
def test_onnx_rag_and_shared_layers_are_refused_before_running():
    spec = [parse_cli("distillation")]
    with pytest.raises(SpecError, match="ONNX file cannot be trained"):
        resolve(spec, Target("infer", "cpu", "onnx"))
    with pytest.raises(SpecError, match="RAG"):
        resolve(spec, Target("rag", "cpu", "hf"))
    with pytest.raises(SpecError, match="ALBERT shares"):
        resolve(spec, Target("train", "cpu", "hf", "classify", "albert"))
    with pytest.raises(SpecError, match="alpha must be between 0.0 and 1.0"):
        resolve([parse_cli("distillation:alpha=2")], Target("train", "cpu", "hf"))


def test_too_many_student_layers_stop_the_session(folders):
    with pytest.raises(SpecError, match="student_layers=2 must be fewer than the teacher's 2"):
        session(
            distil_spec(folders["bert"], folders["csv"], "infer", "distillation:student_layers=2")
        )


def test_untrained_head_is_no_teacher(tmp_path, folders):
    enc = tm.bert_encoder(tmp_path / "enc")
    with pytest.raises(SpecError, match="classification head is untrained"):
        session(distil_spec(enc, folders["csv"], "train"))


@pytest.mark.e2e
def test_cli_refusals_are_one_line_exit_2(folders, tmp_path):
    onnx = tm.onnx_classifier(tmp_path / "onnx")
    cases = [
        (folders["bert"], "distillation:student_layers=3", "must be fewer than the teacher's 2"),
        (onnx, "distillation", "ONNX file cannot be trained"),
    ]
    for model, tech, needle in cases:
        r = subprocess.run(
            [sys.executable, "-m", "wattlab.core.cli.main", "run", "--model", str(model)]
            + ["--dataset", str(folders["csv"]), "--technique", tech, "--idle", "0"]
            + ["--batch-size", "8", "--seq-len", "16", "--max-steps", "2"],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 2, r.stderr
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert needle in lines[-1] and "Traceback" not in r.stderr
