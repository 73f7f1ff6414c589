"""Quantization, applied for real and reported with sizes and the CPU features that decide it.

- ``backend=ort`` (CPU): export to ONNX, ``quant_pre_process``, then ``quantize_dynamic`` (int8
  weights, activations quantized on the fly) or ``quantize_static`` (QDQ, calibrated on a slice of
  the training split). Compare it with ``onnx-runtime`` (ORT fp32) too, so the runtime switch is
  not credited to quantization.
- ``backend=torch`` (CPU): PyTorch's legacy dynamic int8 (``torch.ao.quantization
  .quantize_dynamic`` on Linear layers). Deprecated upstream in favour of torchao, kept as a
  second path because it needs nothing extra.
- ``backend=torchao`` (CUDA): torchao weight-only int8, or fp8 on compute capability >= 8.9.
  Often slower than bf16 for small batches; the run measures it rather than assuming a gain.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from wattlab.core.hardware import cpu_capabilities
from wattlab.core.techniques.base import Param, Target, Technique, register


def _torchao_missing() -> str | None:
    """Whether torchao is installed, found without importing it (and so torch)."""
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install torchao)"
    return None


@register
class Quantization(Technique):
    name = "quantization"
    label = "Quantization"
    order = 50
    summary = "int8 (or fp8) weights: ONNX Runtime or PyTorch on CPU, torchao on CUDA"
    params = (
        Param("backend", str, "ort", "which implementation", choices=("ort", "torch", "torchao")),
        Param(
            "mode",
            str,
            "dynamic",
            "ort: dynamic or static (calibrated) activations",
            choices=("dynamic", "static"),
        ),
        Param("dtype", str, "int8", "torchao: int8 weight-only or fp8", choices=("int8", "fp8")),
        Param(
            "calibration_batches",
            int,
            8,
            "ort static: batches of training data for calibration",
            min=1,
            max=256,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode != "infer":
            return False, (
                "quantization here is post-training, for inference; "
                "quantization-aware training is not offered"
            )
        backend = params.get("backend", "ort")
        if backend in ("ort", "torch") and t.device != "cpu":
            return False, f"backend={backend} quantizes for the CPU; use backend=torchao on CUDA"
        if backend == "torch" and t.model_kind == "onnx":
            return False, "backend=torch needs a PyTorch model; use backend=ort for ONNX files"
        if backend == "torchao":
            if t.device != "cuda":
                return False, "backend=torchao targets CUDA GPUs; on CPU use backend=ort"
            if t.model_kind == "onnx":
                return False, "backend=torchao needs a PyTorch model"
            missing = _torchao_missing()
            if missing:
                return False, missing
            if (
                params.get("dtype") == "fp8"
                and t.cuda_capability is not None
                and t.cuda_capability < (8, 9)
            ):
                return False, "fp8 needs compute capability >= 8.9 (Ada, Hopper or newer)"
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        caps = cpu_capabilities()
        if params.get("backend", "ort") in ("ort", "torch") and not (
            caps["avx512_vnni"] or caps["amx_int8"]
        ):
            return (
                "this CPU has no AVX512-VNNI or AMX int8 units: int8 kernels may not beat fp32 here"
            )
        return None
