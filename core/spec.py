"""RunSpec: everything needed to repeat a session exactly, validated before anything starts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from wattlab.core.errors import SpecError

MODES = ("train", "infer", "rag")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunSpec:
    model: str = "demo"  # "demo", a Hugging Face folder, or a .onnx file
    dataset: str = "demo"  # "demo" or a .csv/.tsv/.jsonl/.txt file
    mode: str = "infer"
    task: str | None = None  # None: detect from the model
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-4
    grad_accum: int = 1
    patience: int | None = None
    seq_len: int = 64
    device: str = "auto"
    seed: int = 0
    eval_fraction: float = 0.2
    warmup_batches: int = 2
    infer_batches: int | None = None  # None: the whole eval set
    text_column: str | None = None
    label_column: str | None = None
    threads: int | None = None
    techniques: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    label: str | None = None
    rag: dict[str, Any] | None = (
        None  # mode "rag": RagOptions (model = generator, dataset = corpus)
    )
    # Inference repeats its batches until the measured phase lasts this long (0: one pass),
    # on a GPU or when one pass would span fewer than ten updates of the slowest sensor, whose
    # period the measuring parent fills in.
    min_measure_s: float = 0.0
    sensor_update_s: float = 0.0

    def validate(self) -> RunSpec:
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise SpecError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in ("batch_size", "epochs", "grad_accum", "seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise SpecError(f"{name.replace('_', ' ')} must be a positive integer, got {v}")
        for name in ("max_steps", "infer_batches", "patience", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise SpecError(f"{name.replace('_', ' ')} must be a positive integer, got {v}")
        if self.warmup_batches < 0:
            raise SpecError(f"warmup batches must be 0 or more, got {self.warmup_batches}")
        if not 0 < self.eval_fraction < 1:
            raise SpecError(f"eval fraction must be between 0 and 1, got {self.eval_fraction}")
        if not self.learning_rate > 0:
            raise SpecError(f"learning rate must be positive, got {self.learning_rate}")
        for name in ("min_measure_s", "sensor_update_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 3600:
                raise SpecError(f"{name.replace('_', ' ')} must be between 0 and 3600, got {v}")
        if self.task not in (None, "classify", "causal-lm"):
            raise SpecError(f"task must be classify or causal-lm, got {self.task!r}")
        if self.mode == "rag":
            from wattlab.core.rag.options import RagOptions

            RagOptions.from_dict(self.rag)
            if self.model.lower().endswith(".onnx"):
                raise SpecError(
                    "the RAG generator must be a Hugging Face causal LM folder or demo, not ONNX"
                )
        if self.model.endswith(".onnx") and self.mode == "train":
            raise SpecError(
                "ONNX models run inference only; use --mode infer or a Hugging Face folder to train"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["techniques"] = list(self.techniques)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        d = dict(d)
        d["techniques"] = tuple(d.get("techniques") or ())
        return cls(**d)

    def save(self, path: Path) -> None:
        from wattlab.core.fileio import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SpecError(f"cannot read spec {path}: {exc}") from None
