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


# The recipe fields the demo trains with; a user's --epochs etc. overrides them one by one.
RECIPE_FIELDS = ("epochs", "batch_size", "learning_rate", "seq_len", "seed")


def spec_defaults(model: str = "demo") -> dict[str, Any]:
    """The defaults a new spec gets, the same for the CLI and the GUI: the demo's own training
    recipe for the demo (so its cached weights are reused), RunSpec's defaults otherwise."""
    base = {name: getattr(RunSpec, name) for name in RECIPE_FIELDS}
    if model == "demo":
        from wattlab.core.models.demo_cache import demo_definition

        recipe = demo_definition()["recipe"]
        base.update({k: recipe[k] for k in RECIPE_FIELDS if k in recipe})
    return base


def build_spec(**values: Any) -> RunSpec:
    """The one spec factory of the CLI and the GUI: fields given as None take
    ``spec_defaults(model)``; everything else is RunSpec's own default. Not validated here."""
    model = values.get("model") or "demo"
    defaults = spec_defaults(model)
    given = {k: v for k, v in values.items() if v is not None}
    for name, value in defaults.items():
        given.setdefault(name, value)
    if "techniques" in given:
        given["techniques"] = tuple(given["techniques"])
    return RunSpec(**given)


def demo_recipe_matches(spec: RunSpec) -> bool:
    """Whether ``spec`` trains the demo exactly as its recipe says (then its weights are cached)."""
    defaults = spec_defaults("demo")
    return all(getattr(spec, k) == defaults[k] for k in RECIPE_FIELDS)


def demo_cache_folder(spec: RunSpec) -> Path:
    from wattlab.core.models.demo_cache import cache_dir, cache_key, file_digest

    digest = None if spec.dataset == "demo" else file_digest(Path(spec.dataset))
    return cache_dir(cache_key(dataset=spec.dataset, dataset_digest=digest))


def demo_training_spec(spec: RunSpec) -> RunSpec | None:
    """The training run the demo needs before ``spec`` can run (its weights are not cached
    yet), or None. The demo trains itself once with its recipe, as a stored run of its own."""
    import dataclasses

    from wattlab.core.models.demo_cache import is_cached

    if spec.model != "demo" or spec.mode != "infer" or is_cached(demo_cache_folder(spec)):
        return None
    return dataclasses.replace(
        spec,
        mode="train",
        techniques=(),
        label="demo: training the cached weights",
        **spec_defaults("demo"),
    )
