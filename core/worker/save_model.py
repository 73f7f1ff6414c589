"""``--save-model DIR``: the trained model written as a Hugging Face folder (model.safetensors,
config.json with the label mapping, the tokenizer files), so that ``wattlab run --model DIR``
measures the fine-tuned weights.

It runs after the measured phase has ended (and after the peak memory was read): its own
``save`` phase, with its time in the result, is never charged to the training. The folder is
written next to DIR and renamed into place (models/saved.py), so a run that fails, is cancelled
or is killed while saving leaves the previous folder or nothing, never half a model. A run that
was cancelled or diverged saves nothing, and says so, as does one whose techniques left a model a
Hugging Face folder cannot hold.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wattlab.core.errors import UserError
from wattlab.core.fileio import current_umask, first_line, write_json_atomic
from wattlab.core.models.loaded import LoadedModel
from wattlab.core.models.saved import (
    MARKER,
    OLD_PREFIX,
    SAVE_PREFIX,
    destination_problem,
    techniques_problem,
)
from wattlab.core.spec import RunSpec
from wattlab.core.tempdirs import sweep_dead
from wattlab.core.worker.events import END_PHASE, CancelToken, Emitter

SAVE_PHASE = "save"  # after END_PHASE: shown with its own time and energy, never measured
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class SavedModel:
    """The result's ``saved_model``: where the model went (None when it was not saved), the
    folder's size, the seconds saving took, and what was saved or why nothing was."""

    path: str | None
    size_bytes: int | None
    seconds: float | None
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _CancelledWhileSaving(Exception):
    pass


def save_trained(
    spec: RunSpec,
    loaded: LoadedModel,
    techniques: list[tuple[str, dict[str, Any]]],
    session: dict[str, Any],
    emit: Emitter,
    cancel: CancelToken,
) -> dict[str, Any]:
    """Save the trained model to ``spec.save_model``; ``techniques`` are the (name, typed params)
    applied, ``session`` the training's result fields (cancelled, diverged, metrics)."""
    assert spec.save_model is not None, "called only for a run with --save-model"
    dest = Path(spec.save_model)
    why = _why_not(spec, loaded, techniques, session, cancel)
    if why is not None:
        return _not_saved(dest, why, emit)
    emit.phase(SAVE_PHASE)
    t0 = time.perf_counter()
    try:
        size = _write(dest, loaded, techniques, spec, session, cancel)
    except _CancelledWhileSaving:
        why = "the run was cancelled while saving: the trained model was not saved"
    except (UserError, OSError) as exc:
        why = f"could not save the trained model: {first_line(exc)}"
    except Exception as exc:  # noqa: BLE001 - the measured training is kept whatever saving does
        traceback.print_exc()
        why = f"could not save the trained model: {type(exc).__name__}: {first_line(exc)}"
    finally:
        emit.phase(END_PHASE)
    if why is not None:
        return _not_saved(dest, why, emit)
    seconds = time.perf_counter() - t0
    note = _saved_note(loaded, techniques, infer_command(spec, dest.absolute()))
    emit.log(f"saved the trained model to {dest} ({size / 1e6:.1f} MB in {seconds:.1f} s)")
    return SavedModel(str(dest.absolute()), size, seconds, note).as_dict()


def _not_saved(dest: Path, why: str, emit: Emitter) -> dict[str, Any]:
    emit.log(f"model not saved to {dest}: {why}")
    return SavedModel(None, None, None, why).as_dict()


def _why_not(
    spec: RunSpec,
    loaded: LoadedModel,
    techniques: list[tuple[str, dict[str, Any]]],
    session: dict[str, Any],
    cancel: CancelToken,
) -> str | None:
    """Why nothing may be saved: a cancelled or diverged training, a model that is not a
    PyTorch model, a technique a Hugging Face folder cannot hold, or a destination that became
    unusable while the model trained."""
    if session.get("cancelled") or cancel.cancelled:
        return "the training was cancelled: a partly trained model is not saved"
    if session.get("diverged"):
        return f"training {session['diverged']}: a diverged model is not saved"
    if loaded.kind != "hf" or loaded.model is None:
        return "the trained model is not a PyTorch model a Hugging Face folder can hold"
    model_type = getattr(getattr(loaded.model, "config", None), "model_type", None)
    return techniques_problem(techniques, model_type) or destination_problem(
        str(spec.save_model), spec.model
    )


def _write(
    dest: Path,
    loaded: LoadedModel,
    techniques: list[tuple[str, dict[str, Any]]],
    spec: RunSpec,
    session: dict[str, Any],
    cancel: CancelToken,
) -> int:
    """Write the folder beside ``dest``, check it loads back, rename it into place; its size."""
    from wattlab.core.models.hf import check_saved_folder

    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    for prefix in (SAVE_PREFIX, OLD_PREFIX):
        sweep_dead(prefix, parent)  # what workers killed while saving left behind
    tmp = Path(tempfile.mkdtemp(prefix=f"{SAVE_PREFIX}{os.getpid()}-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0o700 is not what mkdir gives
        if any(
            n in ("pruning", "sparse-training") and p.get("method") == "structured"
            for n, p in techniques
        ):
            _fit_config(loaded.model)
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / MARKER, _provenance(spec, loaded, session))
        _refuse_pickles(tmp)
        _umask_modes(tmp)
        check_saved_folder(tmp, loaded.task)
        if cancel.cancelled:
            raise _CancelledWhileSaving
        _sync_tree(tmp)
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def _fit_config(model: Any) -> None:
    """After structured pruning without head removal, every layer's FFN has the same smaller
    width: config.json must say so, or the folder would load with those layers re-initialised
    (check_saved_folder refuses the folder if it still does not fit)."""
    width = _ffn_width(model)
    if width is not None:
        key = "n_inner" if model.config.model_type == "gpt2" else "intermediate_size"
        setattr(model.config, key, width)


def _ffn_width(model: Any) -> int | None:
    """The FFN width of the model's first layer, for the layouts structured pruning knows."""
    base = getattr(model, "base_model", None)
    if base is not None and hasattr(base, "encoder") and hasattr(base.encoder, "layer"):
        dense = getattr(getattr(base.encoder.layer[0], "intermediate", None), "dense", None)
        return int(dense.out_features) if dense is not None else None
    if base is not None and hasattr(base, "h"):  # GPT-2: Conv1D weight is (in, out)
        return int(base.h[0].mlp.c_fc.weight.shape[1])
    if base is not None and hasattr(base, "layers") and hasattr(base.layers[0].mlp, "gate_proj"):
        return int(base.layers[0].mlp.gate_proj.out_features)
    return None


def _provenance(spec: RunSpec, loaded: LoadedModel, session: dict[str, Any]) -> dict[str, Any]:
    """What the folder's MARKER says about how the weights were trained (JSON, for people)."""
    from importlib import metadata

    try:
        version = metadata.version("wattlab")
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return {
        "saved_by": f"WattLab {version}",
        "trained_from": spec.model,
        "dataset": spec.dataset,
        "task": loaded.task,
        "label_names": loaded.label_names,
        "final_eval": session.get("metrics") or {},
        "techniques": [t.get("description") for t in session.get("techniques") or []],
        "spec": spec.to_dict(),
    }


def _refuse_pickles(folder: Path) -> None:
    """The folder must load without unpickling anything (safetensors only)."""
    found = [f.name for f in folder.rglob("*") if f.suffix.lower() in PICKLE_SUFFIXES]
    if found:
        raise ValueError(f"the saved folder holds pickled files ({', '.join(found)})")


def _umask_modes(folder: Path) -> None:
    """Give every file the mode ``open()`` gives (safetensors writes model.safetensors 0o600):
    the folder is shared like any other the user makes."""
    mode = 0o666 & ~current_umask()
    for f in folder.rglob("*"):
        if f.is_file():
            os.chmod(f, mode)


def _sync_tree(folder: Path) -> None:
    """fsync every file and the folder before the rename makes it the model."""
    for f in folder.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` at ``dest``: a rename onto a missing or empty folder; a model folder is moved
    aside first (and back if the second rename fails), then removed."""
    if not dest.exists() or next(dest.iterdir(), None) is None:
        os.replace(tmp, dest)
        _sync_dir(dest.absolute().parent)
        return
    old = dest.absolute().parent / f"{OLD_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        os.rename(old, dest)
        raise
    _sync_dir(dest.absolute().parent)
    shutil.rmtree(old, ignore_errors=True)


def infer_command(spec: RunSpec, folder: Path) -> str:
    """The ``wattlab run`` that measures the saved model on the same eval split as the
    training's last evaluation (same dataset, split, truncation and batches), so its accuracy
    is that evaluation's."""
    import shlex

    argv = ["wattlab", "run", "--model", str(folder), "--dataset", spec.dataset, "--mode", "infer"]
    argv += ["--seq-len", str(spec.seq_len), "--batch-size", str(spec.batch_size)]
    argv += ["--seed", str(spec.seed), "--eval-fraction", repr(spec.eval_fraction)]
    if spec.task is not None:
        argv += ["--task", spec.task]
    for flag, value in (("--text-column", spec.text_column), ("--label-column", spec.label_column)):
        if value is not None:
            argv += [flag, value]
    return shlex.join(argv)


def _saved_note(
    loaded: LoadedModel, techniques: list[tuple[str, dict[str, Any]]], command: str
) -> str:
    """What the folder holds, how each technique's model was saved, and how to measure it."""
    what = "the trained model: model.safetensors, config.json"
    if loaded.label_names:
        what += f" with its labels ({', '.join(loaded.label_names)})"
    what += " and the tokenizer"
    if loaded.source == "demo":
        what += " (the demo saved as a plain BERT folder)"
    parts = [what]
    for name, params in techniques:
        parts.append(_technique_note(name, params, loaded.model))
    parts.append(f"measure it on the same eval split with: {command}")
    return "; ".join(p for p in parts if p)


def _technique_note(name: str, params: dict[str, Any], model: Any) -> str:
    if name == "sparse-training":
        name = "pruning"  # its masks were made permanent (or its units sliced) like pruning's
    if name == "pruning" and params.get("method") == "structured":
        return f"structurally pruned: FFN width {_ffn_width(model)} in config.json"
    if name == "pruning":
        from wattlab.core.worker.techniques.pruning import sparsity_report

        rep = sparsity_report(model)
        return (
            f"pruning made permanent: {rep['sparsity']:.1%} of prunable weights are zero, "
            "stored dense (loads as a plain model)"
        )
    if name == "mixed-precision":
        dtype = next((p.dtype for p in model.parameters()), None)
        return f"trained under {params.get('dtype')} {params.get('mode')}: weights saved as {dtype}"
    return ""
