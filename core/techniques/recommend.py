"""The one place that decides "recommended for this machine": the CLI's ``--demo`` preset and
the app's "Recommended" button both ask here, so they can never drift apart again (the app used
to default to autocast while the CLI cast the model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wattlab.core.hardware import cpu_has_fast_bf16

BF16_CAST = "mixed-precision:dtype=bf16,mode=cast"
BF16_AUTOCAST = "mixed-precision:dtype=bf16,mode=autocast"
ORT_INT8 = "quantization:backend=ort"
RAG_CACHE = "rag-cache"


@dataclass(frozen=True)
class Recommendation:
    """Technique texts in the CLI's syntax, and why they were chosen (shown as a tooltip)."""

    cli_texts: tuple[str, ...]
    reason: str

    def techniques(self) -> tuple[dict[str, Any], ...]:
        """The same choice as ``{"name", "params"}`` dicts, the form a RunSpec holds."""
        from wattlab.core.techniques.catalog import parse_cli

        return tuple(parse_cli(text) for text in self.cli_texts)


def recommended(mode: str = "infer") -> Recommendation:
    """Chosen from BENCHMARKS.md, decided from detected CPU features, never assumed. Inference:
    on CPUs with AMX or AVX512-BF16 the model cast to bf16 (-34% energy per item on the
    Sapphire Rapids VM, -57% on the EPYC VM, accuracy unchanged), else ONNX Runtime dynamic int8
    (-34% there). Training cannot cast the weights (no fp32 master copy): bf16 autocast is the
    one training technique to try, and its reason says it measured no saving on the demo."""
    if mode == "rag":
        return Recommendation(
            (RAG_CACHE,), "a RAG session's technique: the retrieval cache (BENCHMARKS.md)"
        )
    if mode == "train":
        fast = "this CPU has fast bf16" if cpu_has_fast_bf16() else "this CPU has no fast bf16"
        return Recommendation(
            (BF16_AUTOCAST,),
            f"{fast}; bf16 autocast is the training technique to try, but on the demo it "
            "measured within noise (-9%, BENCHMARKS.md): expect a small saving or none",
        )
    if cpu_has_fast_bf16():
        return Recommendation(
            (BF16_CAST,),
            "this CPU has fast bf16 (AMX or AVX512-BF16): the model cast to bf16 measured the "
            "largest saving with unchanged accuracy (BENCHMARKS.md)",
        )
    return Recommendation(
        (ORT_INT8,),
        "this CPU has no fast bf16: ONNX Runtime dynamic int8 measured the largest saving "
        "with unchanged accuracy (BENCHMARKS.md)",
    )
