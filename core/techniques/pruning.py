"""Pruning: unstructured magnitude, structured (heads and FFN neurons), and 2:4 semi-structured.

- **Unstructured** zeroes the smallest weights (globally or per layer). Dense kernels still
  multiply the zeros, so it saves no time or energy on CPUs or GPUs without sparse kernels; the
  report says so, and gives the size the weights would take in a sparse (CSR) format apart from
  the real dense size. Masks are made permanent with ``prune.remove`` (no ``weight_orig`` left);
  when training they stay active during training and are made permanent at the end.
- **Structured** removes whole attention heads and FFN neurons of least L2 importance and slices
  the Linear layers, so FLOPs and size really fall. Done by hand because transformers v5 dropped
  ``prune_heads``: BERT-style encoders and GPT-2 (heads + FFN), Llama-style decoders (FFN only;
  grouped-query attention heads are not removed).
- **Semi-structured 2:4** keeps 2 of every 4 weights and converts Linear weights with
  ``to_sparse_semi_structured``: only on CUDA with compute capability >= 8.0, where sparse tensor
  cores exist.
"""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register


@register
class Pruning(Technique):
    name = "pruning"
    label = "Pruning"
    order = 10
    summary = "Remove weights: unstructured magnitude, structured heads/neurons, or 2:4 sparsity"
    params = (
        Param(
            "method",
            str,
            "unstructured",
            "which kind of pruning",
            choices=("unstructured", "structured", "semi-structured", "lottery"),
        ),
        Param(
            "amount",
            float,
            0.3,
            "fraction of weights (or heads/neurons) to remove",
            min=0.0,
            max=0.95,
        ),
        Param(
            "scope",
            str,
            "global",
            "unstructured: rank weights over all layers or per layer",
            choices=("global", "layer"),
        ),
        Param("heads", bool, True, "structured: also remove attention heads"),
        Param("rounds", int, 3, "lottery: prune-and-rewind rounds", min=1, max=10),
        Param(
            "rewind_steps",
            int,
            20,
            "lottery: optimizer steps to the rewind point",
            min=1,
            max=100000,
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.model_kind == "onnx":
            return False, "pruning changes PyTorch weights; an ONNX file cannot be pruned here"
        if params.get("method") == "lottery" and t.mode != "train":
            return False, (
                "the lottery ticket is found by training (iterative pruning with "
                "rewinding); choose training mode"
            )
        if params.get("method") == "semi-structured":
            if t.device != "cuda":
                return False, (
                    "2:4 semi-structured sparsity needs a CUDA GPU with compute "
                    "capability >= 8.0 (sparse tensor cores)"
                )
            if t.cuda_capability is not None and t.cuda_capability < (8, 0):
                return False, (
                    f"2:4 sparsity needs compute capability >= 8.0, this GPU has "
                    f"{t.cuda_capability[0]}.{t.cuda_capability[1]}"
                )
        if (
            params.get("method") == "structured"
            and t.model_type
            and t.model_type
            not in ("bert", "roberta", "distilbert", "electra", "gpt2", "llama", "mistral", "qwen2")
        ):
            return False, f"structured pruning does not know the layout of {t.model_type} models"
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if params.get("method", "unstructured") in ("unstructured", "lottery"):
            return (
                "unstructured sparsity runs on dense kernels here: the zeros are still "
                "multiplied, so expect no time or energy saving (the run measures it)"
            )
        return None
