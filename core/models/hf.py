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

import os
from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.fileio import first_line, read_json
from wattlab.core.models import config
from wattlab.core.models.config import detect_task
from wattlab.core.models.files import check_inside, inside, shown
from wattlab.core.models.loaded import LoadedModel, Task
from wattlab.core.results import UNTRAINED_HEAD_FIX, UNTRAINED_HEAD_MARK

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# A config whose model has more than SIZE_RATIO x the checkpoint's parameters (+ SIZE_SLACK, for
# a new head or an untied LM head) does not describe this checkpoint; neither does one that leaves
# more than UNUSED_LIMIT of the checkpoint's weights without a place.
SIZE_RATIO, SIZE_SLACK, UNUSED_LIMIT = 4, 10_000_000, 0.2
# Files that hold a tokenizer's vocabulary, as transformers' tokenizer classes name them.
VOCAB_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "sentencepiece.model",
    "spm.model",
    "tokenizer.model",
    "bpe.codes",
    "dict.txt",
    "tekken.json",
)
VOCAB_PATTERNS = ("*.model", "*.spm", "*.tiktoken", "vocab*.json", "vocab*.txt")
# Every file AutoTokenizer may open in a folder (besides versioned tokenizer.X.json files).
TOKENIZER_FILES = VOCAB_FILES + (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "config.json",
)


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


def _shard_files(folder: Path, index: Path) -> list[Path]:
    """The shard files a ``model.safetensors.index.json`` names, each confined to ``folder``
    (models/files.py): the index is user data and could name ``../`` or absolute paths."""
    data = read_json(check_inside(folder, index, index.name), index.name)
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not (
        isinstance(wmap, dict)
        and wmap
        and all(isinstance(k, str) and isinstance(v, str) and v for k, v in wmap.items())
    ):
        raise ModelError(
            f"{index.name} is not a valid safetensors index: weight_map must map tensor names "
            'to shard file names, e.g. {"bert.pooler.dense.weight": "model-00001-of-00002'
            '.safetensors"}'
        )
    files = [inside(folder, n, index.name) for n in sorted(set(wmap.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelError(
            f"{folder.name}: shard(s) listed in the index are missing: "
            f"{', '.join(shown(m) for m in missing)}"
        )
    return files


# torch.load(weights_only=True) can be bypassed below 2.6 (CVE-2025-32434) and can corrupt
# memory below 2.10 (CVE-2026-24747): on an older torch a pickle is never opened.
SAFE_PICKLE_TORCH = (2, 10)


def refuse_unsafe_pickle(binf: Path, version: str) -> None:
    """Refuse ``.bin`` weights when this torch cannot unpickle them safely."""
    from packaging.version import InvalidVersion, Version

    try:
        release = Version(version).release[:2]
    except InvalidVersion:
        release = (0, 0)  # unparseable: treat as unsafe
    if release < SAFE_PICKLE_TORCH:
        need = ".".join(map(str, SAFE_PICKLE_TORCH))
        raise ModelError(
            f"{binf.name} is a pickle, and torch {version} cannot load pickles safely "
            f"(CVE-2025-32434, CVE-2026-24747): install torch>={need}, or convert the weights "
            "to model.safetensors"
        )


def _load_bin(folder: Path, binf: Path) -> dict[str, Any]:
    """pytorch_model.bin through ``torch.load(weights_only=True)``: tensors only, no code, and
    only on a torch whose restricted unpickler is sound."""
    import torch

    check_inside(folder, binf, binf.name)
    refuse_unsafe_pickle(binf, torch.__version__)
    try:
        sd = torch.load(binf, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means: do not trust the file
        raise ModelError(
            f"{binf.name} could not be loaded safely (weights_only=True refused "
            f"it or it is corrupt): {str(exc).splitlines()[0][:200]}"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{binf.name} is not a plain state dict of tensors")
    return sd


def _read_tensors(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """The checkpoint's tensors and the files they came from, every file inside ``folder``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    binf = folder / "pytorch_model.bin"
    if st.is_file():
        files = [check_inside(folder, st, st.name)]
    elif index.is_file():
        files = _shard_files(folder, index)
    elif binf.is_file():
        return _load_bin(folder, binf), [binf]
    else:
        raise ModelError(f"{folder.name} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    tensors: dict[str, Any] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{shown(f.name)} is corrupt or truncated: {first_line(exc)}"
            ) from None
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
    _check_unused(best, own)
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


def _check_unused(ckpt: dict[str, Any], own: dict[str, Any]) -> None:
    """Refuse a checkpoint much of which the model has no place for: config.json describes a
    smaller model (fewer layers, say) than the weights, and the run would measure that one.
    A language-model head is not counted: a causal LM loaded as a classifier drops it."""
    unused = [k for k in ckpt if k not in own and "lm_head" not in k]
    lost = sum(ckpt[k].numel() for k in unused)
    total = sum(v.numel() for v in ckpt.values()) or 1
    if lost > UNUSED_LIMIT * total:
        raise ModelError(
            f"{len(unused)} checkpoint tensors have no place in the model config.json describes "
            f"({lost / total:.0%} of the weights, e.g. {unused[0]}): make num_hidden_layers and "
            "the other sizes in config.json match the checkpoint"
        )


def _tokenizer_files(folder: Path, beside: str | None) -> list[Path]:
    """The tokenizer files transformers may open in ``folder``, each confined to it (a symlink
    out is refused), including the versioned files tokenizer_config.json's
    ``fast_tokenizer_files`` names; refused when none holds a vocabulary, because transformers
    would then build an empty tokenizer from config.json that turns every word into [UNK]."""
    where = f" next to {beside}" if beside else ""
    present = [f for f in TOKENIZER_FILES if (folder / f).is_file()]
    present += sorted(
        str(f.relative_to(folder))
        for pattern in VOCAB_PATTERNS + ("additional_chat_templates/*",)
        for f in folder.glob(pattern)
        if f.name not in present
    )
    found = [check_inside(folder, folder / f, f) for f in present]
    found += _versioned_tokenizer_files(folder)
    if not any(_holds_vocabulary(f) for f in found):
        raise ModelError(
            f"{folder.name} has no tokenizer files (tokenizer.json, vocab.txt, vocab.json or a "
            f"SentencePiece .model){where}: save the model's tokenizer into the folder "
            "(tokenizer.save_pretrained); without one every word would be [UNK]"
        )
    return found


def _holds_vocabulary(path: Path) -> bool:
    """Whether a tokenizer file is one that holds a vocabulary (not only settings)."""
    return (
        path.name in VOCAB_FILES
        or path.match("tokenizer.*.json")
        or any(path.match(p) for p in VOCAB_PATTERNS)
    ) and path.is_file()


def _versioned_tokenizer_files(folder: Path) -> list[Path]:
    """The files tokenizer_config.json's ``fast_tokenizer_files`` names (transformers picks one
    by its own version and opens it as given), each confined to ``folder``."""
    cfg_path = folder / "tokenizer_config.json"
    if not cfg_path.is_file():
        return []
    cfg = read_json(cfg_path, cfg_path.name)
    names = cfg.get("fast_tokenizer_files") if isinstance(cfg, dict) else None
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError("tokenizer_config.json: fast_tokenizer_files must be a list of file names")
    return [inside(folder, n, f"{cfg_path.name} (fast_tokenizer_files)") for n in names]


def _check_vocabulary(tok: Any, folder: Path, beside: str | None) -> None:
    """A tokenizer whose every id is a special token turns all text into [UNK]: the run would
    finish with a meaningless accuracy, so it is refused here."""
    if set(range(len(tok))) <= set(tok.all_special_ids):
        where = f" next to {beside}" if beside else ""
        raise ModelError(
            f"the tokenizer in {folder.name}{where} has no vocabulary (only special tokens "
            f"such as {tok.unk_token or '[UNK]'}): every word would be unknown; save the "
            "model's real tokenizer into the folder"
        )


def read_tokenizer(folder: Path, beside: str | None = None) -> Any:
    """The folder's tokenizer as saved, no code run, its files confined to ``folder``; ``beside``
    names the model file it serves (an ONNX file) for messages."""
    from transformers import AutoTokenizer

    _tokenizer_files(folder, beside)
    try:
        tok = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
        tok("the a probe")  # a vocabulary without its unknown token fails only when used
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        where = f" next to {beside}" if beside else ""
        raise ModelError(
            f"the tokenizer files in {folder.name}{where} could not be read "
            f"(tokenizer.json or vocab): {first_line(exc)}"
        ) from None
    _check_vocabulary(tok, folder, beside)
    return tok


def pad_fallback(tok: Any) -> str | None:
    """Give a tokenizer without a pad token its end-of-sequence (or unknown) token for padding,
    as GPT-style models are used; returns a note saying so, None when nothing changed."""
    if tok.pad_token is not None:
        return None
    tok.pad_token = tok.eos_token or tok.unk_token
    if tok.pad_token is None:
        return None
    return f"the tokenizer has no pad token: padding uses {tok.pad_token} (masked out)"


def load_tokenizer(folder: Path, beside: str | None = None) -> Any:
    """:func:`read_tokenizer`, with a pad token for batching (see :func:`pad_fallback`)."""
    tok = read_tokenizer(folder, beside)
    pad_fallback(tok)
    return tok


def auto_config(folder: Path, label: str = "config.json") -> Any:
    """transformers' config object for ``folder`` (its own validation included), no code run.
    Read before the tokenizer, which reads config.json too and would otherwise be blamed for
    its mistakes; ``label`` names the file in messages."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise ModelError(f"{label} could not be read by transformers: {first_line(exc)}") from None


def _factory(kind: str) -> Any:
    """The transformers auto class that builds a model of ``kind`` (a task, or "encoder")."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "classify":
        return AutoModelForSequenceClassification
    if kind == "causal-lm":
        return AutoModelForCausalLM
    return AutoModel


def _check_size(config: Any, kind: str, tensors: dict[str, Any]) -> None:
    """Build the model on the meta device (no memory) and refuse it when config.json describes
    one far larger than the checkpoint: an absurd hidden size or layer count would otherwise
    exhaust memory building it. A failure here is left to the real build to report."""
    import torch

    ckpt = sum(t.numel() for t in tensors.values())
    try:
        with torch.device("meta"):
            meta = _factory(kind).from_config(config)
    except Exception:  # noqa: BLE001 - the real build reports it with its reason
        return
    n = sum(p.numel() for p in meta.parameters())
    if n > SIZE_RATIO * ckpt + SIZE_SLACK:
        raise ModelError(
            f"config.json describes a model of about {n:.2g} parameters but the weights hold "
            f"{ckpt:.2g}: make hidden_size, num_hidden_layers and vocab_size in config.json "
            "match the checkpoint"
        )


def _build(config: Any, kind: str, model_type: str) -> Any:
    """The model ``config`` describes, with fresh weights; every failure a ModelError: what
    transformers cannot build from this config.json is the config's fault, not WattLab's."""
    try:
        return _factory(kind).from_config(config)
    except ValueError as exc:
        reason = {
            "classify": f"{model_type} models cannot classify sequences in the installed "
            "transformers",
            "causal-lm": f"{model_type} is not a causal language model",
        }.get(kind, f"{model_type} cannot be built as an encoder")
        raise ModelError(f"{reason}: {first_line(exc, 150)}") from None
    except Exception as exc:  # noqa: BLE001 - TypeError, MemoryError, RuntimeError from sizes
        raise ModelError(
            f"transformers cannot build the model config.json describes: "
            f"{type(exc).__name__}: {first_line(exc, 150)}"
        ) from None


def _configure_classifier(
    config: Any,
    cfg_dict: dict[str, Any],
    tok: Any,
    num_labels: int | None,
    label_names: list[str] | None,
    for_training: bool,
    notes: list[str],
) -> None:
    """Size the classification head for the dataset and give a decoder (GPT-style) model the
    tokenizer's pad token: its classifier reads the last non-pad token, and without a pad id
    it cannot handle a batch of more than one sequence."""
    _, new_head = detect_task(cfg_dict)
    ckpt_labels = len(cfg_dict.get("id2label") or {}) or None
    n = num_labels or ckpt_labels or 2
    if ckpt_labels and num_labels and ckpt_labels != num_labels and not new_head:
        if not for_training:
            raise ModelError(
                f"the model classifies into {ckpt_labels} labels but the "
                f"dataset has {num_labels} classes; train it first (--mode train "
                "--save-model DIR, then --model DIR) or pick a matching dataset"
            )
        notes.append(
            f"classification head resized from {ckpt_labels} to {n} labels and re-initialised"
        )
    if new_head:
        fix = (
            "this run trains it; --save-model DIR keeps the trained model"
            if for_training
            else UNTRAINED_HEAD_FIX
        )
        notes.append(
            f"{cfg_dict.get('model_type')} checkpoint without a classification "
            f"head: a new {n}-label head was added ({UNTRAINED_HEAD_MARK}: {fix})"
        )
    config.num_labels = n
    if label_names and len(label_names) == n:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {v: k for k, v in config.id2label.items()}
    decoder = detect_task(cfg_dict)[0] == "causal-lm"
    if decoder and getattr(config, "pad_token_id", None) is None:
        if tok.pad_token_id is None:
            raise ModelError(
                "the tokenizer has no pad, end-of-sequence or unknown token, so a causal "
                "language model cannot classify batches; add a pad_token to "
                "tokenizer_config.json"
            )
        config.pad_token_id = tok.pad_token_id


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
    task = task or detect_task(cfg_dict)[0]
    notes: list[str] = []
    config = auto_config(folder)
    tok = read_tokenizer(folder)
    pad_note = pad_fallback(tok)
    tensors, files = _read_tensors(folder)
    if task == "classify":
        _configure_classifier(config, cfg_dict, tok, num_labels, label_names, for_training, notes)
        if pad_note:
            notes.append(pad_note)
    _check_size(config, task, tensors)
    model = _build(config, task, str(cfg_dict.get("model_type")))
    _copy_weights(model, tensors, notes)
    model.eval()
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


def check_saved_folder(folder: Path, task: Task) -> None:
    """What ``load_hf_folder`` would refuse or re-initialise in a folder WattLab just saved,
    found before it replaces anything: config.json and the tokenizer must read back, and every
    tensor must have the shape the model config.json describes has (a re-initialised layer would
    make ``--model DIR`` measure random weights). Only the safetensors headers are read."""
    import torch
    from safetensors import safe_open

    read_config(folder)
    config = auto_config(folder)
    read_tokenizer(folder)
    index = folder / "model.safetensors.index.json"
    files = _shard_files(folder, index) if index.is_file() else [folder / "model.safetensors"]
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            shapes.update({k: tuple(h.get_slice(k).get_shape()) for k in h.keys()})
    with torch.device("meta"):
        meta = _factory(task).from_config(config)
    own = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    wrong = [k for k, shape in shapes.items() if k in own and own[k] != shape]
    if wrong:
        raise ModelError(
            f"the saved weights do not fit the model config.json describes: {', '.join(wrong[:3])}"
            f" ({shapes[wrong[0]]} saved, {own[wrong[0]]} expected)"
        )
    if len(own.keys() & shapes.keys()) < 0.5 * len(own):
        raise ModelError("the saved weights do not match the architecture in config.json")


def load_encoder_folder(folder: Path) -> tuple[Any, Any, list[Path]]:
    """(model, tokenizer, weight files) of a sentence encoder: the bare transformer (AutoModel),
    loaded with the same no-code, safe-weights rules as everything else here. Retrieval pools
    its hidden states; no head is added or needed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(folder)
    cfg_dict = read_config(folder)
    if detect_task(cfg_dict)[0] == "causal-lm":
        raise ModelError(
            f"{folder.name} is a causal language model ({cfg_dict.get('model_type')}); an "
            "embedding model is an encoder such as BERT or MiniLM"
        )
    config = auto_config(folder)
    tok = load_tokenizer(folder)
    tensors, files = _read_tensors(folder)
    _check_size(config, "encoder", tensors)
    model = _build(config, "encoder", str(cfg_dict.get("model_type")))
    _copy_weights(model, tensors, [])
    model.eval()
    return model, tok, files
