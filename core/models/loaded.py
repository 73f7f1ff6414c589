"""What a session gets back from loading any model source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Task = Literal["classify", "causal-lm"]
TASKS: tuple[str, ...] = ("classify", "causal-lm")


@dataclass
class LoadedModel:
    kind: Literal["hf", "onnx"]
    task: Task
    tokenizer: Any
    source: str
    size_bytes: int
    num_params: int | None
    model: Any = None  # torch.nn.Module for "hf"
    session: Any = None  # onnxruntime.InferenceSession for "onnx"
    onnx_inputs: list[str] = field(default_factory=list)
    label_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None

    def info(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "task": self.task,
            "source": self.source,
            "size_bytes": self.size_bytes,
            "num_params": self.num_params,
            "label_names": self.label_names,
            "notes": self.notes,
        }
