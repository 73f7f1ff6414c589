"""Mixed precision: bf16 or fp16 through ``torch.autocast``, or by casting the model.

bf16 pays off on CPUs with AMX or AVX512-BF16 and on CUDA GPUs from Ampere on; fp16 training
needs loss scaling (``GradScaler``) on CUDA, and its skipped steps are counted. Where the hardware
has no fast low-precision units the technique is still offered, with that warning up front.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.hardware import cpu_has_fast_bf16
from wattlab.core.techniques.base import Param, Target, Technique, register


@register
class MixedPrecision(Technique):
    name = "mixed-precision"
    label = "Mixed precision"
    order = 30
    summary = "Compute in bf16/fp16 with autocast, or cast the model (inference)"
    params = (
        Param("dtype", str, "bf16", "low-precision type", choices=("bf16", "fp16")),
        Param(
            "mode",
            str,
            "autocast",
            "autocast (fp32 weights) or cast the weights (inference)",
            choices=("autocast", "cast"),
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.model_kind == "onnx":
            return False, "mixed precision applies to PyTorch models, not ONNX files"
        if t.mode == "train" and params.get("mode") == "cast":
            return False, (
                "casting the weights trains without fp32 master weights; use "
                "mode=autocast for training"
            )
        if t.mode == "train" and params.get("dtype") == "fp16" and t.device != "cuda":
            return False, "fp16 training needs loss scaling on a CUDA GPU; use dtype=bf16 on CPU"
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        dt = params.get("dtype", "bf16")
        if t.device == "cpu" and dt == "bf16" and not cpu_has_fast_bf16():
            return "this CPU has no AMX or AVX512-BF16: bf16 may be slower than fp32 here"
        if t.device == "cpu" and dt == "fp16":
            return "CPUs rarely have fast fp16 matrix units: fp16 may be slower than fp32 here"
        if t.device == "cuda" and dt == "bf16" and t.cuda_capability and t.cuda_capability < (8, 0):
            return "GPUs before Ampere (compute capability 8.0) have no fast bf16"
        return None
