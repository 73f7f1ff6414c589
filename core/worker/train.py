"""Training: AdamW, linear warm-up and decay, gradient accumulation, evaluation every epoch,
early stopping on eval loss. Seeded, so the same spec trains the same model."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattlab.core.models.metrics import classification_metrics
from wattlab.core.worker import device as devmod
from wattlab.core.worker import distributed
from wattlab.core.worker.batching import batches, collate
from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.prepared import PreparedData, TrainSettings


@dataclass
class TrainOutcome:
    epochs: list[dict[str, Any]]
    items: int
    tokens: int
    steps: int
    cancelled: bool
    stopped_early: bool
    train_time_s: float
    skipped_steps: int = 0
    diverged: str | None = None  # why training stopped on a non-finite loss, else None
    # The last evaluation's predicted class per eval item (a classifier whose logits were
    # finite), for the fairness figures computed after the measured phase; else None.
    eval_predictions: list[int] | None = None


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model: Any, data: PreparedData, batch_size: int, dev: Any
) -> tuple[dict[str, Any], list[int] | None]:
    """Eval loss plus accuracy/F1/AUC (classification) or perplexity (causal LM), and a
    classifier's predicted class per eval item (None for an LM or a diverged model): the
    fairness figures need the predictions, and evaluating again would cost a second pass."""
    import torch

    model.eval()
    losses: list[float] = []
    weights: list[int] = []
    logits_all: list[np.ndarray] = []
    ids, labels = data.eval_ids, data.eval_labels
    share = distributed.eval_share(len(ids))  # all of it in one process
    with torch.no_grad():
        for b in batches(len(share), batch_size, share):
            x, m = collate([ids[i] for i in b], data.pad_id)
            xt, mt = torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)
            if data.classify:
                assert labels is not None, "classification data always carries labels"
                y = torch.tensor([labels[i] for i in b], device=dev)
                out = model(input_ids=xt, attention_mask=mt, labels=y)
                logits_all.append(out.logits.float().cpu().numpy())
                losses.append(float(out.loss))
                weights.append(len(b))
            else:
                lab = xt.masked_fill(mt == 0, -100)
                out = model(input_ids=xt, attention_mask=mt, labels=lab)
                losses.append(float(out.loss))
                weights.append(int(m[:, 1:].sum()))
    losses, weights, logits_all = distributed.gather_eval(share, losses, weights, logits_all)
    loss = float(np.average(losses, weights=weights)) if losses else float("nan")
    res: dict[str, Any] = {"eval_loss": loss}
    predictions = None
    if data.classify:
        logits = np.concatenate(logits_all)
        if np.isfinite(logits).all():
            res.update(classification_metrics(logits, np.array(labels), data.num_labels))
            predictions = logits.argmax(-1).tolist()
        else:  # a diverged model: argmax of NaN is class 0, an accuracy that means nothing
            res.update({"accuracy": None, "macro_f1": None})
    else:
        res["perplexity"] = (
            math.exp(loss) if loss < 50 else float("inf") if loss >= 50 else float("nan")
        )
    return res, predictions


@dataclass
class _Counts:
    """What the run has done so far, across epochs: the outcome and the step events report it."""

    items: int = 0
    tokens: int = 0
    updates: int = 0  # optimizer steps taken
    skipped: int = 0  # steps the grad scaler skipped (inf/NaN gradients)
    nonfinite_batch: int | None = None  # first batch whose loss was NaN/inf (no grad scaler)


def divergence(row: dict[str, Any], nonfinite_batch: int | None) -> str | None:
    """Why an epoch shows that training diverged (a NaN/inf training or eval loss), or None.
    A diverged run keeps what it measured; its figures say it diverged."""
    epoch = row.get("epoch")
    if nonfinite_batch is not None:
        return (
            f"diverged at epoch {epoch}: the training loss became non-finite at batch "
            f"{nonfinite_batch}"
        )
    for key in ("train_loss", "eval_loss"):
        value = row.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return f"diverged at epoch {epoch}: the {key.replace('_', ' ')} is {value}"
    return None


class _EarlyStop:
    """Stops after ``patience`` epochs whose eval loss did not improve by more than 1e-4."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best = math.inf
        self.bad = 0

    def should_stop(self, eval_loss: float) -> bool:
        if not self.patience:
            return False
        if eval_loss < self.best - 1e-4:
            self.best, self.bad = eval_loss, 0
            return False
        self.bad += 1
        return self.bad >= self.patience


class _Trainer:
    """One training run: the optimizer and schedule built once, then epochs of training, each
    followed by an evaluation, until the epochs, the step budget, patience or a cancel end it."""

    def __init__(
        self, model: Any, data: PreparedData, s: TrainSettings, emit: Emitter, cancel: CancelToken
    ) -> None:
        import torch

        self.model, self.data, self.s = model, data, s
        self.emit, self.cancel = emit, distributed.agreed(cancel)  # agreed between ranks
        seed_everything(s.seed)
        model.to(s.dev)
        # DistributedDataParallel when torchrun started ranks (each trains on its shard of every
        # epoch, batches of --batch-size split between them); the model itself in one process.
        self.net = distributed.wrap(model, s.dev)
        self.batch_size = distributed.rank_batch_size(s.batch_size)
        self.totals = distributed.Totals()  # every rank's counts, after the last batch
        self.opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01)
        shard = distributed.shard_len(len(data.train_ids))
        self.per_epoch = math.ceil(shard / self.batch_size)  # batches per epoch
        total = math.ceil(self.per_epoch * s.epochs / s.grad_accum)
        self.total_updates = min(total, s.max_steps) if s.max_steps else total
        warm = max(1, self.total_updates // 10)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda k: min(
                (k + 1) / warm,
                max(0.0, (self.total_updates - k) / (self.total_updates - warm or 1)),
            ),
        )
        self.scaler = torch.amp.GradScaler(s.dev.type) if s.grad_scaler else None
        self.autocast = s.autocast or nullcontext
        self.counts = _Counts()
        self.predictions: list[int] | None = None  # the last evaluation's

    def run(self) -> TrainOutcome:
        rng = np.random.default_rng(self.s.seed)
        epochs: list[dict[str, Any]] = []
        stopper = _EarlyStop(self.s.patience)
        stopped_early = False
        t_start = time.perf_counter()
        for epoch in range(1, self.s.epochs + 1):
            row = self._epoch(epoch, rng)
            if row is None:
                break
            epochs.append(row)
            self.emit.emit("epoch", **row)
            diverged = divergence(row, self.counts.nonfinite_batch)
            if diverged is not None:
                self.emit.log(f"training stopped: {diverged}")
                break
            if self.cancel.cancelled or self._step_budget_spent():
                break
            if stopper.should_stop(row["eval_loss"]):
                stopped_early = True
                self.emit.log(
                    f"early stopping after epoch {epoch}: eval loss did not improve "
                    f"for {self.s.patience} epoch(s)"
                )
                break
        c = self.counts
        return TrainOutcome(
            epochs,
            self.totals.items,
            self.totals.tokens,
            c.updates,
            self.cancel.cancelled,
            stopped_early,
            time.perf_counter() - t_start,
            c.skipped,
            divergence(epochs[-1], c.nonfinite_batch) if epochs else None,
            self.predictions,
        )

    def _step_budget_spent(self) -> bool:
        return bool(self.s.max_steps and self.counts.updates >= self.s.max_steps)

    def _epoch(self, epoch: int, rng: np.random.Generator) -> dict[str, Any] | None:
        """Train one epoch and evaluate; None when cancelled before its first batch."""
        train_phase, eval_phase = self.s.phase_names
        self.emit.phase(train_phase)
        t_epoch = time.perf_counter()
        loss_sum, n_batches = self._train_batches(epoch, rng)
        devmod.sync(self.s.dev)
        train_s = time.perf_counter() - t_epoch
        if self.cancel.cancelled and n_batches == 0:
            return None
        self.emit.phase(eval_phase)
        metrics, self.predictions = evaluate(self.model, self.data, self.s.batch_size, self.s.dev)
        return {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, n_batches),
            "train_time_s": train_s,
            "items": self.totals.items,
            "tokens": self.totals.tokens,
            **metrics,
        }

    def _train_batches(self, epoch: int, rng: np.random.Generator) -> tuple[float, int]:
        """One shuffled pass over the training split (this rank's shard of it); returns (sum of
        batch losses, batches) of all ranks."""
        self.model.train()
        n_train = len(self.data.train_ids)
        order = distributed.shard(rng.permutation(n_train))  # the permutation in one process
        loss_sum, n_batches = 0.0, 0
        epoch_totals = distributed.Totals()
        c = self.counts
        for k, b in enumerate(batches(len(order), self.batch_size, order)):
            if self.cancel.cancelled:
                break
            update = (k + 1) % self.s.grad_accum == 0 or k == self.per_epoch - 1
            with distributed.accumulating(self.net, skip_sync=not update):
                loss, m = self._backward(b)
            if update:
                self._update()
            c.items += len(b)
            c.tokens += int(m.sum())
            batch_loss = float(loss.detach())
            loss_sum += batch_loss
            n_batches += 1
            # every rank's counts, and a cancel or non-finite loss of any rank (one all-reduce)
            epoch_totals = self.totals = distributed.sync_step(
                self.cancel, c.items, c.tokens, loss_sum, n_batches, not math.isfinite(batch_loss)
            )
            self.emit.step(
                force=k == self.per_epoch - 1,
                epoch=epoch,
                batch=k + 1,
                batches=self.per_epoch,
                step=c.updates,
                total_steps=self.total_updates,
                items=self.totals.items,
                tokens=self.totals.tokens,
                loss=batch_loss,
            )
            if self._step_budget_spent():
                break
            if self.scaler is None and self.totals.nonfinite:
                # Without a scaler a NaN/inf loss has already poisoned the weights: every
                # later batch is wasted energy. Stop the epoch; its evaluation shows the state.
                c.nonfinite_batch = k + 1
                break
        return epoch_totals.loss_sum, epoch_totals.batches

    def _backward(self, b: np.ndarray) -> tuple[Any, np.ndarray]:
        """Forward and backward one batch (loss divided over the accumulated batches); returns
        the unscaled loss and the attention mask (its sum is the batch's tokens)."""
        import torch

        x, m = collate([self.data.train_ids[i] for i in b], self.data.pad_id)
        dev = self.s.dev
        xt, mt = torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)
        with self.autocast():
            if self.data.classify:
                labels = self.data.train_labels
                assert labels is not None, "classification data always carries labels"
                y = torch.tensor([labels[i] for i in b], device=dev)
            else:
                y = xt.masked_fill(mt == 0, -100)
            out = self.net(input_ids=xt, attention_mask=mt, labels=y)
            loss = out.loss if self.s.loss_hook is None else self.s.loss_hook(out, xt, mt, y)
        if self.scaler is not None:
            self.scaler.scale(loss / self.s.grad_accum).backward()
        else:
            (loss / self.s.grad_accum).backward()
        return loss, m

    def _update(self) -> None:
        """One optimizer step with gradient clipping; a scaler step skipped for inf/NaN gradients
        is counted, not hidden."""
        import torch

        params = self.model.parameters()
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scale = self.scaler.get_scale()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.scaler.get_scale() < scale:  # inf/NaN gradients: the step was skipped
                self.counts.skipped += 1
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.counts.updates += 1
        for hook in self.s.after_update:
            hook(self.counts.updates, self.total_updates)


def train(
    model: Any, data: PreparedData, settings: TrainSettings, emit: Emitter, cancel: CancelToken
) -> TrainOutcome:
    """Train ``model`` on ``data``'s training split, evaluating on its eval split every epoch."""
    return _Trainer(model, data, settings, emit, cancel).run()
