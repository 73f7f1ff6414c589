"""Every declared technique, loaded once: what the GUI lists, the CLI validates and the worker
looks up. Kept apart from base.py so the declarations can import base without a cycle."""

from __future__ import annotations

from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.techniques import (  # noqa: F401 - importing registers them
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
from wattlab.core.techniques.base import REGISTRY, Technique


def get(name: str) -> Technique:
    if name not in REGISTRY:
        raise SpecError(f"unknown technique {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def all_techniques() -> list[Technique]:
    return sorted(REGISTRY.values(), key=lambda t: t.order)


def parse_cli(text: str) -> dict[str, Any]:
    """``"pruning:method=structured,amount=0.3"`` -> ``{"name": ..., "params": {...}}``.
    Values are kept as strings here; ``Technique.parse_params`` types and checks them."""
    name, _, rest = text.strip().partition(":")
    if not name:
        raise SpecError(f"empty technique in {text!r}")
    params: dict[str, str] = {}
    last: str | None = None
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq and last is not None:
            # "layers=embed,query,prefix": a bare item continues the previous list value.
            params[last] += "," + part
            continue
        if not eq or not k.strip():
            raise SpecError(f"technique parameter {part!r} in {text!r} is not KEY=VALUE")
        last = k.strip()
        if last in params:  # the second value would silently win
            raise SpecError(f"{name}: {last} is given twice in {text!r}; give it once")
        params[last] = v.strip()
    get(name)
    return {"name": name, "params": params}
