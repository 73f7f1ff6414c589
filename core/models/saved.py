"""Where a trained model may be saved (``--save-model DIR``), decided without torch: the parent
refuses a bad destination before anything is measured, and the worker asks again just before it
writes, because the folder may have changed while the model trained.

The worker writes the model into a temporary folder next to DIR (``SAVE_PREFIX`` + its PID) and
renames it into place, so a failed, cancelled or killed run never leaves a half-written model
folder; a folder of a dead worker is swept by the next save. Only an empty folder or a model
folder (config.json, e.g. what an earlier ``--save-model`` wrote) is replaced: a folder holding
anything else is the user's and is never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Temporary folders next to DIR: ``<prefix><pid>-<random>`` (core/tempdirs.py sweeps them by PID).
SAVE_PREFIX = ".wattlab-save-"  # the model being written
OLD_PREFIX = ".wattlab-old-"  # the model folder being replaced, between the two renames
# What WattLab writes beside the weights: how they were trained (JSON, never read as code).
MARKER = "wattlab_model.json"
# Decoders whose structured pruning removes FFN neurons only (their attention heads stay).
FFN_ONLY_TYPES = ("llama", "mistral", "qwen2")


def is_model_folder(folder: Path) -> bool:
    """A model folder WattLab saved (its marker file): the only kind it replaces. Another
    Hugging Face folder (a downloaded checkpoint) is never deleted to make room."""
    return (folder / MARKER).is_file()


def destination_problem(dest: str, model: str) -> str | None:
    """Why the trained model cannot be saved to ``dest`` (one sentence), or None. ``model`` is
    the spec's model: saving over the folder a run trains from would lose the checkpoint."""
    path = Path(dest)
    why = None
    if path.is_symlink():
        why = "it is a symbolic link; give the real folder"
    elif path.exists() and not path.is_dir():
        why = "it is a file, not a folder"
    elif path.is_dir():
        if model != "demo" and _same_folder(path, Path(model)):
            why = (
                "it is the model folder this run trains from, whose original checkpoint would "
                "be lost; choose another folder"
            )
        else:
            why = _existing_folder_problem(path)
    why = why or _parent_problem(path)  # the new folder is made beside DIR, then renamed
    return None if why is None else f"cannot save the trained model to {dest}: {why}"


def _existing_folder_problem(path: Path) -> str | None:
    """An existing folder is replaced only when it is empty or holds a model."""
    try:
        empty = next(path.iterdir(), None) is None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if empty or is_model_folder(path):
        return None
    return (
        "it is not empty and WattLab did not save it; WattLab replaces only an empty folder "
        "or a model it saved, so choose a new or empty one"
    )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _parent_problem(path: Path) -> str | None:
    """The nearest existing ancestor of ``path`` must be a folder this user can write in (the
    temporary folder is made next to DIR, the missing folders on the way are created)."""
    for anc in path.absolute().parents:
        if not anc.exists():
            continue
        if not anc.is_dir():
            return f"{anc} is a file, not a folder"
        if not os.access(anc, os.W_OK | os.X_OK):
            return f"cannot write in {anc} (permission denied)"
        return None
    return None


# Techniques that change how a model is trained or fed, not what a Hugging Face folder holds: a
# model trained with them saves as plain weights (a distilled student is a smaller model of the
# same architecture, with its own config).
WEIGHTS_ONLY = (
    "mixed-precision",
    "distillation",
    "data",
    "augment",
    "grad-accum",
    "early-stopping",
    "batch-size",
    "seq-len",
    "threads",
    "ddp",
    "power-limit",
)


def technique_problem(
    name: str, params: Mapping[str, Any], model_type: str | None = None
) -> str | None:
    """Why a model trained with technique ``name`` (typed ``params``) cannot be saved as a plain
    Hugging Face folder that ``--model DIR`` loads, or None when it can. Pruning masks are made
    permanent before saving and mixed precision (autocast) keeps fp32 weights, so both save."""
    if name == "sparse-training":  # its masks are made permanent (or sliced) before saving
        name, params = "pruning", {"method": params.get("method"), "heads": params.get("heads")}
    if name == "pruning":
        method = params.get("method")
        if method == "semi-structured":
            return (
                "2:4 semi-structured pruning keeps its weights as CUDA sparse tensors, which "
                "safetensors cannot store"
            )
        if method == "structured" and params.get("heads") and model_type not in FFN_ONLY_TYPES:
            return (
                "structured pruning with heads=true removes attention heads, and config.json "
                "cannot describe layers with fewer heads (the installed transformers has no "
                "pruned_heads); use pruning:method=structured,heads=false (FFN neurons only) to "
                "save the smaller model"
            )
        return None
    if name in WEIGHTS_ONLY:
        return None
    return (
        f"{name} changes how the model runs (an ONNX Runtime graph, int8 kernels or exit heads), "
        "not weights a Hugging Face folder holds"
    )


def techniques_problem(
    chosen: Iterable[tuple[str, Mapping[str, Any]]], model_type: str | None = None
) -> str | None:
    """The first technique of ``chosen`` (name, typed params) whose model cannot be saved."""
    for name, params in chosen:
        why = technique_problem(name, params, model_type)
        if why is not None:
            return f"the trained model cannot be saved: {why}"
    return None
