"""The worker half of the training knobs (grad-accum, early-stopping, batch-size, seq-len,
threads). Their work is done before anything loads: the runner applies each knob's
``spec_overrides`` to the spec (core/techniques/compose.spec_with_overrides), so the session's
loops already run with the new value. ``apply`` only reports what was set, and from what.
Declared in core/techniques/knobs.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.knobs import BatchSize, EarlyStopping, GradAccum, Knob, SeqLen, Threads
from wattlab.core.worker.techniques.registry import Implementation, implements


def given_value(ctx: Any, spec_field: str) -> Any:
    """The field's value in the spec as the user gave it, before the techniques' overrides,
    when the session kept that spec (``spec_given``); None when it is not known here."""
    given = getattr(ctx, "spec_given", None)
    return getattr(given, spec_field, None) if given is not None else None


class KnobImpl(Implementation):
    """Reports the knob's value as the session runs with it (``ctx.spec`` has the override)."""

    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        assert isinstance(self, Knob), "every knob implementation is also its declaration"
        spec_field = self.spec_field
        value = getattr(ctx.spec, spec_field)
        before = given_value(ctx, spec_field)
        text = (
            f"{spec_field} {before} -> {value}" if before is not None else f"{spec_field} = {value}"
        )
        warnings = [w for w in (self.note(ctx, value),) if w]
        return Applied(
            self.name,
            params,
            text,
            {"field": spec_field, "value": value, "before": before},
            warnings,
        )

    def note(self, ctx: Any, value: Any) -> str | None:
        """What the user should know about this value in this session (None: nothing)."""
        return None


@implements
class GradAccumImpl(KnobImpl, GradAccum):
    def note(self, ctx: Any, value: Any) -> str | None:
        if ctx.spec.max_steps:
            return (
                f"max steps counts optimizer steps: each of the {ctx.spec.max_steps} now "
                f"takes {value} batches"
            )
        return None


@implements
class EarlyStoppingImpl(KnobImpl, EarlyStopping):
    def note(self, ctx: Any, value: Any) -> str | None:
        if ctx.spec.epochs <= value:
            return (
                f"with {ctx.spec.epochs} epoch(s) and patience {value} the training "
                "cannot stop early"
            )
        return None


@implements
class BatchSizeImpl(KnobImpl, BatchSize):
    pass


@implements
class SeqLenImpl(KnobImpl, SeqLen):
    pass


@implements
class ThreadsImpl(KnobImpl, Threads):
    def note(self, ctx: Any, value: Any) -> str | None:
        import torch

        running = torch.get_num_threads()
        if running != value:  # the runner sets it from the spec before loading
            return f"torch runs {running} threads, not {value}"
        return self.warning(Target(ctx.spec.mode, ctx.dev.type, ctx.loaded.kind), {})
