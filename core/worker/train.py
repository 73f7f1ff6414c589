"""Training: AdamW, linear warm-up and decay, gradient accumulation, evaluation every epoch,
early stopping on eval loss. Seeded, so the same spec trains the same model."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattlab.core.models.metrics import classification_metrics
from wattlab.core.worker import device as devmod
from wattlab.core.worker.batching import batches, collate
from wattlab.core.worker.events import CancelToken, Emitter


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


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(
    model: Any,
    ids: list[list[int]],
    labels: list[int] | None,
    pad_id: int,
    batch_size: int,
    dev: Any,
    task: str,
    num_labels: int,
) -> dict[str, Any]:
    """Eval loss plus accuracy/F1/AUC (classification) or perplexity (causal LM)."""
    import torch

    model.eval()
    losses: list[float] = []
    weights: list[int] = []
    logits_all: list[np.ndarray] = []
    with torch.no_grad():
        for b in batches(len(ids), batch_size):
            x, m = collate([ids[i] for i in b], pad_id)
            xt, mt = torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)
            if task == "classify":
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
    loss = float(np.average(losses, weights=weights)) if losses else float("nan")
    res: dict[str, Any] = {"eval_loss": loss}
    if task == "classify":
        res.update(classification_metrics(np.concatenate(logits_all), np.array(labels), num_labels))
    else:
        res["perplexity"] = math.exp(loss) if loss < 50 else float("inf")
    return res


def train(
    model: Any,
    spec: Any,
    train_ids: list[list[int]],
    train_labels: list[int] | None,
    eval_ids: list[list[int]],
    eval_labels: list[int] | None,
    pad_id: int,
    dev: Any,
    task: str,
    num_labels: int,
    emit: Emitter,
    cancel: CancelToken,
    autocast: Any = None,
    grad_scaler: bool = False,
) -> TrainOutcome:
    import torch

    seed_everything(spec.seed)
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    per_epoch = math.ceil(len(train_ids) / spec.batch_size)
    total_updates = math.ceil(per_epoch * spec.epochs / spec.grad_accum)
    if spec.max_steps:
        total_updates = min(total_updates, spec.max_steps)
    warm = max(1, total_updates // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min((s + 1) / warm, max(0.0, (total_updates - s) / (total_updates - warm or 1))),
    )
    rng = np.random.default_rng(spec.seed)
    epochs: list[dict[str, Any]] = []
    items = tokens = updates = 0
    best = math.inf
    bad = 0
    stopped_early = False
    t_start = time.perf_counter()
    ctx = autocast or _null
    scaler = torch.amp.GradScaler(dev.type) if grad_scaler else None
    skipped = 0
    for epoch in range(1, spec.epochs + 1):
        emit.phase("train")
        model.train()
        t_epoch = time.perf_counter()
        running = 0.0
        n_batches = 0
        for k, b in enumerate(
            batches(len(train_ids), spec.batch_size, rng.permutation(len(train_ids)))
        ):
            if cancel.cancelled:
                break
            x, m = collate([train_ids[i] for i in b], pad_id)
            xt, mt = torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)
            with ctx():
                if task == "classify":
                    y = torch.tensor([train_labels[i] for i in b], device=dev)
                    loss = model(input_ids=xt, attention_mask=mt, labels=y).loss
                else:
                    loss = model(
                        input_ids=xt, attention_mask=mt, labels=xt.masked_fill(mt == 0, -100)
                    ).loss
            if scaler is not None:
                scaler.scale(loss / spec.grad_accum).backward()
            else:
                (loss / spec.grad_accum).backward()
            if (k + 1) % spec.grad_accum == 0 or k == per_epoch - 1:
                if scaler is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    scale = scaler.get_scale()
                    scaler.step(opt)
                    scaler.update()
                    if scaler.get_scale() < scale:  # inf/NaN gradients: the step was skipped
                        skipped += 1
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                updates += 1
            items += len(b)
            tokens += int(m.sum())
            running += float(loss.detach())
            n_batches += 1
            emit.step(
                force=k == per_epoch - 1,
                epoch=epoch,
                batch=k + 1,
                batches=per_epoch,
                step=updates,
                total_steps=total_updates,
                items=items,
                tokens=tokens,
                loss=float(loss.detach()),
            )
            if spec.max_steps and updates >= spec.max_steps:
                break
        devmod.sync(dev)
        train_s = time.perf_counter() - t_epoch
        if cancel.cancelled and n_batches == 0:
            break
        emit.phase("eval")
        metrics = evaluate(
            model, eval_ids, eval_labels, pad_id, spec.batch_size, dev, task, num_labels
        )
        row = {
            "epoch": epoch,
            "train_loss": running / max(1, n_batches),
            "train_time_s": train_s,
            "items": items,
            "tokens": tokens,
            **metrics,
        }
        epochs.append(row)
        emit.emit("epoch", **row)
        if cancel.cancelled or (spec.max_steps and updates >= spec.max_steps):
            break
        if spec.patience:
            if metrics["eval_loss"] < best - 1e-4:
                best, bad = metrics["eval_loss"], 0
            else:
                bad += 1
                if bad >= spec.patience:
                    stopped_early = True
                    emit.log(
                        f"early stopping after epoch {epoch}: eval loss did not improve "
                        f"for {spec.patience} epoch(s)"
                    )
                    break
    return TrainOutcome(
        epochs,
        items,
        tokens,
        updates,
        cancel.cancelled,
        stopped_early,
        time.perf_counter() - t_start,
        skipped,
    )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None
