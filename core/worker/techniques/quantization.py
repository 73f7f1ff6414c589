"""The worker half of ``quantization``: applies it to the loaded model.
Declared (name, parameters, where it applies) in core/techniques/quantization.py."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError
from wattlab.core.hardware import cpu_capabilities
from wattlab.core.techniques.base import Applied
from wattlab.core.techniques.quantization import Quantization
from wattlab.core.worker.techniques.registry import Implementation, implements

# Only the matrix products: quantizing LayerNorm/embedding parameters buys nothing and costs
# accuracy (and QDQ per-channel quantization of 1-D LayerNorm weights is ill-defined).
OPS = ["MatMul", "Gemm"]


def serialized_bytes(model: Any) -> int:
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def onnx_bytes(path: Path) -> int:
    """An ONNX model's size on disk: the .onnx file and its external data files."""
    from wattlab.core.models.onnx_model import external_data_files

    return sum(f.stat().st_size for f in [path, *external_data_files(path)])


def copy_onnx(src: Path, workdir: Path) -> Path:
    """Copy an ONNX model into the work folder as ``model.onnx``, with its external data files
    at the same relative places (a model over 2 GB keeps its weights beside the .onnx file);
    those files were confined to the model's folder when it was loaded, and are checked again
    here (models/onnx_model.py)."""
    from wattlab.core.models.onnx_model import external_data_files

    dst = workdir / "model.onnx"
    for f in external_data_files(src):
        rel = f.relative_to(src.parent)
        if rel == Path(dst.name):
            raise ModelError(
                f"{src.name} keeps its weights in a file named {dst.name}; rename it and "
                "re-save the model (onnx.save_model with another location)"
            )
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, workdir / rel)
    shutil.copyfile(src, dst)
    return dst


def _torchao_missing() -> str | None:
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install torchao)"
    return None


def torch_dynamic_int8(ctx: Any, qconfig: Any = None) -> tuple[int, int, int]:
    """PyTorch dynamic int8 on ctx.loaded's torch.nn.Linear layers (the model on ctx.loaded is
    replaced, its size updated); returns (serialized bytes before, after, Linear layers).
    ``qconfig`` None is torch's default (per-tensor int8 weights); quantization-aware training
    passes the per-channel one it trained for, so its weights convert without a second rounding.
    """
    import torch
    from torch.ao.quantization import quantize_dynamic

    model = ctx.loaded.model.to("cpu").float().eval()
    before = serialized_bytes(model)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    spec = {torch.nn.Linear} if qconfig is None else {torch.nn.Linear: qconfig}
    q = quantize_dynamic(model, spec, dtype=torch.qint8)
    ctx.loaded.model = q
    after = serialized_bytes(q)
    ctx.loaded.size_bytes = after
    return before, after, n_linear


@implements
class QuantizationImpl(Implementation, Quantization):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        backend = params["backend"]
        caps = cpu_capabilities()
        if backend == "ort":
            return self._ort(ctx, params, caps)
        if backend == "torch":
            before, after, n_linear = torch_dynamic_int8(ctx)
            warnings = []
            if n_linear == 0:
                warnings.append(
                    "the model has no torch.nn.Linear layers (GPT-2 uses "
                    "transformers' Conv1D): nothing was quantized; use backend=ort"
                )
            return Applied(
                self.name,
                params,
                f"PyTorch dynamic int8 on {n_linear} Linear layers: "
                f"{before / 1e6:.2f} MB -> {after / 1e6:.2f} MB serialized",
                {
                    "bytes_before": before,
                    "bytes_after": after,
                    "cpu_flags": caps,
                    "layers_quantized": n_linear,
                },
                warnings,
            )
        import torchao.quantization as tq

        model = ctx.loaded.model
        before = serialized_bytes(model)
        cfg = (
            tq.Int8WeightOnlyConfig() if params["dtype"] == "int8" else tq.Float8WeightOnlyConfig()
        )
        model.to(ctx.dev).to(__import__("torch").bfloat16)
        tq.quantize_(model, cfg)
        return Applied(
            self.name,
            params,
            f"torchao {params['dtype']} weight-only on CUDA (bf16 activations)",
            {"bytes_before": before},
        )

    def _ort(self, ctx: Any, params: dict[str, Any], caps: dict[str, bool]) -> Applied:
        from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process
        from onnxruntime.quantization import quantize_dynamic as ort_dynamic

        from wattlab.core.models.onnx_model import external_data_files
        from wattlab.core.worker.techniques.runtime import export_fp32, use_onnx_file

        loaded = ctx.loaded
        if loaded.kind == "onnx":
            fp32 = copy_onnx(Path(loaded.source), ctx.workdir)
        else:
            fp32 = export_fp32(ctx)  # no fp32 session: only the int8 one will run
        external = bool(external_data_files(fp32))
        pre = ctx.workdir / "model.pre.onnx"
        try:
            quant_pre_process(
                str(fp32), str(pre), skip_symbolic_shape=True, save_as_external_data=external
            )
        except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation only
            ctx.log(f"quant_pre_process skipped: {str(exc)[:120]}")
            pre = fp32
        out = ctx.workdir / "model.int8.onnx"
        if params["mode"] == "dynamic":
            ort_dynamic(
                str(pre),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=OPS,
                use_external_data_format=external,
            )
        else:
            from onnxruntime.quantization import CalibrationDataReader, quantize_static

            from wattlab.core.worker.batching import collate

            ids = ctx.calib_ids
            bs = ctx.spec.batch_size
            n = min(len(ids), bs * params["calibration_batches"])
            feeds = [
                dict(
                    zip(
                        ("input_ids", "attention_mask"),
                        collate(ids[s : s + bs], ctx.pad_id),
                        strict=True,
                    )
                )
                for s in range(0, n, bs)
            ]

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter(feeds)

                def get_next(self):  # noqa: ANN201 - ORT's interface
                    return next(self.it, None)

            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=OPS,
                use_external_data_format=external,
            )
        use_onnx_file(ctx, out)
        before, after = onnx_bytes(fp32), onnx_bytes(out)
        loaded.size_bytes = after
        return Applied(
            self.name,
            params,
            f"ONNX Runtime {params['mode']} int8 (per-channel weights): "
            f"{before / 1e6:.2f} MB fp32 ONNX -> {after / 1e6:.2f} MB int8 ONNX",
            {"bytes_before": before, "bytes_after": after, "cpu_flags": caps},
        )
