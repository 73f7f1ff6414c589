"""ONNX files (inference only), run with ONNX Runtime.

Inputs and outputs are read from the graph: ``input_ids`` is required; ``attention_mask`` and
``token_type_ids`` are fed when the graph asks for them. The tokenizer (and label names, from a
``config.json``) come from the ONNX file's folder, which is how ``save_pretrained`` + export
leave them.
"""

from __future__ import annotations

import json
from pathlib import Path

from wattlab.core.errors import ModelError
from wattlab.core.models.hf import load_tokenizer
from wattlab.core.models.loaded import LoadedModel, Task

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_onnx(
    path: Path, device: str = "cpu", task: Task | None = None, threads: int | None = None
) -> LoadedModel:
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX file does not exist: {path}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda"
        else ["CPUExecutionProvider"]
    )
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ModelError(
            "CUDA was requested but the installed onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu)"
        )
    try:
        sess = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).splitlines()[0][:200]
        raise ModelError(f"{path.name} is not a loadable ONNX model: {first}") from None
    inputs = [i.name for i in sess.get_inputs()]
    if "input_ids" not in inputs:
        raise ModelError(
            f"{path.name} has no input named input_ids (inputs: {', '.join(inputs)});"
            " WattLab runs text models exported from transformers"
        )
    unknown = [i for i in inputs if i not in KNOWN_INPUTS]
    if unknown:
        raise ModelError(f"{path.name} needs inputs WattLab cannot feed: {', '.join(unknown)}")
    out_rank = len(sess.get_outputs()[0].shape or [])
    detected: Task = "causal-lm" if out_rank == 3 else "classify"
    task = task or detected
    tok = load_tokenizer(path.parent)
    labels = None
    cfg = path.parent / "config.json"
    if cfg.is_file():
        try:
            id2label = json.loads(cfg.read_text()).get("id2label") or {}
            labels = [id2label[k] for k in sorted(id2label, key=int)] or None
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError):
            labels = None
    return LoadedModel(
        kind="onnx",
        task=task,
        tokenizer=tok,
        source=str(path),
        size_bytes=path.stat().st_size,
        num_params=_count_params(path),
        session=sess,
        onnx_inputs=inputs,
        label_names=labels,
        folder=path.parent,
    )


def _count_params(path: Path) -> int | None:
    try:
        import numpy as np
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        return int(sum(np.prod(t.dims) for t in m.graph.initializer))
    except Exception:  # noqa: BLE001 - a count is nice to have, not worth failing a run
        return None


def export_onnx(model, out_path: Path, opset: int = 17) -> Path:
    """Export a transformers classifier or causal LM to ONNX (logits only), for ONNX Runtime
    runs and int8 quantization. Uses the TorchScript exporter, which needs no extra packages."""
    import warnings

    import torch

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.ones_like(ids)
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model),
            (ids, mask),
            str(out_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "logits": {0: "batch"},
            },
        )
    model.train(was_training)
    return out_path
