"""Loading a local Hugging Face folder without ever executing code from it.

- ``trust_remote_code`` is never enabled: a config with ``auto_map`` (custom modelling code) is
  refused with that reason rather than silently loaded as something else.
- Weights are read by us, not by ``from_pretrained``: safetensors through ``safetensors`` (no
  code by design), ``pytorch_model.bin`` only through ``torch.load(weights_only=True)``, which
  refuses pickles that would construct anything but tensors. The model is built from its config
  and the tensors copied in, so no loader path that might unpickle or download is reached.
- Everything is local: ``local_files_only=True`` everywhere and the worker runs with
  ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.models import config
from wattlab.core.models.config import detect_task
from wattlab.core.models.loaded import LoadedModel, Task

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's config (models/config.py), and its architecture known to transformers."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cfg = config.read_config(folder)
    mt = cfg.get("model_type")
    if mt not in CONFIG_MAPPING:
        raise ModelError(
            f"unsupported architecture: model_type={mt!r} is not known to the "
            "installed transformers"
        )
    return cfg



def _read_tensors(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    binf = folder / "pytorch_model.bin"
    if st.is_file():
        files = [st]
    elif index.is_file():
        try:
            shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise ModelError(f"{index.name} is not a valid safetensors index: {exc}") from None
        files = [folder / n for n in shard_names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelError(
                f"{folder.name}: shard(s) listed in the index are missing: {', '.join(missing)}"
            )
    elif binf.is_file():
        try:
            sd = torch.load(binf, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means: do not trust the file
            raise ModelError(
                f"{binf.name} could not be loaded safely (weights_only=True refused "
                f"it or it is corrupt): {str(exc).splitlines()[0][:200]}"
            ) from None
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ModelError(f"{binf.name} is not a plain state dict of tensors")
        return sd, [binf]
    else:
        raise ModelError(f"{folder.name} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    tensors: dict[str, Any] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{f.name} is corrupt or truncated: {exc}") from None
    return tensors, files


def _copy_weights(model: Any, sd: dict[str, Any], notes: list[str]) -> None:
    own = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "") or ""
    variants = [sd]
    if prefix:
        variants.append({f"{prefix}.{k}": v for k, v in sd.items()})
        variants.append(
            {k[len(prefix) + 1 :]: v for k, v in sd.items() if k.startswith(prefix + ".")}
        )
    best = max(variants, key=lambda c: len(own.keys() & c.keys()))
    fitting = {k: v for k, v in best.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k, v in best.items() if k in own and own[k].shape != v.shape]
    if len(fitting) < 0.5 * len(own):
        raise ModelError(
            f"the weights do not match the architecture in config.json "
            f"({len(fitting)} of {len(own)} tensors fit)"
        )
    model.load_state_dict(fitting, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [k for k in own if k not in fitting]
    if mismatched:
        notes.append(
            f"re-initialised (shape differs from the checkpoint): {', '.join(mismatched[:4])}"
        )
    fresh = [k for k in missing if k not in mismatched and "lm_head" not in k]
    if fresh:
        notes.append(
            f"not in the checkpoint, freshly initialised: {', '.join(fresh[:4])}"
            + (f" (+{len(fresh) - 4} more)" if len(fresh) > 4 else "")
        )


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise ModelError(
            f"{folder.name} has no usable tokenizer files (tokenizer.json or "
            f"vocab): {str(exc).splitlines()[0][:200]}"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_hf_folder(
    folder: Path,
    task: Task | None = None,
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    for_training: bool = False,
) -> LoadedModel:
    """Load ``folder`` for ``task`` (detected when None). For classification, ``num_labels`` is
    the dataset's class count; a head of another size is re-initialised when training and
    refused for inference (its outputs would mean nothing)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(folder)
    cfg_dict = read_config(folder)
    detected, new_head = detect_task(cfg_dict)
    task = task or detected
    notes: list[str] = []
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"config.json could not be read by transformers: {str(exc).splitlines()[0][:200]}"
        ) from None
    tensors, files = _read_tensors(folder)
    ckpt_labels = len(cfg_dict.get("id2label") or {}) or None
    if task == "classify":
        n = num_labels or ckpt_labels or 2
        if ckpt_labels and num_labels and ckpt_labels != num_labels and not new_head:
            if not for_training:
                raise ModelError(
                    f"the model classifies into {ckpt_labels} labels but the "
                    f"dataset has {num_labels} classes; train it first "
                    "(--mode train) or pick a matching dataset"
                )
            notes.append(
                f"classification head resized from {ckpt_labels} to {n} labels and re-initialised"
            )
        if new_head:
            notes.append(
                f"{cfg_dict.get('model_type')} checkpoint without a classification "
                f"head: a new {n}-label head was added (untrained until you train it)"
            )
        config.num_labels = n
        if label_names and len(label_names) == n:
            config.id2label = dict(enumerate(label_names))
            config.label2id = {v: k for k, v in config.id2label.items()}
        try:
            model = AutoModelForSequenceClassification.from_config(config)
        except ValueError as exc:
            raise ModelError(
                f"{cfg_dict.get('model_type')} models cannot classify sequences in "
                f"the installed transformers: {str(exc)[:150]}"
            ) from None
    else:
        try:
            model = AutoModelForCausalLM.from_config(config)
        except ValueError as exc:
            raise ModelError(
                f"{cfg_dict.get('model_type')} is not a causal language model: {str(exc)[:150]}"
            ) from None
    _copy_weights(model, tensors, notes)
    model.eval()
    tok = load_tokenizer(folder)
    names = [config.id2label[i] for i in range(config.num_labels)] if task == "classify" else None
    return LoadedModel(
        kind="hf",
        task=task,
        tokenizer=tok,
        source=str(folder),
        size_bytes=sum(f.stat().st_size for f in files),
        num_params=sum(p.numel() for p in model.parameters()),
        model=model,
        label_names=names,
        notes=notes,
        folder=folder,
    )


def load_encoder_folder(folder: Path) -> tuple[Any, Any, list[Path]]:
    """(model, tokenizer, weight files) of a sentence encoder: the bare transformer (AutoModel),
    loaded with the same no-code, safe-weights rules as everything else here. Retrieval pools
    its hidden states; no head is added or needed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(folder)
    cfg_dict = read_config(folder)
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    if detect_task(cfg_dict)[0] == "causal-lm":
        raise ModelError(
            f"{folder.name} is a causal language model ({cfg_dict.get('model_type')}); an "
            "embedding model is an encoder such as BERT or MiniLM"
        )
    try:
        model = AutoModel.from_config(config)
    except ValueError as exc:
        raise ModelError(f"{folder.name} cannot be built as an encoder: {str(exc)[:150]}") from None
    tensors, files = _read_tensors(folder)
    _copy_weights(model, tensors, [])
    model.eval()
    return model, load_tokenizer(folder), files
