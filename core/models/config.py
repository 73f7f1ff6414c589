"""What a model is, read from its files without torch or transformers: the GUI and the CLI
check a folder and name its task here before a worker starts; the worker loads it (models/hf.py,
which adds the check that the installed transformers knows the architecture).

Nothing here executes code from the folder: config.json is parsed as JSON, and a config with
``auto_map`` (custom modelling code) is refused with that reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.models.loaded import Task

DECODER_TYPES = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "opt", "phi")


def model_kind(model: str) -> str:
    """demo | onnx | hf, from what the user named (the one place this is decided)."""
    if model == "demo":
        return "demo"
    if model.lower().endswith(".onnx"):
        return "onnx"
    return "hf"


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as a dict, or one clear ModelError saying why the folder is not usable."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelError(f"model path does not exist: {folder}")
    if not folder.is_dir():
        raise ModelError(
            f"{folder} is a file; a Hugging Face model is a folder with config.json "
            "(use a .onnx file for ONNX models)"
        )
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"{folder} has no config.json: not a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{cfg_path} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path} does not hold a JSON object")
    if cfg.get("auto_map"):
        raise ModelError(
            f"{folder.name} needs custom code from the model folder (auto_map in "
            "config.json); WattLab never runs code shipped with a model "
            "(trust_remote_code=False)"
        )
    if not isinstance(cfg.get("model_type"), str):
        raise ModelError(f"{cfg_path} names no model_type: not a Hugging Face model config")
    return cfg


def detect_task(cfg: dict[str, Any]) -> tuple[Task, bool]:
    """(task, needs_new_head). Encoder-only checkpoints become classifiers with a new head."""
    archs = " ".join(cfg.get("architectures") or [])
    if "ForSequenceClassification" in archs:
        return "classify", False
    if "ForCausalLM" in archs or "LMHeadModel" in archs:
        return "causal-lm", False
    if cfg.get("is_decoder") or cfg.get("model_type") in DECODER_TYPES:
        return "causal-lm", False
    return "classify", True


def task_label(model: str, rag: bool = False) -> str:
    """What the GUI shows under the model picker: the same detection the worker uses."""
    if rag:
        return (
            "retrieval-augmented generation (demo gazetteer, its own encoder and generator)"
            if model == "demo"
            else "retrieval-augmented generation: this folder generates the answers"
        )
    kind = model_kind(model)
    if kind == "demo":
        return "text classification (demo, 4 intents)"
    if kind == "onnx":
        return "ONNX model (inference only)"
    try:
        cfg = read_config(Path(model))
    except ModelError as exc:
        return str(exc)
    task, new_head = detect_task(cfg)
    mt = cfg.get("model_type")
    if task == "causal-lm":
        return f"causal language model ({mt})"
    if new_head:
        return f"encoder ({mt}): a classification head will be added"
    return f"sequence classifier ({mt})"
