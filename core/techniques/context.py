"""What techniques get to work on inside the worker, and the hooks they may set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TechniqueContext:
    loaded: Any  # LoadedModel; a technique may swap its model or turn it into an ONNX session
    spec: Any
    dev: Any  # torch.device
    task: str
    pad_id: int
    calib_ids: list[list[int]]  # a slice of the training split, never the eval split
    workdir: Path
    log: Callable[[str], None]
    autocast: Callable[[], Any] | None = None  # context-manager factory for forward passes
    grad_scaler: bool = False  # fp16 training needs loss scaling
    extra: dict[str, Any] = field(default_factory=dict)
