"""The typed objects a session hands its loops: the tokenised data, built once by the runner,
and the settings of the training and inference loops, read once from the spec (plus what the
techniques set, such as autocast). Training, lottery rounds, inference and technique
preparation all take these instead of the same dozen loose arguments."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattlab.core.spec import RunSpec

# A factory of context managers that every forward pass runs under (torch.autocast), set by the
# mixed-precision technique; None runs at the model's own precision.
AutocastFactory = Callable[[], AbstractContextManager[Any]]
# The training loss of one batch from (model output, input ids, attention mask, labels), set by a
# technique that trains on another objective (distillation's soft targets); labels are the class
# ids of a classifier or the masked token ids of a causal LM. None: the model's own loss.
LossHook = Callable[[Any, Any, Any, Any], Any]
# Called after every optimizer step with (optimizer steps done, optimizer steps planned), set by
# a technique that changes the model as training goes (sparse training's pruning schedule).
UpdateHook = Callable[[int, int], None]


@dataclass(frozen=True)
class PreparedData:
    """A session's tokenised splits: what every loop and technique reads, never changes.

    For a classifier the labels are aligned with the model's outputs (by label name) and
    ``num_labels`` is the dataset's class count; a causal LM has no labels and ``num_labels`` 0.
    """

    task: str  # "classify" | "causal-lm"
    train_ids: list[list[int]]
    eval_ids: list[list[int]]
    train_labels: list[int] | None  # None for a causal LM
    eval_labels: list[int] | None
    pad_id: int
    num_labels: int
    source: str  # where the data came from, as the result reports it
    label_names: list[str] | None = None
    # The sensitive attribute per eval item (--sensitive-column), aligned with eval_labels;
    # None when none was asked for. Only the fairness figures read it.
    eval_groups: list[str] | None = None
    sensitive_column: str | None = None

    @property
    def classify(self) -> bool:
        return self.task == "classify"


@dataclass(frozen=True)
class TrainSettings:
    """How the training loop runs: the spec's recipe, the device, and the precision hooks."""

    dev: Any  # torch.device
    epochs: int
    batch_size: int
    learning_rate: float
    grad_accum: int  # batches per optimizer step
    max_steps: int | None  # optimizer steps; None: as many as the epochs give
    patience: int | None  # epochs without eval-loss improvement before stopping; None: never
    seed: int
    autocast: AutocastFactory | None = None
    grad_scaler: bool = False  # fp16 training: scale the loss so small gradients survive
    loss_hook: LossHook | None = None
    after_update: tuple[UpdateHook, ...] = ()
    # The phases the loop marks for its training and evaluation passes: ("train", "eval") when
    # the training is the measured work; a technique that trains while it prepares (distilling a
    # student before measuring its inference) marks both as "prepare", so that energy is
    # reported as preparation, never as the session's measured work.
    phase_names: tuple[str, str] = ("train", "eval")

    @classmethod
    def from_spec(
        cls,
        spec: RunSpec,
        dev: Any,
        autocast: AutocastFactory | None = None,
        grad_scaler: bool = False,
        loss_hook: LossHook | None = None,
        after_update: tuple[UpdateHook, ...] = (),
    ) -> TrainSettings:
        return cls(
            dev=dev,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            grad_accum=spec.grad_accum,
            max_steps=spec.max_steps,
            patience=spec.patience,
            seed=spec.seed,
            autocast=autocast,
            grad_scaler=grad_scaler,
            loss_hook=loss_hook,
            after_update=after_update,
        )


@dataclass(frozen=True)
class InferSettings:
    """How the inference loop runs: batches, warm-up, and how long the measured phase must last
    (the device and precision live in the ``Forward`` that runs each batch)."""

    batch_size: int
    warmup_batches: int  # run before the measured phase, never counted
    infer_batches: int | None  # None: one pass over the eval split
    min_measure_s: float  # repeat the batches until the measured phase lasts this long (0: no)
    sensor_update_s: float  # the slowest sensor's update period (filled in by the parent)

    @classmethod
    def from_spec(cls, spec: RunSpec) -> InferSettings:
        return cls(
            batch_size=spec.batch_size,
            warmup_batches=spec.warmup_batches,
            infer_batches=spec.infer_batches,
            min_measure_s=spec.min_measure_s,
            sensor_update_s=spec.sensor_update_s,
        )
