"""Quantization-aware training (QAT): train with the int8 rounding in the loop, then convert.

Every Linear layer (and GPT-2's Conv1D) that the int8 converter will quantize computes with
fake-quantized weights and inputs while it trains: the weights rounded to the per-channel
symmetric int8 grid, the inputs to the dynamic per-tensor uint8 grid the deployed dynamic int8
kernels use, each with its scale taken from the tensor at hand (as those kernels and the
converter compute it); gradients pass the rounding straight through (straight-through
estimator). The network so learns weights that survive the rounding.

At the end the fake quantization is removed and the weights are kept as the int8-representable
values they trained as, then converted exactly as ``quantization`` converts (``backend=ort``:
ONNX Runtime dynamic int8; ``backend=torch``: PyTorch dynamic int8 with per-channel weights), so
the model that is measured and reported is the int8 one.

- Training mode: the session's training is the QAT; the conversion follows it.
- Inference mode: the QAT fine-tuning runs while preparing (its energy reported as preparation,
  never as the measured work), and the measured inference is the int8 model's.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register
from wattlab.core.techniques.quantization import Quantization


@register
class QuantizationAwareTraining(Technique):
    name = "qat"
    label = "Quantization-aware training"
    order = 50  # the int8 step, as quantization: after pruning, sparse training, distillation
    summary = "Train with fake-quantized int8 weights and activations, then convert to int8"
    params = (
        Param(
            "backend",
            str,
            "ort",
            "the int8 runtime it trains for and converts to (CPU)",
            choices=("ort", "torch"),
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode not in ("train", "infer"):
            return False, "quantization-aware training applies to training or inference runs"
        if t.model_kind == "onnx":
            return False, "quantization-aware training trains a PyTorch model; an ONNX file cannot"
        if t.device != "cpu":
            return False, (
                "quantization-aware training here converts to the CPU's int8 kernels (ONNX "
                "Runtime or PyTorch dynamic int8); run it on the CPU"
            )
        backend = params.get("backend", "ort")
        if backend == "torch" and t.model_type == "gpt2":
            return False, (
                "backend=torch quantizes torch.nn.Linear only and GPT-2's layers are "
                "transformers' Conv1D: nothing would be int8; use backend=ort"
            )
        # The int8 conversion is the quantization technique's: whatever it refuses, so does this.
        as_ptq = Target("infer", t.device, t.model_kind, t.task, t.model_type, t.cuda_capability)
        return Quantization().applicable(as_ptq, {"backend": backend, "mode": "dynamic"})

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        return Quantization().warning(t, {"backend": params.get("backend", "ort")})
