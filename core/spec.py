"""RunSpec: everything needed to repeat a session exactly, validated before anything starts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from wattlab.core.errors import SpecError

MODES = ("train", "infer", "rag")
DEVICES = ("auto", "cpu", "cuda")
# The sampler refuses a shorter interval (measure.sampling.MIN_INTERVAL_S, kept equal by a test);
# repeated here so this module stays free of numpy for the CLI's start-up.
MIN_SAMPLING_INTERVAL_S = 0.01


@dataclass(frozen=True)
class NumberRange:
    """The values a number the user gives may take: finite, of the right kind, in [lo, hi]
    (either end open). One table of these (``RANGES``) is what the CLI flags, the settings file,
    RunSpec and MeasureSettings are all checked against, so a value refused in one is refused
    in all, with the same sentence."""

    what: str  # how the message names it, e.g. "batch size" or "sampling interval (--interval)"
    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""  # appended to the bounds, e.g. " s"

    def text(self) -> str:
        """The allowed values in words, e.g. "a positive integer up to 65536"."""
        if self.integer:
            if self.lo == 1:
                return f"a positive integer up to {int(self.hi)}"
            return f"an integer from {int(self.lo)} to {int(self.hi)}"
        lo, hi = f"{self.lo:g}", f"{self.hi:g}{self.unit}"
        if self.lo_open and self.hi_open:
            return f"between {lo} and {hi}, both excluded"
        if self.lo_open:
            return f"above {lo} and at most {hi}"
        if self.hi_open:
            return f"at least {lo} and below {hi}"
        return f"between {lo} and {hi}"

    def contains(self, value: object) -> bool:
        """Whether ``value`` is allowed (a bool is never a number here; nan and inf never are)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def problem(self, value: object) -> str | None:
        """The one-line reason ``value`` is refused, or None when it is allowed."""
        if self.contains(value):
            return None
        return f"{self.what} must be {self.text()}, got {value}"

    def check(self, value: object) -> None:
        """Raise SpecError with ``problem``'s sentence when ``value`` is refused."""
        msg = self.problem(value)
        if msg is not None:
            raise SpecError(msg)


_N = NumberRange
# Every number a user can give, by the field name it has in RunSpec, MeasureSettings, Settings
# or the comparison; the CLI maps its flags onto these (cli/flags.py FLAG_RANGES).
RANGES: dict[str, NumberRange] = {
    # how a run is measured (MeasureSettings, Settings, comparisons)
    "interval_s": _N("sampling interval (--interval)", MIN_SAMPLING_INTERVAL_S, 60.0, unit=" s"),
    "idle_s": _N("idle baseline (--idle)", 0.0, 600.0, unit=" s"),
    "settle_max_s": _N("settling wait", 0.0, 600.0, unit=" s"),
    "min_measure_s": _N("minimum measured duration (--min-measure)", 0.0, 3600.0, unit=" s"),
    "sensor_update_s": _N("sensor update period", 0.0, 3600.0, unit=" s"),
    "cooldown_s": _N("cool-down (--cooldown)", 0.0, 3600.0, unit=" s"),
    "margin_pct": _N("equivalence margin (--margin)", 0.0, 50.0, hi_open=True, unit=" %"),
    "repeats": _N("repeats (--repeats)", 1, 1000, integer=True),
    "quality_target": _N("quality target (--quality-target)", 0.0, 1.0),
    # carbon and cost (Settings, CarbonSettings)
    "intensity_g_per_kwh": _N(
        "carbon intensity (--carbon-intensity)", 0.0, 10_000.0, unit=" gCO2e/kWh"
    ),
    "pue": _N("PUE (--pue)", 1.0, 10.0),
    "price_per_kwh": _N("electricity price (--price)", 0.0, 1000.0, unit=" per kWh"),
    # what runs (RunSpec)
    "epochs": _N("epochs", 1, 10_000, integer=True),
    "max_steps": _N("max steps", 1, 10**9, integer=True),
    "batch_size": _N("batch size", 1, 65_536, integer=True),
    "learning_rate": _N("learning rate", 0.0, 10.0, lo_open=True),
    "grad_accum": _N("gradient accumulation steps", 1, 4096, integer=True),
    "patience": _N("patience", 1, 10_000, integer=True),
    "seq_len": _N("sequence length", 1, 1 << 20, integer=True),
    "seed": _N("seed", 0, 2**32 - 1, integer=True),
    "eval_fraction": _N("eval fraction", 0.0, 1.0, lo_open=True, hi_open=True),
    "warmup_batches": _N("warmup batches", 0, 100_000, integer=True),
    "infer_batches": _N("infer batches", 1, 10**9, integer=True),
    "threads": _N("threads", 1, 4096, integer=True),
    "nproc": _N("processes (--nproc)", 1, 1024, integer=True),
    # the RAG workload (RagOptions; relations between them are RagOptions.validate's)
    "queries": _N("queries (--queries)", 1, 10_000_000, integer=True),
    "repeat_rate": _N("repeat rate (--repeat-rate)", 0.0, 1.0),
    "paraphrase_share": _N("paraphrase share (--paraphrase-share)", 0.0, 1.0),
    "negative_rate": _N("negative rate (--negative-rate)", 0.0, 1.0),
    "top_k": _N("top-k (--top-k)", 1, 1000, integer=True),
    "context_chunks": _N("context chunks (--context-chunks)", 1, 1000, integer=True),
    "max_new_tokens": _N("max new tokens (--max-new-tokens)", 1, 100_000, integer=True),
    "chunk_words": _N("chunk words (--chunk-words)", 1, 100_000, integer=True),
    "chunk_overlap": _N("chunk overlap (--chunk-overlap)", 0, 100_000, integer=True),
}
# RunSpec fields checked against RANGES; None is allowed for the optional ones.
SPEC_NUMBERS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "grad_accum",
    "seq_len",
    "seed",
    "eval_fraction",
    "warmup_batches",
    "min_measure_s",
    "sensor_update_s",
    "nproc",
)
SPEC_OPTIONAL_NUMBERS = ("max_steps", "infer_batches", "patience", "threads")


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
    # A column of the dataset (e.g. a demographic attribute): the eval items are grouped by it
    # and the result gets per-group accuracy and parity figures (classification only).
    sensitive_column: str | None = None
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
    # Training only: a folder the trained model is saved to as a Hugging Face folder (after the
    # measured phase, never charged to it), so `--model DIR` measures the fine-tuned weights.
    save_model: str | None = None
    # Training only: after training (and the techniques' conversion, e.g. QAT to int8), serve
    # the trained model over the eval split in the same worker, so one run measures the model's
    # lifecycle stage by stage (``compare --lifecycle``): its phases are train/eval, convert,
    # warmup and infer.
    lifecycle: bool = False
    # Training only: ranks of distributed data-parallel training (torchrun, one process each;
    # core/worker/distributed.py); 1 runs the worker as one plain process.
    nproc: int = 1

    def validate(self) -> RunSpec:
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise SpecError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for name in SPEC_NUMBERS:
            RANGES[name].check(getattr(self, name))
        for name in SPEC_OPTIONAL_NUMBERS:
            if getattr(self, name) is not None:
                RANGES[name].check(getattr(self, name))
        if self.task not in (None, "classify", "causal-lm"):
            raise SpecError(f"task must be classify or causal-lm, got {self.task!r}")
        self._validate_sensitive_column()
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
        self._validate_save_model()
        if self.lifecycle and self.mode != "train":
            raise SpecError(
                "--lifecycle trains the model and then serves it: use it with --mode train"
            )
        self._validate_nproc()
        return self

    def _validate_nproc(self) -> None:
        """Ranks share one training (DDP): inference has no gradients to average, and every
        rank would write the same --save-model folder or serve the same lifecycle at once."""
        if self.nproc == 1:
            return
        if self.mode != "train":
            raise SpecError(
                f"--nproc {self.nproc} runs distributed training (DDP): use it with --mode "
                f"train; {self.mode} runs in one process"
            )
        other = "--save-model" if self.save_model is not None else "--lifecycle"
        if self.save_model is not None or self.lifecycle:
            raise SpecError(
                f"{other} is not supported with --nproc {self.nproc} yet: use --nproc 1"
            )

    def _validate_save_model(self) -> None:
        """Only a training run changes the weights, so only it has a model worth keeping; an
        empty folder name would save into the working directory."""
        if self.save_model is None:
            return
        if not isinstance(self.save_model, str) or not self.save_model.strip():
            raise SpecError("--save-model needs a folder name, got an empty one")
        if self.mode != "train":
            what = "inference" if self.mode == "infer" else "a RAG run"
            raise SpecError(
                "--save-model keeps the model a training run produced: use it with --mode "
                f"train ({what} changes no weights)"
            )

    def _validate_sensitive_column(self) -> None:
        """Fairness across groups compares a classifier's predicted labels: refuse an empty
        column name and the modes and tasks that have no labels to compare."""
        col = self.sensitive_column
        if col is None:
            return
        if not col.strip():
            raise SpecError("--sensitive-column needs a column name, got an empty one")
        if self.mode == "rag" or self.task == "causal-lm":
            what = "RAG" if self.mode == "rag" else "a causal language model"
            raise SpecError(
                f"--sensitive-column {col} needs a classification run; {what} has no predicted "
                "labels to compare across groups"
            )

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
    """Whether ``spec`` trains the demo exactly as its recipe says (then its weights are cached):
    the recipe's fields, and nothing that trains it otherwise (a technique, a step budget,
    early stopping, accumulation), or every later inference run would measure that model."""
    defaults = spec_defaults("demo")
    plain = (
        not spec.techniques
        and not spec.lifecycle  # its save would be charged to the convert stage
        and spec.max_steps is None
        and spec.patience is None
        and spec.grad_accum == 1
        and spec.nproc == 1
    )
    return plain and all(getattr(spec, k) == defaults[k] for k in RECIPE_FIELDS)


def demo_cache_folder(spec: RunSpec) -> Path:
    from wattlab.core.models.demo_cache import cache_dir, cache_key, file_digest

    digest = None if spec.dataset == "demo" else file_digest(Path(spec.dataset))
    return cache_dir(cache_key(dataset=spec.dataset, dataset_digest=digest))


def demo_training_spec(spec: RunSpec) -> RunSpec | None:
    """The training run the demo needs before ``spec`` can run (its weights are not cached
    yet), or None. The demo trains itself once with its recipe, as a stored run of its own."""
    import dataclasses

    from wattlab.core.models.demo_cache import is_cached

    # A demo training run that distils needs the trained demo as its teacher.
    distils = spec.mode == "train" and any(t.get("name") == "distillation" for t in spec.techniques)
    if spec.model != "demo" or not (spec.mode == "infer" or distils):
        return None
    if is_cached(demo_cache_folder(spec)):
        return None
    return dataclasses.replace(
        spec,
        mode="train",
        techniques=(),
        label="demo: training the cached weights",
        save_model=None,
        max_steps=None,  # a distilling run's own budget would keep the weights from the cache
        patience=None,
        grad_accum=1,
        nproc=1,
        **spec_defaults("demo"),
    )
