"""Model sources and every bad model input, in-process (no worker needed)."""

from __future__ import annotations

import json
import pickle

import pytest

from tests import tiny_models as tm
from wattlab.core.errors import ModelError, SpecError
from wattlab.core.models.hf import load_hf_folder
from wattlab.core.models.onnx_model import export_onnx, load_onnx


def test_safetensors_classifier_loads_with_its_labels(tmp_path):
    f = tm.bert_classifier(tmp_path / "m")
    lm = load_hf_folder(f, None, 2, ["neg", "pos"])
    assert lm.task == "classify" and lm.label_names == ["neg", "pos"] and lm.notes == []
    assert lm.size_bytes == (f / "model.safetensors").stat().st_size and lm.num_params > 1000


def test_bin_checkpoint_loads_with_weights_only(tmp_path):
    f = tm.bert_classifier(tmp_path / "m", safetensors=False)
    assert (f / "pytorch_model.bin").exists() and not (f / "model.safetensors").exists()
    assert load_hf_folder(f, None, 2).task == "classify"


class _Payload:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))  # would create a file when unpickled


def test_pickled_code_in_bin_is_refused_and_never_runs(tmp_path):
    f = tm.bert_classifier(tmp_path / "m", safetensors=False)
    marker = tmp_path / "pwned"
    with open(f / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"x": _Payload(str(marker))}, fh)
    with pytest.raises(ModelError, match="could not be loaded safely"):
        load_hf_folder(f, None, 2)
    assert not marker.exists()
    with open(f / "pytorch_model.bin", "rb") as fh:  # the payload is live: plain pickle runs it
        pickle.load(fh)  # noqa: S301 - on purpose, to prove the test could fail
    assert marker.exists()


def test_truncated_safetensors(tmp_path):
    f = tm.bert_classifier(tmp_path / "m")
    w = f / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_hf_folder(f, None, 2)


def test_encoder_only_gets_a_new_head_and_says_so(tmp_path):
    f = tm.bert_encoder(tmp_path / "enc")
    lm = load_hf_folder(f, None, 3, ["a", "b", "c"], for_training=True)
    assert lm.task == "classify"
    assert any("new 3-label head" in n for n in lm.notes)


def test_causal_lm_is_detected(tmp_path):
    lm = load_hf_folder(tm.gpt2(tmp_path / "g"))
    assert lm.task == "causal-lm" and lm.tokenizer.eos_token == "[EOS]"


def test_label_count_mismatch_refused_for_inference(tmp_path):
    f = tm.bert_classifier(tmp_path / "m")
    with pytest.raises(ModelError, match="classifies into 2 labels but the dataset has 4"):
        load_hf_folder(f, None, 4)
    assert any(
        "resized from 2 to 4" in n for n in load_hf_folder(f, None, 4, for_training=True).notes
    )


@pytest.mark.parametrize(
    "setup,needle",
    [
        ("missing", "does not exist"),
        ("noconfig", "has no config.json"),
        ("badjson", "is not valid JSON"),
        ("remote", "never runs code shipped with a model"),
        ("arch", "unsupported architecture"),
        ("noweights", "has no weights"),
    ],
)
def test_bad_model_folders(tmp_path, setup, needle):
    f = tmp_path / "m"
    if setup != "missing":
        tm.bert_classifier(f)
        cfg = json.loads((f / "config.json").read_text())
        if setup == "noconfig":
            (f / "config.json").unlink()
        elif setup == "badjson":
            (f / "config.json").write_text("{ not json")
        elif setup == "remote":
            cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
            (f / "config.json").write_text(json.dumps(cfg))
        elif setup == "arch":
            cfg["model_type"] = "totally-new-arch"
            (f / "config.json").write_text(json.dumps(cfg))
        elif setup == "noweights":
            (f / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=needle):
        load_hf_folder(f, None, 2)


def test_onnx_export_and_load(tmp_path):
    f = tm.bert_classifier(tmp_path / "m")
    lm = load_hf_folder(f, None, 2)
    onnx_path = export_onnx(lm.model, f / "model.onnx")
    o = load_onnx(onnx_path)
    assert o.task == "classify" and o.onnx_inputs == ["input_ids", "attention_mask"]
    assert o.label_names == ["neg", "pos"] and o.size_bytes > 0


def test_not_an_onnx_file(tmp_path):
    f = tm.bert_classifier(tmp_path / "m")
    bogus = f / "fake.onnx"
    bogus.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_onnx(bogus)


def test_cuda_requested_without_gpu():
    import torch

    from wattlab.core.worker.device import resolve

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SpecError, match="CUDA was requested but there is no usable GPU"):
        resolve("cuda")


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("batch_size", 0, "batch size must be a positive integer"),
        ("batch_size", -4, "batch size must be a positive integer"),
        ("mode", "serve", "mode must be one of"),
        ("device", "tpu", "device must be"),
    ],
)
def test_spec_validation(field, value, needle):
    from wattlab.core.spec import RunSpec

    with pytest.raises(SpecError, match=needle):
        RunSpec(**{field: value}).validate()
