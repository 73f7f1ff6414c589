"""What techniques get to work on inside the worker, and what they hand back to the session.

Every field is named and typed: a technique that needs labels or sets a hook says so here, and
the session reads the same fields (no free-form side channel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlab.core.worker.prepared import AutocastFactory, LossHook, PreparedData, UpdateHook


@dataclass
class TechniqueContext:
    loaded: Any  # LoadedModel; a technique may swap its model or turn it into an ONNX session
    spec: Any  # RunSpec
    dev: Any  # torch.device
    task: str
    pad_id: int
    calib_ids: list[list[int]]  # a slice of the training split, never the eval split
    workdir: Path
    log: Callable[[str], None]
    # Labels of calib_ids (techniques that calibrate or train on them), and the eval split, used
    # only for curves reported beside the measured result (early exit's accuracy vs threshold).
    calib_labels: Any = None
    eval_ids: list[list[int]] | None = None
    eval_labels: Any = None
    # Hooks a technique sets for the session:
    autocast: AutocastFactory | None = None  # context-manager factory for forward passes
    grad_scaler: bool = False  # fp16 training needs loss scaling
    lottery: dict[str, Any] | None = None  # pruning method=lottery: run rounds, not one training
    early_exit: Any = None  # EarlyExitModel: its exit statistics go into the result
    # Set by the session after applying: how far predictions moved from the unmodified model.
    agreement: dict[str, Any] | None = None
    # The session's tokenised data. A technique that trains on other data (dataset reduction,
    # augmentation) replaces it with a changed copy; the session trains and evaluates on this.
    data: PreparedData | None = None
    loss_hook: LossHook | None = None  # training objective other than the model's own loss
    after_update: list[UpdateHook] = field(default_factory=list)  # after each optimizer step
    spec_given: Any = None  # the RunSpec before the techniques' spec_overrides (knobs say "1 -> 4")
    emit: Any = None  # the session's Emitter, for a technique that trains while it prepares
    cancel: Any = None  # the session's CancelToken, likewise
