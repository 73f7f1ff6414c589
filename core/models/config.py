"""What a model is, read from its files without torch or transformers: the GUI and the CLI
check a folder and name its task here before a worker starts; the worker loads it (models/hf.py,
which adds the check that the installed transformers knows the architecture).

Nothing here executes code from the folder: config.json is parsed as JSON, and a config with
``auto_map`` (custom modelling code) is refused with that reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.fileio import read_json
from wattlab.core.models.files import check_inside
from wattlab.core.models.loaded import Task

DECODER_TYPES = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "opt", "phi")

# Layer counts, widths and vocabulary sizes as the common architectures name them: each must be
# a positive integer when present.
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "num_decoder_layers")
SIZE_FIELDS = LAYER_FIELDS + (
    "hidden_size",
    "n_embd",
    "d_model",
    "num_attention_heads",
    "n_head",
    "num_key_value_heads",
    "intermediate_size",
    "n_inner",
    "vocab_size",
    "type_vocab_size",
    "max_position_embeddings",
    "n_positions",
    "num_labels",
)
MAX_LAYERS = 1000  # the largest published models have a few hundred
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer")


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
    cfg = read_config_file(cfg_path, str(cfg_path))
    if cfg.get("model_type") is None:
        raise ModelError(f"{cfg_path} names no model_type: not a Hugging Face model config")
    return cfg


def read_config_file(path: Path, label: str) -> dict[str, Any]:
    """A config.json (a model folder's, or the one beside an ONNX file) read as JSON and its
    fields checked, so that a mistake in it is blamed on it, by field, before transformers
    (which would fail later with a TypeError, or not at all) sees it. ``label`` names the file
    in messages."""
    check_inside(path.parent, path, label)
    cfg = read_json(path, label)
    if not isinstance(cfg, dict):
        raise ModelError(f"{label} does not hold a JSON object")
    if cfg.get("auto_map"):
        raise ModelError(
            f"{path.parent.name} needs custom code from the model folder (auto_map in "
            "config.json); WattLab never runs code shipped with a model "
            "(trust_remote_code=False)"
        )
    check_fields(cfg, label)
    return cfg


def check_fields(cfg: dict[str, Any], label: str) -> None:
    """The fields WattLab and transformers read, checked for type and range: a wrong type is
    a TypeError deep inside transformers, and a layer count of 0 or below builds a model
    without layers that runs and reports meaningless numbers."""
    mt = cfg.get("model_type")
    if mt is not None and not isinstance(mt, str):
        raise ModelError(f'{label}: model_type must be a string such as "bert", not {mt!r:.60}')
    archs = cfg.get("architectures")
    if archs is not None and not (
        isinstance(archs, list) and all(isinstance(a, str) for a in archs)
    ):
        raise ModelError(
            f"{label}: architectures must be a list of class names such as "
            f'["BertForSequenceClassification"], not {archs!r:.60}'
        )
    for key in ("id2label", "label2id"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise ModelError(
                f'{label}: {key} must be an object such as {{"0": "neg", "1": "pos"}}, '
                f"not {cfg[key]!r:.60}"
            )
    _check_id2label(cfg.get("id2label"), label)
    for key in SIZE_FIELDS:
        _check_size(cfg, key, label)


def _check_id2label(id2label: dict[str, Any] | None, label: str) -> None:
    """Label ids are the integers 0..n-1 as strings (JSON keys), names are strings: the labels
    of a result are read from here."""
    if not id2label:
        return
    keys = sorted(str(k) for k in id2label)
    if keys != sorted(str(i) for i in range(len(id2label))):
        raise ModelError(
            f"{label}: id2label keys must be the label ids 0 to {len(id2label) - 1}, "
            f"not {', '.join(keys)[:60]}"
        )
    if not all(isinstance(v, str) for v in id2label.values()):
        raise ModelError(f"{label}: id2label values must be label names (strings)")


def _check_size(cfg: dict[str, Any], key: str, label: str) -> None:
    """``key`` absent/null, or a positive integer (a layer count at most MAX_LAYERS)."""
    v = cfg.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ModelError(f"{label}: {key} must be a positive integer, not {v!r:.40}")
    if key in LAYER_FIELDS and v > MAX_LAYERS:
        raise ModelError(
            f"{label}: {key} is {v}; no real model has more than {MAX_LAYERS} layers, "
            "fix config.json to match the checkpoint"
        )


def position_limit(cfg: dict[str, Any]) -> tuple[int, str] | None:
    """(the most tokens one sequence may have, the field that says so), from a config; None
    when the config names no limit. RoBERTa-style models start positions after the padding
    index, so two of their max_position_embeddings are never usable."""
    for key in POSITION_FIELDS:
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            if key == "max_position_embeddings" and cfg.get("model_type") in OFFSET_POSITIONS:
                pad = cfg.get("pad_token_id")
                v -= (pad if isinstance(pad, int) else 1) + 1
            return v, key
    return None


def detect_task(cfg: dict[str, Any]) -> tuple[Task, bool]:
    """(task, needs_new_head). Encoder-only checkpoints become classifiers with a new head."""
    archs = " ".join(cfg.get("architectures") or [])  # a list of strings (check_fields)
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
