"""The worker half of ``qat``: fake quantization while training, then the real int8 conversion.
Declared (name, parameters, where it applies) in core/techniques/qat.py.

What is simulated is what the deployed dynamic int8 kernels compute:

- weights: per output channel, symmetric int8 in [-127, 127] with scale max|w| / 127, taken from
  the weight as it is now (``torch.fake_quantize_per_channel_affine``). The converter computes
  the same scale from the baked weights (ONNX Runtime's symmetric int8 range is [-127, 127]; the
  PyTorch conversion gets a per-channel qconfig with that range), so baked values convert with
  no second rounding;
- inputs: per tensor, asymmetric uint8 from the batch's min and max (zero included), as ONNX
  Runtime's DynamicQuantizeLinear ([0, 255]) and PyTorch's dynamic Linear (fbgemm, reduce_range:
  [0, 127]) quantize them at run time (``torch.fake_quantize_per_tensor_affine``).

Both roundings pass gradients straight through. Running-average observers
(``torch.ao.quantization.FakeQuantize``) are not used: their scales trail the weights, while
the deployed kernels and the converter use the tensor at hand.

The layers are switched to a fake-quantizing subclass in place (the way
``torch.nn.utils.parametrize`` switches a module's class), rather than parametrizing ``weight``:
a parametrized weight cannot also carry ``torch.nn.utils.prune`` masks, and sparse training (and
pruning while training) mask the same weights. The subclass reads ``self.weight`` at each
forward, after the prune hooks set it, so it fake-quantizes the surviving weights: zeros stay
zeros (the symmetric grid holds 0 exactly).
"""

from __future__ import annotations

import functools
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Applied, Target
from wattlab.core.techniques.qat import QuantizationAwareTraining
from wattlab.core.techniques.quantization import Quantization
from wattlab.core.worker.techniques.quantization import QuantizationImpl, torch_dynamic_int8
from wattlab.core.worker.techniques.registry import Implementation, implements

WEIGHT_QMIN, WEIGHT_QMAX = -127, 127  # symmetric int8, both converters
# The input grid of each backend's dynamic int8 kernels (uint8; fbgemm uses 7 bits, reduce_range).
INPUT_RANGE = {"ort": (0, 255), "torch": (0, 127)}
EVAL_FIGURES = ("epoch", "eval_loss", "accuracy", "macro_f1", "perplexity")


def weight_scale(w: Any, axis: int) -> Any:
    """Per-channel symmetric scale along ``axis`` (the output features): max|w| / 127."""
    import torch

    dims = [d for d in range(w.dim()) if d != axis]
    amax = w.detach().abs().amax(dim=dims).float()
    return (amax / WEIGHT_QMAX).clamp_min(torch.finfo(torch.float32).eps)


def fake_quant_weight(w: Any, axis: int) -> Any:
    """``w`` rounded to its per-channel int8 grid; gradients pass straight through."""
    import torch

    scale = weight_scale(w, axis)
    zero = torch.zeros(scale.numel(), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, axis, WEIGHT_QMIN, WEIGHT_QMAX)


def fake_quant_input(x: Any, qmin: int, qmax: int) -> Any:
    """``x`` rounded to the per-tensor uint8 grid its own min and max give (zero included), as
    the dynamic kernels quantize their input; gradients pass straight through."""
    import torch

    d = x.detach()
    lo, hi = d.min().clamp(max=0).float(), d.max().clamp(min=0).float()
    scale = (hi - lo) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(x, scale.reshape(1), zero.reshape(1), qmin, qmax)


def _linear_forward(self: Any, x: Any) -> Any:
    import torch.nn.functional as F

    return F.linear(self.input_fake_quant(x), self.weight_fake_quant(self.weight), self.bias)


def _conv1d_forward(self: Any, x: Any) -> Any:
    """transformers' Conv1D.forward (weight is (in, out)) on fake-quantized input and weight."""
    import torch

    size_out = x.size()[:-1] + (self.nf,)
    x = self.input_fake_quant(x)
    out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight_fake_quant(self.weight))
    return out.view(size_out)


@functools.cache
def _fake_quant_modules() -> tuple[type, type]:
    """The two fake-quant modules (classes made on first use: torch is imported lazily)."""
    import torch

    class WeightFakeQuant(torch.nn.Module):
        """Per-channel symmetric int8 fake quantization of a weight (output axis ``axis``)."""

        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, w: Any) -> Any:
            return fake_quant_weight(w, self.axis)

        def extra_repr(self) -> str:
            return f"axis={self.axis}, int8 [{WEIGHT_QMIN}, {WEIGHT_QMAX}], per channel"

    class InputFakeQuant(torch.nn.Module):
        """Dynamic per-tensor uint8 fake quantization of a layer's input."""

        def __init__(self, qmin: int, qmax: int) -> None:
            super().__init__()
            self.qmin, self.qmax = qmin, qmax

        def forward(self, x: Any) -> Any:
            return fake_quant_input(x, self.qmin, self.qmax)

        def extra_repr(self) -> str:
            return f"uint8 [{self.qmin}, {self.qmax}], per tensor, dynamic"

    return WeightFakeQuant, InputFakeQuant


_FAKE_QUANT_CLASSES: dict[type, type] = {}  # base -> its subclass, made once per process


def _fake_quant_class(base: type) -> type:
    """The fake-quantizing subclass of ``base`` (torch.nn.Linear or transformers' Conv1D)."""
    import torch

    if base not in _FAKE_QUANT_CLASSES:
        forward = _linear_forward if issubclass(base, torch.nn.Linear) else _conv1d_forward
        _FAKE_QUANT_CLASSES[base] = type(
            f"FakeQuant{base.__name__}",
            (base,),
            {"forward": forward, "__module__": __name__, "qat_base": base},
        )
    return _FAKE_QUANT_CLASSES[base]


def _layer_types(backend: str) -> tuple[type, ...]:
    """What the backend's converter quantizes: every Linear; ONNX Runtime also GPT-2's Conv1D
    (exported as Gemm); PyTorch's dynamic int8 only torch.nn.Linear."""
    import torch

    if backend == "torch":
        return (torch.nn.Linear,)
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def qat_targets(model: Any, backend: str) -> list[tuple[str, Any]]:
    """The layers the backend's converter will quantize (by exact type)."""
    types = _layer_types(backend)
    return [(n, m) for n, m in model.named_modules() if type(m) in types]


def _tied_to_embeddings(model: Any, layer: Any) -> bool:
    """Whether ``layer`` shares its weight with the input embeddings (GPT-2's LM head)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return emb is not None and layer.weight is getattr(emb, "weight", None)


def _out_axis(layer: Any) -> int:
    import torch

    return 0 if isinstance(layer, torch.nn.Linear) else 1  # Conv1D weight is (in, out)


def fake_quant_layers(model: Any) -> list[tuple[str, Any]]:
    """The layers that fake-quantize now."""
    return [(n, m) for n, m in model.named_modules() if hasattr(type(m), "qat_base")]


def insert_fake_quant(model: Any, backend: str) -> int:
    """Switch every target layer to its fake-quantizing subclass in place (its parameters,
    hooks and masks are kept); returns how many."""
    weight_fq, input_fq = _fake_quant_modules()
    targets = qat_targets(model, backend)
    for _, m in targets:
        m.__class__ = _fake_quant_class(type(m))
        m.weight_fake_quant = weight_fq(_out_axis(m))
        m.input_fake_quant = input_fq(*INPUT_RANGE[backend])
    return len(targets)


def bake(model: Any, backend: str) -> int:
    """Remove the fake quantization and keep every target layer's weight as the int8-grid
    values it trained as (also layers an earlier finalize re-made, e.g. sliced by structured
    sparse training: rounding is per output channel, so the values are the same); returns how
    many layers were baked. A head tied to the input embeddings is left as it is: baking it
    would round the embeddings too, and the converter rounds it to the same grid itself."""
    import torch
    import torch.nn.utils.prune as prune

    for _, m in fake_quant_layers(model):
        del m.weight_fake_quant, m.input_fake_quant
        m.__class__ = type(m).qat_base
    baked = [m for _, m in qat_targets(model, backend) if not _tied_to_embeddings(model, m)]
    with torch.no_grad():
        for m in baked:
            if prune.is_pruned(m) and hasattr(m, "weight_mask"):
                prune.remove(m, "weight")  # a mask still on: its values are what trained
            m.weight.copy_(fake_quant_weight(m.weight, _out_axis(m)))
    return len(baked)


def _torch_qconfig() -> Any:
    """Dynamic int8 with per-channel symmetric weights in [-127, 127]: the grid QAT trained on."""
    import torch
    from torch.ao.quantization import (
        PerChannelMinMaxObserver,
        QConfig,
        default_dynamic_quant_observer,
    )

    weight = PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        quant_min=WEIGHT_QMIN,
        quant_max=WEIGHT_QMAX,
    )
    return QConfig(activation=default_dynamic_quant_observer, weight=weight)


def convert(ctx: Any, backend: str) -> tuple[str, dict[str, Any]]:
    """The quantization technique's int8 conversion of the baked model; (what, figures)."""
    if backend == "torch":
        before, after, n = torch_dynamic_int8(ctx, _torch_qconfig())
        return (
            f"PyTorch dynamic int8 (per-channel weights) on {n} Linear layers: "
            f"{before / 1e6:.2f} MB -> {after / 1e6:.2f} MB serialized",
            {"bytes_before": before, "bytes_after": after, "layers_quantized": n},
        )
    ort = Quantization().parse_params({"backend": "ort", "mode": "dynamic"})
    app = QuantizationImpl().apply(ctx, ort)
    return app.description, app.details


def _train_first(ctx: Any, model: Any) -> dict[str, Any]:
    """Inference sessions: the QAT fine-tuning runs inside the prepare phase."""
    from wattlab.core.worker.prepare_training import train_while_preparing

    out = train_while_preparing(ctx, model, "quantization-aware training")
    model.eval()
    last = out.epochs[-1] if out.epochs else {}
    return {
        "steps": out.steps,
        "items": out.items,
        "train_time_s": out.train_time_s,
        "cancelled": out.cancelled,
        "last_eval": {k: v for k, v in last.items() if k in EVAL_FIGURES},
    }


@implements
class QuantizationAwareTrainingImpl(Implementation, QuantizationAwareTraining):
    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        loaded = ctx.loaded
        if loaded.kind != "hf" or loaded.model is None:
            raise SpecError(
                "qat needs the PyTorch model, but an earlier technique turned it into an ONNX "
                "Runtime session; compare them separately"
            )
        backend = params["backend"]
        n = insert_fake_quant(loaded.model, backend)
        qmin, qmax = INPUT_RANGE[backend]
        details: dict[str, Any] = {
            "layers_fake_quantized": n,
            "weights": f"int8 [{WEIGHT_QMIN}, {WEIGHT_QMAX}], symmetric, per output channel",
            "inputs": f"uint8 [{qmin}, {qmax}], per tensor, dynamic (as the {backend} kernels)",
        }
        warning = self.warning(Target(ctx.spec.mode, ctx.dev.type, loaded.kind), params)
        applied = Applied(
            self.name,
            params,
            f"fake-quantized int8 weights and inputs on {n} layers while training "
            f"(straight-through gradients); converted to int8 ({backend}) after training",
            details,
            [warning] if warning else [],
        )
        if ctx.spec.mode == "infer":
            details["qat_training"] = _train_first(ctx, loaded.model)
            self.finalize(ctx, params, applied)
            applied.warnings.append(
                "the agreement with the unmodified model counts the QAT fine-tuning's changes "
                "as well as the int8 rounding"
            )
        return applied

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        model = ctx.loaded.model
        baked = bake(model, params["backend"])
        zeros = _zero_fraction(model, params["backend"])
        what, figures = convert(ctx, params["backend"])
        applied.details.update({"layers_baked": baked, "zero_weights": zeros, "int8": figures})
        where = "while preparing" if ctx.spec.mode == "infer" else "during the training"
        applied.description = (
            f"quantization-aware training {where} ({applied.details['layers_fake_quantized']} "
            f"layers fake-quantized), weights baked to their int8 grid, then {what}"
        )


def _zero_fraction(model: Any, backend: str) -> float:
    """The fraction of the baked layers' weights that are zero (sparsity kept, plus the small
    weights the rounding sent to zero)."""
    total = zeros = 0
    for _, m in qat_targets(model, backend):
        total += m.weight.numel()
        zeros += int((m.weight == 0).sum())
    return round(zeros / total, 4) if total else 0.0
