"""Putting techniques together: a fixed order, and the combinations that are refused.

Order (lowest first): pruning (10) -> sparse training (11) -> mixed precision (30) -> ONNX
Runtime (40) -> quantization or QAT (50) -> early exit (60). Pruning changes the weights that
everything after it sees; quantization changes the runtime and freezes the weights (QAT trains
for it first, then does the same); early exit comes last because its exit
heads must be trained on the backbone exactly as it will run. The RAG retrieval cache (70) is the
only technique of RAG sessions, and runs nowhere else.

Refused, with the reason, before a run starts:
- the same technique twice;
- mixed precision with quantization or ONNX Runtime: int8/ORT kernels run outside torch autocast;
- quantization backend=ort with onnx-runtime: the first already runs on ONNX Runtime;
- 2:4 semi-structured pruning with quantization: both replace the Linear kernels;
- early exit with ONNX Runtime (either kind): the exits need the PyTorch model layer by layer;
- compile with ONNX Runtime (either kind): ORT replaces the PyTorch model compile would compile;
- sparse-training with pruning; qat with quantization, onnx-runtime, mixed precision or early
  exit, and after pruning's one-shot zeros in inference mode (see
  ``_refuse_with_sparse_training_or_qat``).
"""

from __future__ import annotations

from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Target, Technique
from wattlab.core.techniques.catalog import get


def availability(
    tech: Technique, target: Target, params: dict[str, Any]
) -> tuple[bool, str | None]:
    """Whether ``tech`` can run on ``target``, and why not: its own rule, plus the RAG
    pipeline's (it takes only the retrieval cache; model techniques are measured on models)."""
    if target.mode == "rag" and tech.name != "rag-cache":
        return False, (
            f"{tech.name} does not apply to RAG sessions yet; the RAG pipeline takes rag-cache "
            "(measure model techniques with a training or inference run)"
        )
    return tech.applicable(target, params)


def spec_with_overrides(spec: Any) -> Any:
    """``spec`` (a RunSpec) with the fields its techniques set (``Technique.spec_overrides``),
    validated again; the same spec when none sets any. Two techniques setting the same field
    are refused rather than letting the later one win silently."""
    import dataclasses

    changes: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for s in spec.techniques:
        tech = get(s["name"])
        for key, value in tech.spec_overrides(tech.parse_params(s.get("params") or {})).items():
            if key in owner and owner[key] != tech.name:
                raise SpecError(f"{owner[key]} and {tech.name} both set {key}; choose one")
            changes[key], owner[key] = value, tech.name
    if not changes:
        return spec
    return dataclasses.replace(spec, **changes).validate()


def resolve(
    specs: list[dict[str, Any]] | tuple[dict[str, Any], ...], target: Target
) -> list[tuple[Technique, dict[str, Any]]]:
    chosen: list[tuple[Technique, dict[str, Any]]] = []
    seen: set[str] = set()
    for s in specs:
        tech = get(s["name"])
        if tech.name in seen:
            raise SpecError(f"{tech.name} is given twice; give it once with all its parameters")
        seen.add(tech.name)
        params = tech.parse_params(s.get("params") or {})
        ok, why = availability(tech, target, params)
        if not ok:
            raise SpecError(f"{tech.name} cannot run here: {why}")
        chosen.append((tech, params))
    by = {t.name: p for t, p in chosen}
    if "mixed-precision" in by and ("quantization" in by or "onnx-runtime" in by):
        other = "quantization" if "quantization" in by else "onnx-runtime"
        raise SpecError(
            f"mixed-precision and {other} cannot be combined: int8 and ONNX Runtime "
            "kernels run outside torch autocast; compare them separately"
        )
    if "onnx-runtime" in by and by.get("quantization", {}).get("backend") == "ort":
        raise SpecError(
            "quantization:backend=ort already runs on ONNX Runtime; drop "
            "onnx-runtime (use it alone as the fp32 ONNX Runtime baseline)"
        )
    if "early-exit" in by and (
        "onnx-runtime" in by or by.get("quantization", {}).get("backend") == "ort"
    ):
        raise SpecError(
            "early-exit runs the PyTorch model layer by layer; ONNX Runtime "
            "replaces it with a fixed graph; choose one"
        )
    if by.get("pruning", {}).get("method") == "semi-structured" and "quantization" in by:
        raise SpecError(
            "2:4 semi-structured pruning and quantization both replace the Linear "
            "kernels; choose one"
        )
    _refuse_with_sparse_training_or_qat(by, target)
    if "compile" in by and (
        "onnx-runtime" in by or by.get("quantization", {}).get("backend") == "ort"
    ):
        raise SpecError(
            "compile compiles the PyTorch model, and ONNX Runtime replaces it with its own graph; "
            "choose one"
        )
    return sorted(chosen, key=lambda tp: tp[0].order)


def _refuse_with_sparse_training_or_qat(by: dict[str, dict[str, Any]], target: Target) -> None:
    """What sparse-training and qat cannot share a run with. Allowed: sparse-training then qat
    (qat fake-quantizes the surviving weights; zeros stay zeros on the symmetric int8 grid)."""
    if "sparse-training" in by and "pruning" in by:
        raise SpecError(
            "sparse-training and pruning both prune the weights (gradually while training, or "
            "at once); choose one"
        )
    if "qat" not in by:
        return
    if "quantization" in by or "onnx-runtime" in by:
        other = "quantization" if "quantization" in by else "onnx-runtime"
        raise SpecError(
            f"qat trains the PyTorch model and converts it to int8 itself (as quantization "
            f"does); drop {other}"
        )
    if "mixed-precision" in by:
        raise SpecError(
            "mixed-precision and qat cannot be combined: qat computes on the int8 grid in fp32 "
            "so that training sees exactly what the int8 kernels compute, and autocast would "
            "round those values again to bf16/fp16; compare them separately"
        )
    if "early-exit" in by:
        raise SpecError(
            "early-exit fits its exit heads on the backbone's PyTorch layers, and qat leaves "
            "int8 kernels (an ONNX Runtime graph or PyTorch's packed int8 weights); choose one"
        )
    if target.mode == "infer" and by.get("pruning", {}).get("method") == "unstructured":
        raise SpecError(
            "pruning zeroes the weights once before inference, and qat's fine-tuning would "
            "grow them back; train with sparse-training and qat (or pruning and qat) instead"
        )
