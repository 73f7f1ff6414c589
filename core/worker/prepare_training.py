"""Training a technique does while it prepares, before the session's measured work: distilling a
student or quantization-aware fine-tuning before their inference is measured.

That training is real and costs energy, so it is never hidden: its passes are marked as the
``prepare`` phase (whose energy and time every result reports apart from the measured work), and
its epochs are told in the log instead of as ``epoch`` events, which the parent reads as the
session's own training curve.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wattlab.core.protocol import EPOCH
from wattlab.core.worker.events import Emitter
from wattlab.core.worker.prepared import LossHook, UpdateHook
from wattlab.core.worker.train import TrainOutcome, train

PREPARE_PHASE = "prepare"


class _PrepareEmitter(Emitter):
    """The session's emitter, with each ``epoch`` event told as a log line instead."""

    def __init__(self, inner: Emitter, what: str) -> None:
        super().__init__(inner.stream, inner.step_interval_s)
        self._inner, self._what = inner, what

    def emit(self, event: str, **data: Any) -> None:
        if event == EPOCH:
            figures = ", ".join(
                f"{k} {v:.4g}"
                for k, v in data.items()
                if k in ("train_loss", "eval_loss", "accuracy", "perplexity")
                and isinstance(v, float)
            )
            self._inner.log(f"{self._what}: epoch {data.get('epoch')}: {figures}")
            return
        self._inner.emit(event, **data)


def train_while_preparing(
    ctx: Any,
    model: Any,
    what: str,
    loss_hook: LossHook | None = None,
    after_update: tuple[UpdateHook, ...] = (),
) -> TrainOutcome:
    """Train ``model`` on the session's training split with the spec's recipe (epochs, batch
    size, learning rate, step budget) inside the prepare phase; ``what`` names the training in
    the log (e.g. "distilling the student"). Evaluation runs every epoch as usual, so the log
    shows the accuracy the preparation reached. Returns the outcome (its items and time)."""
    settings = dataclasses.replace(
        _settings(ctx, loss_hook, after_update), phase_names=(PREPARE_PHASE, PREPARE_PHASE)
    )
    ctx.log(f"{what}: training {settings.epochs} epoch(s) before the measured phase")
    out = train(model, ctx.data, settings, _PrepareEmitter(ctx.emit, what), ctx.cancel)
    ctx.emit.phase(PREPARE_PHASE)
    return out


def _settings(ctx: Any, loss_hook: LossHook | None, after_update: tuple[UpdateHook, ...]) -> Any:
    from wattlab.core.worker.prepared import TrainSettings

    return TrainSettings.from_spec(
        ctx.spec, ctx.dev, loss_hook=loss_hook, after_update=after_update
    )
