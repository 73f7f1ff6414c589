"""The worker half of ``runtime``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/runtime.py."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.runtime import OnnxRuntime
from wattlab.core.worker.techniques.registry import Implementation, implements


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


@implements
class OnnxRuntimeImpl(Implementation, OnnxRuntime):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        path = to_onnx_runtime(ctx)
        return Applied(
            self.name,
            params,
            "exported to ONNX and run with ONNX Runtime (fp32, CPU execution provider)",
            {"onnx_bytes": path.stat().st_size},
        )
