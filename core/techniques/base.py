"""The common protocol of every technique, its parameters, and the registry.

A technique declares what it applies to (``applicable`` returns a reason when it does not, so the
GUI can grey it out with that reason as a tooltip), its typed parameters with ranges, and an
``apply`` that changes the loaded model for real and returns a report of what it changed. Its
effect on energy, time and quality is never claimed by the technique itself: it is measured by
running the session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wattlab.core.errors import SpecError


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, raw: Any, technique: str) -> Any:
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                v: Any = raw.lower() in ("1", "true", "yes")
            elif self.type is tuple:
                parts = raw.replace(",", "+").split("+") if isinstance(raw, str) else raw
                v = tuple(x.strip() for x in parts if x.strip())
            else:
                v = self.type(raw)
        except (TypeError, ValueError, OverflowError):
            raise SpecError(
                f"{technique}: {self.name} must be a {self.type.__name__}, got {raw!r}"
            ) from None
        if isinstance(v, float) and not math.isfinite(v):  # nan passes every range comparison
            raise SpecError(f"{technique}: {self.name} must be a finite number, got {raw!r}")
        if self.choices is not None:
            vals = v if isinstance(v, tuple) else (v,)
            bad = [x for x in vals if x not in self.choices]
            if bad:
                raise SpecError(
                    f"{technique}: {self.name} must be one of "
                    f"{', '.join(self.choices)}, got {', '.join(map(str, bad))}"
                )
        if self.min is not None and v < self.min or self.max is not None and v > self.max:
            raise SpecError(
                f"{technique}: {self.name} must be between {self.min} and {self.max}, got {v}"
            )
        return v


@dataclass
class Target:
    """What a technique is asked about before it runs (no torch needed)."""

    mode: str  # train | infer
    device: str  # cpu | cuda
    model_kind: str  # hf | onnx | demo
    task: str | None = None  # classify | causal-lm | None (unknown yet)
    model_type: str | None = None  # config.model_type, e.g. bert, gpt2
    cuda_capability: tuple[int, int] | None = None


@dataclass
class Applied:
    """What ``apply`` did, stored with the run."""

    name: str
    params: dict[str, Any]
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "description": self.description,
            "details": self.details,
            "warnings": self.warnings,
        }


class Technique:
    name: ClassVar[str]
    label: ClassVar[str]
    order: ClassVar[int]  # composition order: lower runs first
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()

    def applicable(self, t: Target, params: dict[str, Any]) -> tuple[bool, str | None]:
        return True, None

    def warning(self, t: Target, params: dict[str, Any]) -> str | None:
        """Said up front when the technique runs but the hardware is unlikely to reward it."""
        return None

    def spec_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """RunSpec fields this technique sets for its session (a training knob such as
        ``grad-accum:steps=4`` sets ``grad_accum``): applied by the worker before the model and
        data load, so the session runs exactly as if the user had given those flags."""
        return {}

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        known = {p.name: p for p in self.params}
        unknown = set(raw) - set(known)
        if unknown:
            raise SpecError(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(known) or 'none'}"
            )
        return {
            n: (p.parse(raw[n], self.name) if n in raw else p.default) for n, p in known.items()
        }


REGISTRY: dict[str, Technique] = {}


def register(cls: type[Technique]) -> type[Technique]:
    REGISTRY[cls.name] = cls()
    return cls
