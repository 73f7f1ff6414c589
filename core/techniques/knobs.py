"""Training knobs as techniques: each sets one RunSpec field, so a comparison can measure it.

``grad-accum:steps=4``, ``early-stopping:patience=1``, ``batch-size:size=64``,
``seq-len:tokens=32`` and ``threads:n=1`` set ``grad_accum``, ``patience``, ``batch_size``,
``seq_len`` and ``threads`` through ``spec_overrides``: the worker applies them before the model
and data load (core/techniques/compose.spec_with_overrides), so the optimized side of
``wattlab compare --optimized "grad-accum:steps=4"`` runs exactly as if the flag had been given,
and the baseline keeps the spec's own value. The ranges are core/spec.RANGES, the same as the
flags'. Gradient accumulation and early stopping exist only in training; the others apply to
training and inference alike.
"""

from __future__ import annotations

from typing import Any, ClassVar

from wattlab.core.spec import RANGES
from wattlab.core.techniques.base import Param, Target, Technique, register


def _ranged(name: str, spec_field: str, default: int, help_text: str) -> Param:
    r = RANGES[spec_field]
    return Param(name, int, default, help_text, min=r.lo, max=r.hi)


class Knob(Technique):
    """One RunSpec field set from one parameter; ``train_only`` knobs refuse other modes."""

    spec_field: ClassVar[str]  # the RunSpec field set
    train_only: ClassVar[str | None] = None  # why it needs training mode, or None

    @property
    def param_name(self) -> str:
        return self.params[0].name

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if self.train_only and t.mode != "train":
            return False, f"{self.train_only}; choose training mode"
        return True, None

    def spec_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        return {self.spec_field: params[self.param_name]}


@register
class GradAccum(Knob):
    name = "grad-accum"
    label = "Gradient accumulation"
    order = 1
    summary = "Accumulate gradients over several batches per optimizer step"
    spec_field = "grad_accum"
    train_only = (
        "gradient accumulation groups training batches per optimizer step; inference takes none"
    )
    params = (_ranged("steps", "grad_accum", 4, "batches per optimizer step"),)


@register
class EarlyStopping(Knob):
    name = "early-stopping"
    label = "Early stopping"
    order = 1
    summary = "Stop training when the eval loss stops improving"
    spec_field = "patience"
    train_only = "early stopping ends a training on its eval loss; inference does not train"
    params = (
        _ranged("patience", "patience", 1, "epochs without eval-loss improvement before stopping"),
    )


@register
class BatchSize(Knob):
    name = "batch-size"
    label = "Batch size"
    order = 1
    summary = "Run with another batch size"
    spec_field = "batch_size"
    params = (_ranged("size", "batch_size", 64, "items per batch"),)


@register
class SeqLen(Knob):
    name = "seq-len"
    label = "Sequence length"
    order = 1
    summary = "Truncate (classifier) or block (causal LM) the text to another length in tokens"
    spec_field = "seq_len"
    params = (_ranged("tokens", "seq_len", 32, "tokens per item"),)


@register
class Threads(Knob):
    name = "threads"
    label = "CPU threads"
    order = 1
    summary = "Run torch with another number of CPU threads"
    spec_field = "threads"
    params = (_ranged("n", "threads", 1, "torch intra-op threads"),)

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if t.device == "cuda":
            return "on a GPU the CPU threads mostly affect data preparation, not the model's work"
        return None
