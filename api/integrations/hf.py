"""A Hugging Face ``TrainerCallback`` that measures a ``Trainer.train()`` with WattLab.

    from wattlab.integrations.hf import WattLabCallback

    trainer = Trainer(model=..., args=..., train_dataset=...)
    WattLabCallback.install(trainer, label="finetune", out="reports/ft")
    trainer.train()

Training is one tracked block (``wattlab.track``, a run of kind ``track`` in the run store, or
markers to ``wattlab profile`` when the script runs under it): each epoch is a phase
("epoch 1", ...), and what the Trainer does at an epoch's end (evaluation, checkpoints) is the
phase "epoch end". Every optimizer step counts ``per_device_train_batch_size x
gradient_accumulation_steps x world_size`` items (the last batch of an epoch may hold fewer:
the count is an upper bound there) and, when the Trainer counts them
(``include_num_input_tokens_seen``), the tokens seen. Each log gets ``energy_j`` (joules so far)
and ``energy_per_item_j``, so they reach TensorBoard, W&B and ``trainer_state.json``.

``install`` puts the callback first: the Trainer calls callbacks in order with the same logs
dict, and reporting callbacks (TensorBoard, W&B) come before callbacks passed to
``Trainer(callbacks=[...])``; passed that way, the energy still reaches the printed logs and
``state.log_history``, but not the reporters.

In a multi-process (DDP) run only the main process measures (its own process and GPU);
``wattlab profile -- torchrun ...`` measures every process.

This module imports transformers (only those who use it import it).
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from transformers import TrainerCallback

from wattlab.core.run.track import Track

EPOCH_END_PHASE = "epoch end"


class WattLabCallback(TrainerCallback):
    """Measures ``trainer.train()``; see the module docstring. The arguments are
    ``wattlab.track``'s; the label defaults to "hf train"."""

    def __init__(
        self,
        label: str | None = None,
        out: str | os.PathLike[str] | None = None,
        *,
        interval_s: float | None = None,
        idle_s: float | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._make = lambda: Track(
            label or "hf train", out, interval_s=interval_s, idle_s=idle_s, data_dir=data_dir
        )
        self.track: Track | None = None
        self._items_per_step: int | None = None
        self._tokens_seen: int | None = None

    @classmethod
    def install(cls, trainer: Any, **kwargs: Any) -> WattLabCallback:
        """Add a callback to ``trainer`` ahead of every other one, so the reporters see the
        energy it adds to each log; returns it (its ``track.result`` after training)."""
        cb = cls(**kwargs)
        trainer.callback_handler.callbacks.insert(0, cb)
        return cb

    @property
    def result(self) -> dict[str, Any] | None:
        """The stored run's result once training ended (None under ``wattlab profile``)."""
        return self.track.result if self.track is not None else None

    # -- the Trainer's events --------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self._open():
            return
        self.track = self._make()
        self.track.__enter__()  # the idle baseline is taken here, before the first step
        atexit.register(self._abandoned)
        self._items_per_step = _items_per_step(args)
        self._tokens_seen = _tokens_seen(args, state)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._open():
            assert self.track is not None
            # state.epoch is the epochs done so far (a float: 1.9999 after a rounding step)
            self.track.phase(f"epoch {round(state.epoch or 0) + 1}")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._open():
            assert self.track is not None
            self.track.phase(EPOCH_END_PHASE)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._open():
            return
        assert self.track is not None
        tokens = None
        seen = _tokens_seen(args, state)
        if seen is not None and self._tokens_seen is not None:
            tokens, self._tokens_seen = max(0, seen - self._tokens_seen), seen
        self.track.step(items=self._items_per_step, tokens=tokens)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if not self._open() or logs is None:
            return
        assert self.track is not None
        so_far = self.track.total()
        added = {"energy_j": so_far.energy_j, "energy_per_item_j": so_far.energy_per_item_j}
        added = {k: v for k, v in added.items() if v is not None}  # unknown: not logged as 0
        logs.update(added)
        history = getattr(state, "log_history", None)
        if history and history[-1].get("step") == state.global_step:
            history[-1].update(added)  # the Trainer copied the logs there before this call

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._open():
            assert self.track is not None
            self.track.__exit__(None, None, None)
            atexit.unregister(self._abandoned)

    # -- helpers ---------------------------------------------------------------------------------
    def _open(self) -> bool:
        return self.track is not None and self.track.is_open

    def _abandoned(self) -> None:
        """Training raised (on_train_end never came) and the process is exiting: end the run
        as failed rather than leave it for the store to call "interrupted"."""
        if self._open():
            assert self.track is not None
            err = RuntimeError("training stopped before on_train_end (an exception in training?)")
            self.track.__exit__(RuntimeError, err, None)


def _items_per_step(args: Any) -> int | None:
    """Items this process trains per optimizer step. Only the main process measures, and its
    energy covers its own processes and GPUs, so other ranks' items are not counted (that made
    energy per item world_size times too low under DDP)."""
    try:
        n = args.per_device_train_batch_size * args.gradient_accumulation_steps
    except (AttributeError, TypeError):
        return None
    return int(n) if n and n > 0 else None


def _tokens_seen(args: Any, state: Any) -> int | None:
    """The Trainer's own token count, when it keeps one."""
    mode = getattr(args, "include_num_input_tokens_seen", "no")
    if mode in ("no", False, None):
        return None
    seen = getattr(state, "num_input_tokens_seen", None)
    return int(seen) if isinstance(seen, int) else None


__all__ = ["WattLabCallback", "EPOCH_END_PHASE"]
