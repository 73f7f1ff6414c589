"""Inside the worker: resolve the model and data, run the session, assemble its result."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wattlab.core.models.config import model_kind
from wattlab.core.models.loaded import LoadedModel
from wattlab.core.spec import RunSpec, demo_cache_folder, demo_recipe_matches
from wattlab.core.techniques.base import Applied, Target, Technique
from wattlab.core.tempdirs import TECH_PREFIX, owned_tempdir
from wattlab.core.worker import device as devmod
from wattlab.core.worker.events import END_PHASE, CancelToken, Emitter
from wattlab.core.worker.inputs import load_model_and_data, prepare_data
from wattlab.core.worker.prepared import AutocastFactory, InferSettings, PreparedData, TrainSettings
from wattlab.core.worker.techniques.catalog import implementation
from wattlab.core.worker.techniques.context import TechniqueContext
from wattlab.core.worker.train import TrainOutcome


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


def target_for(spec: RunSpec, task: str | None, dev: Any, loaded: LoadedModel | None) -> Target:
    """What the techniques are asked about: mode, device (with its CUDA capability), model."""
    cap = None
    if dev is not None and dev.type == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability(dev)
        cap = (major, minor)
    mt = None
    if loaded is not None and loaded.model is not None:
        mt = getattr(getattr(loaded.model, "config", None), "model_type", None)
    kind = loaded.kind if loaded is not None else model_kind(spec.model)
    return Target(spec.mode, dev.type if dev is not None else "cpu", kind, task, mt, cap)


AGREEMENT_ITEMS = 256
# A lifecycle run's phase between training and serving: the techniques' finalize (masks made
# permanent, QAT weights converted to int8, ...), timed and metered as a stage of its own.
CONVERT_PHASE = "convert"


def _reference_logits(
    loaded: LoadedModel,
    ids: list[list[int]],
    pad_id: int,
    dev: Any,
    autocast: AutocastFactory | None = None,
) -> Any:
    import numpy as np

    from wattlab.core.worker.batching import batches, collate
    from wattlab.core.worker.infer import Forward

    fwd = Forward(loaded, dev, autocast)
    sub = ids[:AGREEMENT_ITEMS]
    return np.concatenate(
        [fwd(*collate([sub[i] for i in b], pad_id), False)[0] for b in batches(len(sub), 32)]
    )


@dataclass
class SessionTechniques:
    """The techniques a session applied: what was chosen (in the fixed order), the context they
    worked in with the hooks they set (autocast, lottery rounds, ...), and what each reported.
    An empty one stands for a session without techniques."""

    chosen: list[tuple[Technique, dict[str, Any]]] = field(default_factory=list)
    ctx: TechniqueContext | None = None
    applied: list[Applied] = field(default_factory=list)

    @property
    def autocast(self) -> AutocastFactory | None:
        return self.ctx.autocast if self.ctx is not None else None

    @property
    def grad_scaler(self) -> bool:
        return bool(self.ctx and self.ctx.grad_scaler)

    @property
    def lottery(self) -> dict[str, Any] | None:
        return self.ctx.lottery if self.ctx is not None else None

    def train_settings(self, spec: RunSpec, dev: Any) -> TrainSettings:
        """The training loop's settings: the spec's recipe plus the hooks the techniques set."""
        ctx = self.ctx
        return TrainSettings.from_spec(
            spec,
            dev,
            self.autocast,
            self.grad_scaler,
            ctx.loss_hook if ctx is not None else None,
            tuple(ctx.after_update) if ctx is not None else (),
        )

    def data_or(self, data: PreparedData) -> PreparedData:
        """The data the session runs on: what a technique replaced it with, else ``data``."""
        return self.ctx.data if self.ctx is not None and self.ctx.data is not None else data

    def finalize(self) -> None:
        """After training: each technique's last word (e.g. pruning masks made permanent)."""
        for (tech, params), app in zip(self.chosen, self.applied, strict=True):
            implementation(tech.name).finalize(self.ctx, params, app)

    def report(self) -> dict[str, Any]:
        """The result's technique fields: what was applied, agreement, early-exit statistics."""
        out: dict[str, Any] = {}
        if not self.applied:
            return out
        out["techniques"] = [a.as_dict() for a in self.applied]
        if self.ctx is not None and self.ctx.agreement is not None:
            out["agreement"] = self.ctx.agreement
        if self.ctx is not None and self.ctx.early_exit is not None:
            out["early_exit"] = self.ctx.early_exit.stats()
        return out


def _technique_context(
    spec: RunSpec,
    loaded: LoadedModel,
    data: PreparedData,
    dev: Any,
    emit: Emitter,
    workdir: Path,
    cancel: CancelToken,
    given: RunSpec,
) -> TechniqueContext:
    tctx = TechniqueContext(
        loaded, spec, dev, data.task, data.pad_id, data.train_ids[:2048], workdir, emit.log
    )
    tctx.data, tctx.emit, tctx.cancel = data, emit, cancel
    tctx.spec_given = given
    # Labelled slices for techniques that calibrate or train (never the eval split for that);
    # eval data only for curves reported beside the measured result.
    labels = data.train_labels
    tctx.calib_labels = labels[:2048] if labels is not None else None
    tctx.eval_ids, tctx.eval_labels = data.eval_ids, data.eval_labels
    return tctx


def _agreement(ref: Any, new: Any) -> dict[str, Any]:
    """How far the optimized model's predictions moved from the unmodified model's."""
    import numpy as np

    return {
        "items": int(len(ref)),
        "prediction_agreement": float((ref.argmax(-1) == new.argmax(-1)).mean()),
        "max_abs_logit_diff": float(np.abs(ref - new.astype(np.float64)).max()),
    }


def _apply_techniques(tctx: TechniqueContext) -> SessionTechniques:
    """Apply in the fixed order; for classifiers that run inference, measure how far the
    optimized model's predictions move from the unmodified model's (agreement, max logit
    difference) on up to 256 eval items. Quality itself comes from the measured run."""
    from wattlab.core.techniques.compose import resolve

    spec, loaded, dev, emit = tctx.spec, tctx.loaded, tctx.dev, tctx.emit
    data = tctx.data
    assert data is not None, "the session's context always carries its data"
    chosen = resolve(spec.techniques, target_for(spec, data.task, dev, loaded))
    ref = None
    if spec.mode == "infer" and data.classify:
        ref = _reference_logits(loaded, data.eval_ids, data.pad_id, dev)
    applied = []
    for tech, params in chosen:
        emit.log(f"applying {tech.name} {params}")
        app = implementation(tech.name).apply(tctx, params)
        app.warnings = [w for w in app.warnings if w]
        for w in app.warnings:
            emit.log(f"{tech.name}: {w}")
        applied.append(app)
    if ref is not None:
        new = _reference_logits(loaded, data.eval_ids, data.pad_id, dev, tctx.autocast)
        tctx.agreement = _agreement(ref, new)
    return SessionTechniques(chosen, tctx, applied)


def run_session(spec: RunSpec, emit: Emitter, cancel: CancelToken) -> dict[str, Any]:
    """One session; the techniques' work folder (ONNX copies of the model, hundreds of MB for
    a large one) lives exactly as long as the session, whatever way it ends, and the folders
    of workers that were killed are swept first."""
    with owned_tempdir(TECH_PREFIX) as workdir:
        return _run_session(spec, emit, cancel, workdir)


def _start_device(spec: RunSpec, emit: Emitter) -> Any:
    """The session's device, announced (the parent counts this GPU, and only it), and every
    random generator seeded before any model is built (new heads and the demo init too)."""
    from wattlab.core.worker.train import seed_everything

    dev = devmod.resolve(spec.device)
    emit.emit("device", **devmod.describe(dev))
    seed_everything(spec.seed)
    return dev


def _load_inputs(spec: RunSpec, dev: Any, emit: Emitter) -> tuple[LoadedModel, PreparedData]:
    """The model on its device and the tokenised data."""
    loaded, raw, task = load_model_and_data(spec, dev, emit)
    for note in loaded.notes:
        emit.log(note)
    data = prepare_data(spec, loaded, raw, task)
    if loaded.model is not None:
        loaded.model.to(dev)
    return loaded, data


def _result_header(
    spec: RunSpec, loaded: LoadedModel, model_before: dict[str, Any], data: PreparedData, dev: Any
) -> dict[str, Any]:
    """What every session's result starts with: mode, task, model (before and after the
    techniques), dataset and device."""
    return {
        "mode": spec.mode,
        "task": data.task,
        "model": loaded.info(),
        "model_before": model_before,
        "dataset": {
            "source": data.source,
            "train_items": len(data.train_ids),
            "eval_items": len(data.eval_ids),
            "label_names": data.label_names,
        },
        "device": devmod.describe(dev),
    }


def fairness_of(
    data: PreparedData, predictions: Sequence[int] | None, items: Sequence[int] | None = None
) -> dict[str, Any] | None:
    """The fairness figures (models/fairness.py) over the eval items scored, ``items`` being
    their eval indices in the predictions' order (all, in order, when None); None when no
    sensitive column was asked for or the classifier produced no usable prediction. Called
    after the measured phase: fairlearn's import and the figures are not charged to it."""
    if data.eval_groups is None or data.eval_labels is None or not predictions:
        return None
    from wattlab.core.models.fairness import fairness_report

    idx = list(items) if items is not None else list(range(len(predictions)))
    return fairness_report(
        [data.eval_labels[i] for i in idx],
        list(predictions),
        [data.eval_groups[i] for i in idx],
        data.sensitive_column or "",
        data.num_labels,
        data.label_names,
    )


def _train_lottery(
    loaded: LoadedModel,
    data: PreparedData,
    settings: TrainSettings,
    techs: SessionTechniques,
    emit: Emitter,
    cancel: CancelToken,
) -> tuple[TrainOutcome, list[dict[str, Any]]]:
    """Lottery-ticket rounds instead of one training; the pruning entry gets the final
    sparsity. The rounds train without loss scaling (as they always have)."""
    from wattlab.core.worker.lottery import lottery

    params = techs.lottery
    assert params is not None, "called only when pruning asked for lottery rounds"
    unscaled = replace(settings, grad_scaler=False)
    out, rounds = lottery(loaded.model, params, data, unscaled, emit, cancel)
    pruning = next(a for a in techs.applied if a.name == "pruning")
    pruning.details.update(sparsity_report_of(loaded.model))
    return out, rounds


def _train_session(
    spec: RunSpec,
    loaded: LoadedModel,
    data: PreparedData,
    techs: SessionTechniques,
    dev: Any,
    emit: Emitter,
    cancel: CancelToken,
) -> dict[str, Any]:
    """Train (or run the lottery rounds), end the measured phase, finalize the techniques;
    returns the result's training fields."""
    from wattlab.core.worker.train import train

    settings = techs.train_settings(spec, dev)
    part: dict[str, Any] = {}
    if techs.lottery:
        out, part["lottery_rounds"] = _train_lottery(loaded, data, settings, techs, emit, cancel)
    else:
        out = train(loaded.model, data, settings, emit, cancel)
    devmod.sync(dev)
    emit.phase(END_PHASE)  # the measured work (train + eval) ends here
    if spec.lifecycle:
        emit.phase(CONVERT_PHASE)  # what the techniques do to deploy (e.g. QAT -> int8)
    techs.finalize()
    part.update(
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
    if out.diverged:
        part["diverged"] = out.diverged
    if spec.model == "demo" and not out.cancelled and not out.diverged:
        part["saved_to"] = _save_demo(loaded, spec, emit)
    part["skipped_steps"] = out.skipped_steps
    part["model"] = loaded.info()  # after finalize (e.g. pruning made permanent)
    fairness = fairness_of(data, out.eval_predictions)
    if fairness is not None:
        part["fairness"] = fairness
    return part


def _infer_session(
    spec: RunSpec,
    loaded: LoadedModel,
    data: PreparedData,
    techs: SessionTechniques,
    dev: Any,
    emit: Emitter,
    cancel: CancelToken,
) -> dict[str, Any]:
    """Run the measured inference; returns the result's inference fields."""
    import numpy as np

    from wattlab.core.worker.infer import Forward, run_inference

    fwd = Forward(loaded, dev, techs.autocast)
    out = run_inference(fwd, data, InferSettings.from_spec(spec), emit, cancel)
    part = out.summary()
    part["cancelled"] = out.cancelled
    if out.logits is not None:
        part["predictions"] = out.logits.argmax(-1).tolist()
        if np.isfinite(out.logits).all():  # argmax of NaN is class 0: no figure, not a wrong one
            fairness = fairness_of(data, part["predictions"], out.scored_items)
            if fairness is not None:
                part["fairness"] = fairness
    return part


def _serve_trained(
    spec: RunSpec,
    loaded: LoadedModel,
    data: PreparedData,
    techs: SessionTechniques,
    dev: Any,
    emit: Emitter,
    cancel: CancelToken,
) -> dict[str, Any]:
    """A lifecycle run's serving stage: the trained (and converted) model runs inference over
    the eval split exactly as an inference session would (warm-up, then the measured ``infer``
    phase, repeated to the minimum duration), with its own peak memory. Its accuracy is the
    deployed model's, after conversion."""
    if loaded.model is not None:
        loaded.model.eval()  # dropout off: serving is inference
    devmod.reset_peak(dev)
    part = _infer_session(spec, loaded, data, techs, dev, emit, cancel)
    part.pop("predictions", None)  # the serving figures are what the lifecycle reports
    peak, how = devmod.peak_memory(dev)
    part["peak_mem_bytes"], part["peak_mem_source"] = peak, how
    part["model"] = loaded.info()
    return part


def _run_session(
    spec: RunSpec, emit: Emitter, cancel: CancelToken, workdir: Path
) -> dict[str, Any]:
    emit.phase("load")
    import torch

    from wattlab.core.techniques.compose import spec_with_overrides

    given, spec = spec, spec_with_overrides(spec)  # knobs given as techniques (batch size, ...)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if spec.mode == "rag":
        from wattlab.core.worker.rag import run_rag_session

        return run_rag_session(spec, emit, cancel)
    dev = _start_device(spec, emit)
    loaded, data = _load_inputs(spec, dev, emit)
    model_before = loaded.info()
    techs = SessionTechniques()
    if spec.techniques:
        emit.phase("prepare")
        tctx = _technique_context(spec, loaded, data, dev, emit, workdir, cancel, given)
        techs = _apply_techniques(tctx)
        data = techs.data_or(data)
    devmod.reset_peak(dev)
    result = _result_header(spec, loaded, model_before, data, dev)
    run = _train_session if spec.mode == "train" else _infer_session
    result.update(run(spec, loaded, data, techs, dev, emit, cancel))
    result.update(techs.report())
    peak, how = devmod.peak_memory(dev)
    result["peak_mem_bytes"] = peak
    result["peak_mem_source"] = how
    if spec.lifecycle and not result.get("cancelled") and not result.get("diverged"):
        result["serve"] = _serve_trained(spec, loaded, data, techs, dev, emit, cancel)
    if spec.save_model is not None:  # after the measured phase and its peak memory
        from wattlab.core.worker.save_model import save_trained

        chosen = [(tech.name, params) for tech, params in techs.chosen]
        result["saved_model"] = save_trained(spec, loaded, chosen, result, emit, cancel)
    return result
