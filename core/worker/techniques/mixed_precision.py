"""The worker half of ``mixed-precision``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/mixed_precision.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.mixed_precision import MixedPrecision
from wattlab.core.worker.techniques.registry import Implementation, implements


@implements
class MixedPrecisionImpl(Implementation, MixedPrecision):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        import torch

        dtype = torch.bfloat16 if params["dtype"] == "bf16" else torch.float16
        dev_type = ctx.dev.type
        if params["mode"] == "cast":
            ctx.loaded.model.to(dtype)
            # The weights really are half the size now (what saving them would write).
            ctx.loaded.size_bytes = sum(
                p.numel() * p.element_size() for p in ctx.loaded.model.parameters()
            )
            desc = f"weights and activations cast to {params['dtype']}"
        else:
            ctx.autocast = lambda: torch.autocast(device_type=dev_type, dtype=dtype)
            desc = f"torch.autocast({dev_type}, {params['dtype']}), fp32 weights"
            if ctx.spec.mode == "train" and dtype == torch.float16:
                ctx.grad_scaler = True
                desc += ", GradScaler loss scaling"
        w = self.warning(_target_of(ctx), params)
        return Applied(self.name, params, desc, {}, [w] if w else [])


def _target_of(ctx: Any) -> Target:
    cap = None
    if ctx.dev.type == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability(ctx.dev)
        cap = (major, minor)
    return Target(ctx.spec.mode, ctx.dev.type, ctx.loaded.kind, ctx.task, None, cap)
