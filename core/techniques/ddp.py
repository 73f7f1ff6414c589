"""Distributed data-parallel training (DDP) as a technique: ``ddp:nproc=2`` trains on N ranks.

It sets the spec's ``nproc`` through ``spec_overrides``, so the session runs exactly as
``--nproc N`` would: the parent launches the worker through torchrun
(``python -m torch.distributed.run --standalone --nproc-per-node N``, core/run/launch.py, which
applies the overrides itself because the launch happens before any worker exists), each rank
trains on its shard of every epoch with the global batch (``--batch-size``) split between the
ranks, gradients are averaged by ``DistributedDataParallel`` (gloo on the CPU, NCCL with one
GPU per rank), and the result counts the items of all ranks (core/worker/distributed.py). The
baseline of a comparison is one process with all the cores; the ranks share them
(cores / N threads each), so the comparison measures whether splitting them pays.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.spec import RANGES
from wattlab.core.techniques.base import Param, Target, Technique, register


@register
class DistributedDataParallel(Technique):
    name = "ddp"
    label = "Distributed data parallel (DDP)"
    order = 95  # changes no model: reported after every technique that does
    summary = (
        "Train on N processes (torchrun): each rank trains on its shard of every epoch, "
        "gradients averaged (gloo on CPU, NCCL with one GPU per rank)"
    )
    params = (
        Param(
            "nproc",
            int,
            2,
            "ranks (processes) on this machine; on the GPU one GPU per rank",
            min=2,
            max=RANGES["nproc"].hi,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode != "train":
            return False, (
                "DDP splits a training between processes that average their gradients; "
                f"{'inference' if t.mode == 'infer' else t.mode} has no gradients: choose "
                "training mode"
            )
        if t.model_kind == "onnx":
            return False, "an ONNX model runs inference only; DDP trains a PyTorch model"
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if t.device == "cpu":
            return (
                f"on the CPU the {params['nproc']} ranks share the cores one process would use "
                "(cores / ranks threads each) and add a gradient all-reduce per step: expect "
                "no speed-up unless one process leaves cores idle"
            )
        return None

    def spec_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"nproc": params["nproc"]}
