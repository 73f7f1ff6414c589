"""Switching runtime (PyTorch -> ONNX Runtime, fp32) as a technique of its own.

It exists so that a runtime switch is never credited to quantization: ORT int8 is compared with
ORT fp32 as well as with PyTorch fp32, and the report shows both deltas.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Target, Technique, register


@register
class OnnxRuntime(Technique):
    name = "onnx-runtime"
    label = "ONNX Runtime (fp32)"
    order = 40
    summary = "Run the same fp32 model with ONNX Runtime instead of PyTorch"

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode != "infer":
            return False, "ONNX Runtime is used for inference only"
        if t.model_kind == "onnx":
            return False, "the model already runs on ONNX Runtime"
        if t.device != "cpu":
            return False, "WattLab runs ONNX Runtime on the CPU execution provider only"
        return True, None
