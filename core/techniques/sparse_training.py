"""Sparse training: gradual magnitude pruning while the model trains (Zhu & Gupta 2017, "To prune,
or not to prune").

The sparsity follows their cubic schedule over the planned optimizer steps: 0 until ``start``,
then ``s_t = target * (1 - (1 - p)^3)`` with ``p`` the progress from ``start`` to ``end``, and
``target`` from ``end`` on. Pruning fast early (while the network can still recover) and slowly
near the end is what lets the remaining weights compensate as they train; pruning once after
training (``pruning``) gives them no such chance.

- **Unstructured** ranks all prunable Linear/Conv1D weights globally by magnitude and masks the
  smallest (``torch.nn.utils.prune``); the masks are made permanent at the end. Dense kernels
  still multiply the zeros, so it saves no time or energy without sparse kernels.
- **Structured** masks the FFN neurons (and attention heads) of least L2 importance in every
  layer as the schedule goes, then removes them for real at the end (the structured pruning's
  slicing), so the trained model's FLOPs and size fall.

Training mode only: for a model that is already trained, ``pruning`` removes weights at once.
The schedule is pure arithmetic, here without torch, so the GUI and the tests can read it.
"""

from __future__ import annotations

import math
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Param, Target, Technique, register

# The layouts whose FFN neurons and heads structured sparse training knows (as pruning does).
STRUCTURED_TYPES = ("bert", "roberta", "electra", "gpt2", "llama", "mistral", "qwen2")


def scheduled_sparsity(
    update: int, total_updates: int, target: float, start: float, end: float
) -> float:
    """The sparsity the cubic schedule asks for after ``update`` of ``total_updates`` optimizer
    steps: 0 before ``start`` (a fraction of the steps), ``target`` from ``end`` on, and
    ``target * (1 - (1 - p)^3)`` in between, ``p`` being the progress from start to end."""
    t0, t1 = start * total_updates, end * total_updates
    if update <= t0:
        return 0.0
    if update >= t1:
        return target
    progress = (update - t0) / (t1 - t0)
    return target * (1.0 - (1.0 - progress) ** 3)


def pruning_updates(total_updates: int, start: float, end: float, prunes: int) -> list[int]:
    """The optimizer steps after which the masks are updated: ``prunes`` steps spread evenly
    from ``start`` to ``end`` (Zhu & Gupta's pruning frequency), the last one at ``end``;
    steps that round to the same update count once."""
    t0, t1 = start * total_updates, end * total_updates
    steps = {
        min(total_updates, max(1, math.ceil(t0 + i * (t1 - t0) / prunes - 1e-9)))
        for i in range(1, prunes + 1)
    }
    return sorted(steps)


@register
class SparseTraining(Technique):
    name = "sparse-training"
    label = "Sparse training"
    order = 11  # right after pruning: it changes the weights everything after it sees
    summary = "Prune gradually while training (cubic schedule) to a target sparsity"
    params = (
        Param(
            "target",
            float,
            0.5,
            "sparsity reached at the end: fraction of weights (or of FFN neurons and heads)",
            min=0.0,
            max=0.95,
        ),
        Param(
            "method",
            str,
            "unstructured",
            "unstructured (single weights) or structured (FFN neurons and heads, removed)",
            choices=("unstructured", "structured"),
        ),
        Param(
            "start",
            float,
            0.1,
            "fraction of the planned optimizer steps after which pruning starts",
            min=0.0,
            max=1.0,
        ),
        Param(
            "end",
            float,
            0.8,
            "fraction of the planned optimizer steps at which the target is reached",
            min=0.0,
            max=1.0,
        ),
        Param(
            "prunes",
            int,
            10,
            "how many times the masks are updated between start and end",
            min=1,
            max=1000,
        ),
        Param("heads", bool, True, "structured: also remove attention heads"),
    )

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        params = super().parse_params(raw)
        if params["start"] >= params["end"]:
            raise SpecError(
                f"{self.name}: start ({params['start']}) must come before end ({params['end']})"
            )
        return params

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode != "train":
            return False, "sparse training prunes during training; for a trained model use pruning"
        if t.model_kind == "onnx":
            return False, "sparse training prunes PyTorch weights as they train, not an ONNX file"
        if (
            params.get("method") == "structured"
            and t.model_type
            and t.model_type not in STRUCTURED_TYPES
        ):
            return False, (
                f"structured sparse training does not know the layout of {t.model_type} models"
            )
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if params.get("method", "unstructured") == "unstructured":
            return (
                "unstructured sparsity runs on dense kernels here: the zeros are still "
                "multiplied, so expect no time or energy saving (the run measures it)"
            )
        return None
