"""ONNX files (inference only), run with ONNX Runtime.

Inputs and outputs are read from the graph: ``input_ids`` is required; ``attention_mask`` and
``token_type_ids`` are fed when the graph asks for them. The tokenizer (and label names, from a
``config.json``) come from the ONNX file's folder, which is how ``save_pretrained`` + export
leave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.fileio import first_line
from wattlab.core.models.config import read_config_file
from wattlab.core.models.files import inside, shown
from wattlab.core.models.hf import auto_config, load_tokenizer
from wattlab.core.models.loaded import LoadedModel, Task

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_onnx(
    path: Path, device: str = "cpu", task: Task | None = None, threads: int | None = None
) -> LoadedModel:
    """An ONNX file and the tokenizer (and config.json) beside it. Its external data files are
    confined to its folder before ONNX Runtime opens anything, and config.json is checked
    before the tokenizer reads it, so that each mistake is blamed on the right file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX file does not exist: {path}")
    graph = _read_graph(path)
    data_files = external_data_files(path, graph)
    cfg = sidecar_config(path)
    tok = load_tokenizer(path.parent, beside=path.name)
    sess = _session(path, device, threads)
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
    id2label = (cfg or {}).get("id2label") or {}
    return LoadedModel(
        kind="onnx",
        task=task or detected,
        tokenizer=tok,
        source=str(path),
        size_bytes=sum(f.stat().st_size for f in [path, *data_files]),
        num_params=_count_params(graph),
        session=sess,
        onnx_inputs=inputs,
        label_names=[id2label[k] for k in sorted(id2label, key=int)] or None,
        folder=path.parent,
    )


def _read_graph(path: Path) -> Any:
    """The model's protobuf without its external data (small even for a model of many GB)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own decode errors
        raise ModelError(f"{path.name} is not a loadable ONNX model: {first_line(exc)}") from None


def _tensors(graph: Any) -> list[Any]:
    """Every tensor a graph holds: initializers and those in node attributes, subgraphs too."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                out.append(attr.t)
            out.extend(attr.tensors)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                out.extend(_tensors(sub))
    return out


def external_data_files(path: Path, model: Any | None = None) -> list[Path]:
    """The external data files ``path``'s tensors are stored in (the layout of models over
    2 GB), each resolved inside the ONNX file's folder, symlinks too (models/files.py)."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = model if model is not None else _read_graph(path)
    try:
        names = {
            ExternalDataInfo(t).location for t in _tensors(model.graph) if uses_external_data(t)
        }
    except Exception as exc:  # noqa: BLE001 - a malformed offset or length (not an integer)
        raise ModelError(
            f"{path.name} is not a loadable ONNX model: its external data entries are malformed "
            f"({first_line(exc, 120)})"
        ) from None
    files = [inside(path.parent, n, path.name) for n in sorted(names)]
    missing = [shown(f.relative_to(path.parent)) for f in files if not f.is_file()]
    if missing:
        raise ModelError(
            f"{path.name} keeps its weights in {', '.join(missing)}, which is missing: copy it "
            "into the folder next to the .onnx file"
        )
    return files


def sidecar_config(path: Path) -> dict[str, Any] | None:
    """The config.json beside an ONNX file (labels, and what the tokenizer reads), checked as
    a Hugging Face folder's is; None when there is none."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cfg_path = path.parent / "config.json"
    if not cfg_path.is_file():
        return None
    label = f"config.json next to {path.name}"
    cfg = read_config_file(cfg_path, label)
    mt = cfg.get("model_type")
    if mt is not None and mt not in CONFIG_MAPPING:
        raise ModelError(f"{label}: model_type={mt!r} is not known to the installed transformers")
    if mt is not None:  # what the tokenizer will read: its mistakes are config.json's
        auto_config(path.parent, label)
    return cfg


def _session(path: Path, device: str, threads: int | None) -> Any:
    """An ONNX Runtime session over ``path`` on ``device``."""
    import onnxruntime as ort

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
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelError(f"{path.name} is not a loadable ONNX model: {first_line(exc)}") from None


def check_input_shapes(loaded: LoadedModel, batch_size: int, seq_len: int) -> None:
    """Refuse an ONNX graph whose inputs have fixed batch or sequence sizes: WattLab feeds
    batches of up to ``batch_size`` sequences padded to the longest in the batch (the last
    batch smaller), so fixed sizes fail on the first batch that differs."""
    name = Path(loaded.source).name
    for inp in loaded.session.get_inputs():
        shape = list(inp.shape or [])
        if len(shape) != 2:
            raise ModelError(
                f"{name}: input {inp.name} has shape {shape}; WattLab feeds [batch, sequence]"
            )
        batch, seq = (d if isinstance(d, int) and d > 0 else None for d in shape)
        if seq is not None or (batch is not None and not batch == batch_size == 1):
            raise ModelError(
                f"{name} has a fixed input shape {inp.name}{shape}; WattLab feeds batches of "
                f"up to --batch-size {batch_size} sequences of up to --seq-len {seq_len} "
                "tokens, padded to the longest: re-export it with dynamic batch and sequence "
                "axes (dynamic_axes in torch.onnx.export)"
            )


def _count_params(model: Any) -> int | None:
    try:
        import numpy as np

        return int(sum(np.prod(t.dims) for t in model.graph.initializer))
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
