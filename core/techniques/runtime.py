"""Switching runtime (PyTorch -> ONNX Runtime, fp32) as a technique of its own.

It exists so that a runtime switch is never credited to quantization: ORT int8 is compared with
ORT fp32 as well as with PyTorch fp32, and the report shows both deltas.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied, Target, Technique, register


def export_fp32(ctx: Any, path_name: str = "model.onnx") -> Any:
    """Export ctx.loaded's torch model to an fp32 ONNX file in the work dir; returns its path."""
    from wattlab.core.models.onnx_model import export_onnx

    path = ctx.workdir / path_name
    export_onnx(ctx.loaded.model.to("cpu").float(), path)
    return path


def to_onnx_runtime(ctx: Any, path_name: str = "model.onnx") -> Any:
    """Export ctx.loaded's torch model and swap in an ORT session; returns the ONNX path."""
    path = export_fp32(ctx, path_name)
    use_onnx_file(ctx, path)
    return path


def use_onnx_file(ctx: Any, path: Any) -> None:
    """Make ctx.loaded an ONNX Runtime session over ``path`` (CPU provider, spec's threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if ctx.spec.threads:
        opts.intra_op_num_threads = ctx.spec.threads
    loaded = ctx.loaded
    loaded.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    loaded.onnx_inputs = [i.name for i in loaded.session.get_inputs()]
    loaded.kind = "onnx"
    loaded.model = None
    loaded.size_bytes = path.stat().st_size


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

    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        path = to_onnx_runtime(ctx)
        return Applied(
            self.name,
            params,
            "exported to ONNX and run with ONNX Runtime (fp32, CPU execution provider)",
            {"onnx_bytes": path.stat().st_size},
        )
