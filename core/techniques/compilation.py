"""Compilation: ``torch.compile`` (TorchDynamo capture + Inductor kernels) of the PyTorch model.

The model is compiled in place (``nn.Module.compile``): the session's inference ``Forward``, the
training loop and evaluation call the same object, so they all run the compiled graph, and the
model keeps its state-dict keys (saving it writes the same files as the eager model).

Compiling is slow (tens of seconds on a CPU): it is triggered inside the ``prepare`` phase by a
warm-up pass on a real batch of the training split (forward and backward when training), so the
compile time is reported apart from the measured work. A shape the warm-up did not see can
recompile later, possibly inside the measured phase: the model is compiled with dynamic shapes by
default (padded batches change their sequence length every batch), batches of one item are
warmed up too when the session will meet one, and every compile after the warm-up is counted
in the report.

- ``mode=default``: Inductor's fused kernels.
- ``mode=reduce-overhead``: adds CUDA graphs (kernel-launch overhead removed); CUDA only.
- ``mode=max-autotune``: benchmarks kernel variants while compiling (much longer compile).

Inductor needs a C++ compiler on the CPU and Triton on CUDA; ONNX models and RAG sessions are
refused (there is no PyTorch module to compile).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

from wattlab.core.techniques.base import Param, Target, Technique, register


def cpu_compiler_missing() -> str | None:
    """Why Inductor cannot build CPU kernels here (it compiles C++ with ``$CXX`` or g++)."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return (
            f"torch.compile builds C++ kernels for the CPU and needs a C++ compiler ({cxx} was "
            "not found; install g++ or set CXX)"
        )
    return None


def triton_missing() -> str | None:
    """Why Inductor cannot build GPU kernels here (found without importing torch)."""
    if importlib.util.find_spec("triton") is None:
        return "torch.compile builds GPU kernels with Triton, which is not installed"
    return None


@register
class Compilation(Technique):
    name = "compile"
    label = "Compilation (torch.compile)"
    order = 90  # last among model changes: it compiles the model the others left
    summary = "Compile the model with torch.compile (Inductor); compile time reported apart"
    params = (
        Param(
            "mode",
            str,
            "default",
            "default, reduce-overhead (CUDA graphs) or max-autotune (slow to compile)",
            choices=("default", "reduce-overhead", "max-autotune"),
        ),
        Param(
            "dynamic",
            bool,
            True,
            "true: compile for any batch size and sequence length at once, so new shapes do "
            "not recompile inside the measured phase; false: torch's default (compiled for the "
            "first shapes, one recompile when a shape changes)",
        ),
    )

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        if t.mode == "rag":
            return False, "torch.compile applies to a PyTorch model, not to the RAG pipeline"
        if t.model_kind == "onnx":
            return False, "torch.compile compiles PyTorch models; an ONNX file has no module"
        if params.get("mode") == "reduce-overhead" and t.device != "cuda":
            return False, (
                "mode=reduce-overhead records CUDA graphs, which exist only on NVIDIA GPUs; "
                "use mode=default on the CPU"
            )
        missing = cpu_compiler_missing() if t.device == "cpu" else triton_missing()
        if missing:
            return False, missing
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        if params.get("mode") == "max-autotune":
            return (
                "max-autotune benchmarks kernel variants while compiling: preparation takes "
                "much longer (it is reported apart from the measured work)"
            )
        if not params.get("dynamic", True):
            return (
                "dynamic=false compiles for the warm-up's shapes first: the first new sequence "
                "length recompiles, possibly inside the measured phase (the report counts it)"
            )
        return None
