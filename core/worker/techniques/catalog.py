"""Every technique the worker can apply, loaded once (apart from registry.py: no cycle)."""

from __future__ import annotations

from wattlab.core.errors import SpecError
from wattlab.core.worker.techniques import (  # noqa: F401 - importing registers them
    compilation,
    data_reduction,
    ddp,
    distillation,
    early_exit,
    knobs,
    mixed_precision,
    power_limit,
    pruning,
    qat,
    quantization,
    rag_cache,
    runtime,
    sparse_training,
)
from wattlab.core.worker.techniques.registry import IMPLEMENTATIONS, Implementation


def implementation(name: str) -> Implementation:
    """The worker-side object for the declared technique ``name``."""
    if name not in IMPLEMENTATIONS:
        raise SpecError(f"technique {name!r} has no implementation in this worker")
    return IMPLEMENTATIONS[name]
