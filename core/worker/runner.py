"""Inside the worker: resolve the model and data, run the session, assemble its result."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wattlab.core.errors import DataError, ModelError
from wattlab.core.models import datasets as ds
from wattlab.core.models.config import model_kind
from wattlab.core.models.loaded import LoadedModel
from wattlab.core.spec import RunSpec, demo_cache_folder, demo_recipe_matches
from wattlab.core.worker import device as devmod
from wattlab.core.worker.batching import encode, lm_blocks
from wattlab.core.worker.events import END_PHASE, CancelToken, Emitter
from wattlab.core.worker.techniques.catalog import implementation


def _detect_task(spec: RunSpec) -> str:
    kind = model_kind(spec.model)
    if spec.task:
        return spec.task
    if kind == "demo":
        return "classify"
    if kind == "hf":
        from wattlab.core.models.hf import detect_task, read_config

        return detect_task(read_config(Path(spec.model)))[0]
    return "onnx-detect"


def load_data(spec: RunSpec, task: str) -> ds.ClassificationData | ds.TextData:
    if spec.dataset == "demo":
        if task == "causal-lm":
            raise DataError(
                "the demo dataset is for classification; give a causal LM a .txt or "
                ".jsonl text file with --dataset"
            )
        from wattlab.core.models.demo import demo_definition

        d = demo_definition()["data"]
        return ds.load_demo(d["n"], d["seed"], spec.eval_fraction)
    path = Path(spec.dataset)
    if task == "causal-lm":
        return ds.load_text(path, spec.text_column, spec.eval_fraction, spec.seed)
    return ds.load_classification(
        path, spec.text_column, spec.label_column, spec.eval_fraction, spec.seed
    )


def load_model(spec: RunSpec, task: str, data: Any, dev: Any, emit: Emitter) -> LoadedModel:
    kind = model_kind(spec.model)
    names = getattr(data, "label_names", None)
    n = len(names) if names else None
    if kind == "onnx":
        from wattlab.core.models.onnx_model import load_onnx

        return load_onnx(Path(spec.model), dev.type, spec.task, spec.threads)
    if kind == "hf":
        from wattlab.core.models.hf import load_hf_folder

        return load_hf_folder(Path(spec.model), task, n, names, for_training=spec.mode == "train")
    # demo
    if spec.mode == "train":
        from wattlab.core.models.demo import build_untrained

        model, tok, notes = build_untrained(data.train_texts, names)

        return LoadedModel(
            kind="hf",
            task="classify",
            tokenizer=tok,
            source="demo",
            size_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
            num_params=sum(p.numel() for p in model.parameters()),
            model=model,
            label_names=names,
            notes=notes,
        )
    folder = demo_cache_folder(spec)
    from wattlab.core.models.demo import is_cached

    if not is_cached(folder):
        raise ModelError(
            "the demo model has not been trained yet on this machine: run "
            "`wattlab run --model demo --mode train` first"
        )
    from wattlab.core.models.hf import load_hf_folder

    loaded = load_hf_folder(folder, "classify", n, names)
    loaded.source = f"demo (cached weights in {folder})"
    return loaded


def _align_labels(loaded: LoadedModel, data: ds.ClassificationData, mode: str) -> None:
    """Make dataset label ids mean what the model's outputs mean, by label name."""
    m = loaded.label_names
    if mode != "infer" or not m or m == data.label_names:
        return
    if sorted(m) == sorted(data.label_names):
        remap = {i: m.index(name) for i, name in enumerate(data.label_names)}
        data.train_labels = [remap[x] for x in data.train_labels]
        data.eval_labels = [remap[x] for x in data.eval_labels]
        data.label_names = list(m)
    elif len(m) != len(data.label_names):
        raise ModelError(
            f"the model classifies into {len(m)} labels but the dataset has "
            f"{len(data.label_names)} classes"
        )


def _save_demo(loaded: LoadedModel, spec: RunSpec, emit: Emitter) -> str | None:
    if not demo_recipe_matches(spec):
        emit.log("demo trained with a non-default recipe: weights not cached")
        return None
    folder = demo_cache_folder(spec)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=folder.parent))
    try:
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # atomic: a half-saved cache is never seen as cached
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        emit.log(f"could not cache the demo weights: {exc}")
        return None
    return str(folder)


def sparsity_report_of(model: Any) -> dict[str, Any]:
    from wattlab.core.worker.techniques.pruning import sparsity_report

    return sparsity_report(model)


def target_for(spec: RunSpec, task: str | None, dev: Any, loaded: LoadedModel | None) -> Any:
    from wattlab.core.techniques.base import Target

    cap = None
    if dev is not None and dev.type == "cuda":
        import torch

        cap = tuple(torch.cuda.get_device_capability(dev))
    mt = None
    if loaded is not None and loaded.model is not None:
        mt = getattr(getattr(loaded.model, "config", None), "model_type", None)
    kind = loaded.kind if loaded is not None else model_kind(spec.model)
    return Target(spec.mode, dev.type if dev is not None else "cpu", kind, task, mt, cap)


AGREEMENT_ITEMS = 256


def _reference_logits(
    loaded: LoadedModel, ids: list[list[int]], pad_id: int, dev: Any, autocast: Any = None
) -> Any:
    import numpy as np

    from wattlab.core.worker.batching import batches, collate
    from wattlab.core.worker.infer import Forward

    fwd = Forward(loaded, dev, autocast)
    sub = ids[:AGREEMENT_ITEMS]
    return np.concatenate(
        [fwd(*collate([sub[i] for i in b], pad_id), False)[0] for b in batches(len(sub), 32)]
    )


def _apply_techniques(
    spec: RunSpec,
    loaded: LoadedModel,
    task: str,
    dev: Any,
    pad_id: int,
    train_ids: list[list[int]],
    eval_ids: list[list[int]],
    emit: Emitter,
    workdir: Path,
    train_y: list[int] | None = None,
    eval_y: list[int] | None = None,
) -> tuple[list[Any], Any, list[Any]]:
    """Apply in the fixed order; for classifiers that run inference, measure how far the
    optimized model's predictions move from the unmodified model's (agreement, max logit
    difference) on up to 256 eval items. Quality itself comes from the measured run."""
    import numpy as np

    from wattlab.core.techniques.compose import resolve
    from wattlab.core.worker.techniques.context import TechniqueContext

    chosen = resolve(spec.techniques, target_for(spec, task, dev, loaded))
    tctx = TechniqueContext(loaded, spec, dev, task, pad_id, train_ids[:2048], workdir, emit.log)
    # Labelled slices for techniques that calibrate or train (never the eval split for that);
    # eval data only for curves reported beside the measured result.
    tctx.calib_labels = train_y[:2048] if train_y is not None else None
    tctx.eval_ids, tctx.eval_labels = eval_ids, eval_y
    ref = None
    if spec.mode == "infer" and task == "classify":
        ref = _reference_logits(loaded, eval_ids, pad_id, dev)
    applied = []
    for tech, params in chosen:
        emit.log(f"applying {tech.name} {params}")
        app = implementation(tech.name).apply(tctx, params)
        app.warnings = [w for w in app.warnings if w]
        for w in app.warnings:
            emit.log(f"{tech.name}: {w}")
        applied.append(app)
    if ref is not None:
        new = _reference_logits(loaded, eval_ids, pad_id, dev, tctx.autocast)
        tctx.agreement = {
            "items": int(len(ref)),
            "prediction_agreement": float((ref.argmax(-1) == new.argmax(-1)).mean()),
            "max_abs_logit_diff": float(np.abs(ref - new.astype(np.float64)).max()),
        }
    return chosen, tctx, applied


def run_session(spec: RunSpec, emit: Emitter, cancel: CancelToken) -> dict[str, Any]:
    """One session; the techniques' work folder (ONNX copies of the model, hundreds of MB for
    a large one) lives exactly as long as the session, whatever way it ends."""
    sweep_dead_workdirs()
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as workdir:
        return _run_session(spec, emit, cancel, Path(workdir))


WORKDIR_PREFIX = "wattlab-tech-"


def sweep_dead_workdirs(root: Path | None = None) -> list[Path]:
    """Remove work folders whose worker is gone: a worker killed with SIGKILL (or a machine
    reset) cannot clean up after itself, so the next one does. The owner's PID is in the name;
    a folder whose name carries none (older versions) is left alone."""
    import psutil

    removed = []
    for d in Path(root or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = d.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _run_session(
    spec: RunSpec, emit: Emitter, cancel: CancelToken, workdir: Path
) -> dict[str, Any]:
    emit.phase("load")
    import torch

    if spec.threads:
        torch.set_num_threads(spec.threads)
    if spec.mode == "rag":
        from wattlab.core.worker.rag import run_rag_session

        return run_rag_session(spec, emit, cancel)
    dev = devmod.resolve(spec.device)
    emit.emit("device", **devmod.describe(dev))  # the parent counts this GPU, and only it
    from wattlab.core.worker.train import seed_everything

    seed_everything(spec.seed)  # before any model is built: new heads and the demo init too
    task = _detect_task(spec)
    if task == "onnx-detect":
        loaded = load_model(spec, "classify", None, dev, emit)
        task = loaded.task
        data = load_data(spec, task)
    else:
        data = load_data(spec, task)
        loaded = load_model(spec, task, data, dev, emit)
    for note in loaded.notes:
        emit.log(note)
    tok = loaded.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    num_labels = 0
    if task == "classify":
        _align_labels(loaded, data, spec.mode)
        num_labels = data.num_labels
        train_ids = encode(tok, data.train_texts, spec.seq_len)
        eval_ids = encode(tok, data.eval_texts, spec.seq_len)
        train_y, eval_y = data.train_labels, data.eval_labels
    else:
        train_ids = lm_blocks(tok, data.train_texts, spec.seq_len)
        eval_ids = lm_blocks(tok, data.eval_texts, spec.seq_len)
        train_y = eval_y = None
        if not eval_ids:
            raise DataError("the evaluation split has no text after tokenisation")
    if loaded.model is not None:
        loaded.model.to(dev)
    model_before = loaded.info()
    tctx = None
    applied: list[Any] = []
    chosen: list[Any] = []
    if spec.techniques:
        emit.phase("prepare")
        chosen, tctx, applied = _apply_techniques(
            spec, loaded, task, dev, pad_id, train_ids, eval_ids, emit, workdir, train_y, eval_y
        )
    devmod.reset_peak(dev)
    result: dict[str, Any] = {
        "mode": spec.mode,
        "task": task,
        "model": loaded.info(),
        "model_before": model_before,
        "dataset": {
            "source": data.source,
            "train_items": len(train_ids),
            "eval_items": len(eval_ids),
            "label_names": getattr(data, "label_names", None),
        },
        "device": devmod.describe(dev),
    }
    if spec.mode == "train":
        from wattlab.core.worker.train import train

        lottery_params = tctx.lottery if tctx else None
        autocast = tctx.autocast if tctx else None
        if lottery_params:
            from wattlab.core.worker.lottery import lottery

            out, rounds = lottery(
                loaded.model,
                spec,
                lottery_params,
                (train_ids, train_y, eval_ids, eval_y),
                pad_id,
                dev,
                task,
                num_labels,
                emit,
                cancel,
                autocast=autocast,
            )
            result["lottery_rounds"] = rounds
            pruning = next(a for a in applied if a.name == "pruning")
            pruning.details.update(sparsity_report_of(loaded.model))
        else:
            out = train(
                loaded.model,
                spec,
                train_ids,
                train_y,
                eval_ids,
                eval_y,
                pad_id,
                dev,
                task,
                num_labels,
                emit,
                cancel,
                autocast=autocast,
                grad_scaler=bool(tctx and tctx.grad_scaler),
            )
        devmod.sync(dev)
        emit.phase(END_PHASE)  # the measured work (train + eval) ends here
        for (tech, params), app in zip(chosen, applied, strict=True):
            implementation(tech.name).finalize(tctx, params, app)
        result.update(
            {
                "items": out.items,
                "tokens": out.tokens,
                "steps": out.steps,
                "epochs": out.epochs,
                "metrics": out.epochs[-1] if out.epochs else {},
                "cancelled": out.cancelled,
                "stopped_early": out.stopped_early,
                "train_time_s": out.train_time_s,
            }
        )
        if spec.model == "demo" and not out.cancelled:
            result["saved_to"] = _save_demo(loaded, spec, emit)
    else:
        from wattlab.core.worker.infer import Forward, run_inference

        out_i = run_inference(
            Forward(loaded, dev, tctx.autocast if tctx else None),
            eval_ids,
            eval_y,
            pad_id,
            spec,
            task,
            num_labels,
            emit,
            cancel,
        )
        result.update(out_i.summary())
        result["cancelled"] = out_i.cancelled
        if out_i.logits is not None:
            result["predictions"] = out_i.logits.argmax(-1).tolist()
    if spec.mode == "train":
        result["skipped_steps"] = out.skipped_steps
        result["model"] = loaded.info()  # after finalize (e.g. pruning made permanent)
    if applied:
        result["techniques"] = [a.as_dict() for a in applied]
        if tctx is not None and tctx.agreement is not None:
            result["agreement"] = tctx.agreement
        if tctx is not None and tctx.early_exit is not None:
            result["early_exit"] = tctx.early_exit.stats()
    peak, how = devmod.peak_memory(dev)
    result["peak_mem_bytes"] = peak
    result["peak_mem_source"] = how
    return result
