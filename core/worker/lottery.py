"""Lottery-ticket training: iterative magnitude pruning with rewinding (Frankle & Carbin 2019;
rewinding to an early checkpoint as in Frankle et al. 2020).

1. Train ``rewind_steps`` optimizer steps and keep those weights W_k (the rewind point).
2. For each of ``rounds`` rounds: train the (masked) model for the spec's epochs, prune the
   smallest remaining weights globally so sparsity follows 1 - (1 - amount)^(r / rounds), and
   rewind the surviving weights to W_k.
3. Train the final ticket; make the masks permanent.

Every training pass emits a ``round`` event with its sparsity and eval metrics; the parent adds the
energy spent so far, so the report shows what every round cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wattlab.core.worker.events import CancelToken, Emitter
from wattlab.core.worker.techniques.pruning import _prunable, sparsity_report
from wattlab.core.worker.train import TrainOutcome, train


def lottery(
    model: Any,
    spec: Any,
    params: dict[str, Any],
    data: tuple,
    pad_id: int,
    dev: Any,
    task: str,
    num_labels: int,
    emit: Emitter,
    cancel: CancelToken,
    autocast: Any = None,
) -> tuple[TrainOutcome, list[dict[str, Any]]]:
    import torch.nn.utils.prune as prune

    train_ids, train_y, eval_ids, eval_y = data
    rounds, amount = params["rounds"], params["amount"]
    layers = [m for _, m in _prunable(model)]
    warm = dataclasses.replace(spec, max_steps=params["rewind_steps"], epochs=1)
    emit.log(
        f"lottery ticket: {params['rewind_steps']} steps to the rewind point, then "
        f"{rounds} prune-and-rewind rounds to {amount:.0%} sparsity"
    )

    def train_pass(s: Any) -> TrainOutcome:
        return train(
            model,
            s,
            train_ids,
            train_y,
            eval_ids,
            eval_y,
            pad_id,
            dev,
            task,
            num_labels,
            emit,
            cancel,
            autocast=autocast,
        )

    train_pass(warm)
    rewind = {id(m): m.weight.detach().clone() for m in layers}
    for m in layers:
        prune.identity(m, "weight")  # reparametrise: weight = weight_orig * weight_mask
    per_round = 1 - (1 - amount) ** (1 / rounds)
    history: list[dict[str, Any]] = []
    total = TrainOutcome([], 0, 0, 0, False, False, 0.0)
    for r in range(rounds + 1):
        out = train_pass(spec)
        total.items += out.items
        total.tokens += out.tokens
        total.steps += out.steps
        total.train_time_s += out.train_time_s
        total.epochs.extend(dict(e, round=r) for e in out.epochs)
        sparsity = sparsity_report(model)["sparsity"]
        row = {
            "round": r,
            "sparsity": sparsity,
            "final": r == rounds,
            **{
                k: v
                for k, v in (out.epochs[-1] if out.epochs else {}).items()
                if k in ("accuracy", "macro_f1", "eval_loss", "perplexity")
            },
        }
        history.append(row)
        emit.emit("round", **row)
        if cancel.cancelled:
            total.cancelled = True
            break
        if r == rounds:
            break
        prune.global_unstructured(
            [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=per_round
        )
        for m in layers:
            m.weight_orig.data.copy_(rewind[id(m)])  # rewind survivors, keep the masks
    for m in layers:
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    return total, history
