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
from wattlab.core.worker.prepared import PreparedData, TrainSettings
from wattlab.core.worker.techniques.pruning import _prunable, sparsity_report
from wattlab.core.worker.train import TrainOutcome, train

# The eval metrics a round's row carries (whichever the task has).
ROUND_METRICS = ("accuracy", "macro_f1", "eval_loss", "perplexity")


def _add_pass(total: TrainOutcome, out: TrainOutcome, r: int) -> None:
    """Count one round's training pass into the whole run's outcome."""
    total.items += out.items
    total.tokens += out.tokens
    total.steps += out.steps
    total.train_time_s += out.train_time_s
    total.epochs.extend(dict(e, round=r) for e in out.epochs)
    total.eval_predictions = out.eval_predictions  # the latest pass's model is the result


def _round_row(model: Any, out: TrainOutcome, r: int, rounds: int) -> dict[str, Any]:
    """The ``round`` event and history row: the sparsity trained at, and the pass's last eval."""
    last = out.epochs[-1] if out.epochs else {}
    return {
        "round": r,
        "sparsity": sparsity_report(model)["sparsity"],
        "final": r == rounds,
        **{k: v for k, v in last.items() if k in ROUND_METRICS},
    }


def _prune_and_rewind(layers: list[Any], amount: float, rewind: dict[int, Any]) -> None:
    """Prune ``amount`` of the remaining weights globally, then rewind the survivors to the
    rewind point; the masks stay."""
    import torch.nn.utils.prune as prune

    prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=amount
    )
    for m in layers:
        m.weight_orig.data.copy_(rewind[id(m)])


def _make_permanent(layers: list[Any]) -> None:
    import torch.nn.utils.prune as prune

    for m in layers:
        if prune.is_pruned(m):
            prune.remove(m, "weight")


def lottery(
    model: Any,
    params: dict[str, Any],
    data: PreparedData,
    settings: TrainSettings,
    emit: Emitter,
    cancel: CancelToken,
) -> tuple[TrainOutcome, list[dict[str, Any]]]:
    """Run the rounds (``params``: rounds, amount, rewind_steps); returns the summed outcome of
    every training pass after the rewind point, and one row per round."""
    import torch.nn.utils.prune as prune

    rounds, amount = params["rounds"], params["amount"]
    layers = [m for _, m in _prunable(model)]
    emit.log(
        f"lottery ticket: {params['rewind_steps']} steps to the rewind point, then "
        f"{rounds} prune-and-rewind rounds to {amount:.0%} sparsity"
    )
    warm = dataclasses.replace(settings, max_steps=params["rewind_steps"], epochs=1)
    train(model, data, warm, emit, cancel)
    rewind = {id(m): m.weight.detach().clone() for m in layers}
    for m in layers:
        prune.identity(m, "weight")  # reparametrise: weight = weight_orig * weight_mask
    per_round = 1 - (1 - amount) ** (1 / rounds)
    history: list[dict[str, Any]] = []
    total = TrainOutcome([], 0, 0, 0, False, False, 0.0)
    for r in range(rounds + 1):
        out = train(model, data, settings, emit, cancel)
        _add_pass(total, out, r)
        row = _round_row(model, out, r, rounds)
        history.append(row)
        emit.emit("round", **row)
        if cancel.cancelled:
            total.cancelled = True
            break
        if r == rounds:
            break
        _prune_and_rewind(layers, per_round, rewind)
    _make_permanent(layers)
    return total, history
