"""What techniques get to work on inside the worker, and what they hand back to the session.

Every field is named and typed: a technique that needs labels or sets a hook says so here, and
the session reads the same fields (no free-form side channel)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattlab.core.worker.prepared import AutocastFactory


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
