"""What a sweep measures: the candidate technique sets, the ones refused with their reason, and
the order of each round.

``--auto`` builds the candidates from every technique variant worth measuring plus pairs that
compose, and keeps only those the same preflight as ``wattlab run`` accepts for this model,
mode and device: a refused candidate is listed with preflight's own reason, never silently
dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.errors import SpecError
from wattlab.core.spec import RunSpec

BASELINE = "baseline"

# One variant per distinct kernel path a technique offers; parameters the user tunes (amounts,
# thresholds) stay at their defaults, since a sweep is a first map of what pays on this machine.
AUTO_SINGLE: tuple[str, ...] = (
    "mixed-precision:dtype=bf16,mode=cast",
    "mixed-precision:dtype=bf16,mode=autocast",
    "mixed-precision:dtype=fp16,mode=cast",
    "onnx-runtime",
    "quantization:backend=ort",
    "quantization:backend=ort,mode=static",
    "quantization:backend=torch",
    "quantization:backend=torchao",
    "pruning:method=unstructured,amount=0.3",
    "pruning:method=structured,amount=0.3",
    "pruning:method=semi-structured",
    "early-exit",
)
# Pairs that compose (compose.resolve accepts them) and that a user would try together: a
# smaller model made cheaper again, or an exit that runs on cheaper layers.
AUTO_PAIRS: tuple[tuple[str, str], ...] = (
    ("pruning:method=structured,amount=0.3", "mixed-precision:dtype=bf16,mode=cast"),
    ("pruning:method=structured,amount=0.3", "quantization:backend=ort"),
    ("pruning:method=structured,amount=0.3", "early-exit"),
    ("mixed-precision:dtype=bf16,mode=cast", "early-exit"),
    ("pruning:method=structured,amount=0.3", "quantization:backend=torchao"),
)
# fp16 on a CPU runs through slow emulation in most kernels: measured only where it is native.
GPU_ONLY = {"mixed-precision:dtype=fp16,mode=cast"}


@dataclass(frozen=True)
class Candidate:
    """One technique set of the sweep. ``key`` is its text as the CLI takes it (unique)."""

    key: str
    texts: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def spec(self, base: RunSpec) -> RunSpec:
        from wattlab.core.techniques.catalog import parse_cli

        return dataclasses.replace(base, techniques=tuple(parse_cli(t) for t in self.texts))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "texts": list(self.texts), "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(str(d["key"]), tuple(d["texts"]), tuple(d.get("warnings") or ()))


@dataclass(frozen=True)
class Refusal:
    """A candidate preflight refused, and its reason (shown in the table's notes)."""

    key: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason}


@dataclass
class SweepPlan:
    """Everything needed to run (or resume) a sweep; stored as the sweep row's spec."""

    base: RunSpec
    candidates: list[Candidate]
    refused: list[Refusal] = field(default_factory=list)
    repeats: int = 5
    cooldown_s: float = 2.0
    margin: float = 0.03
    max_accuracy_loss_points: float = 0.5
    max_fairness_gap_points: float | None = None
    rerun_disturbed: bool = False
    # How the rounds are measured and priced: a resumed sweep measures its remaining rounds
    # exactly like the first ones, whatever the resuming command line says.
    measure: dict[str, float] = field(default_factory=dict)  # MeasureSettings fields
    carbon: dict[str, Any] = field(default_factory=dict)  # CarbonSettings fields

    def spec_of(self, key: str) -> RunSpec:
        if key == BASELINE:
            return self.base
        return next(c for c in self.candidates if c.key == key).spec(self.base)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "refused": [r.to_dict() for r in self.refused],
            "repeats": self.repeats,
            "cooldown_s": self.cooldown_s,
            "margin": self.margin,
            "max_accuracy_loss_points": self.max_accuracy_loss_points,
            "max_fairness_gap_points": self.max_fairness_gap_points,
            "rerun_disturbed": self.rerun_disturbed,
            "measure": dict(self.measure),
            "carbon": dict(self.carbon),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepPlan:
        return cls(
            RunSpec.from_dict(d["base"]),
            [Candidate.from_dict(c) for c in d["candidates"]],
            [Refusal(r["key"], r["reason"]) for r in d.get("refused") or []],
            int(d["repeats"]),
            float(d["cooldown_s"]),
            float(d["margin"]),
            float(d["max_accuracy_loss_points"]),
            d.get("max_fairness_gap_points"),
            bool(d.get("rerun_disturbed")),
            dict(d.get("measure") or {}),
            dict(d.get("carbon") or {}),
        )


def auto_texts(mode: str, device: str) -> list[tuple[str, ...]]:
    """Every single variant and composing pair worth a try; preflight then filters them."""
    singles: list[tuple[str, ...]] = [
        (t,) for t in AUTO_SINGLE if device == "cuda" or t not in GPU_ONLY
    ]
    if mode == "train":
        # Training measures autocast and pruning; the inference-only variants are refused by
        # preflight anyway, and the pairs below are inference pairs.
        return singles
    return singles + [tuple(p) for p in AUTO_PAIRS]


def candidate_key(texts: tuple[str, ...]) -> str:
    return " ".join(texts)


def build_plan(
    base: RunSpec, given: list[tuple[str, ...]], auto: bool, **settings: Any
) -> SweepPlan:
    """The candidates the user gave plus, with ``auto``, the automatic ones; each checked by
    preflight (refused ones kept with the reason), duplicates dropped, the baseline's own
    techniques cleared (the baseline is the unmodified model)."""
    from wattlab.core.run import preflight

    base = preflight.check(dataclasses.replace(base, techniques=()))  # bad input: one line
    device = preflight.target_of(base).device
    wanted = list(given) + (auto_texts(base.mode, device) if auto else [])
    plan = SweepPlan(base, [], **settings)
    seen: set[str] = set()
    for texts in given:
        _check_syntax(texts)  # a typo in what the user wrote is an error, not a refusal
    for texts in wanted:
        key = candidate_key(texts)
        if key in seen:
            continue
        seen.add(key)
        try:
            spec = Candidate(key, texts).spec(base)
            preflight.check(spec)
        except SpecError as exc:
            plan.refused.append(Refusal(key, str(exc)))
            continue
        plan.candidates.append(Candidate(key, texts, _warnings(spec)))
    return plan


def _check_syntax(texts: tuple[str, ...]) -> None:
    """Known technique names and well-formed, in-range parameters (raises SpecError)."""
    from wattlab.core.techniques.catalog import get, parse_cli

    for text in texts:
        t = parse_cli(text)
        get(t["name"]).parse_params(t["params"])


def _warnings(spec: RunSpec) -> tuple[str, ...]:
    """The techniques' own up-front warnings (e.g. sparsity on dense kernels) for the notes."""
    from wattlab.core.run import preflight
    from wattlab.core.techniques.compose import resolve

    target = preflight.target_of(spec)
    return tuple(
        w
        for tech, params in resolve(spec.techniques, target)
        if (w := tech.warning(target, params))
    )


def round_order(keys: list[str], k: int) -> list[str]:
    """Round ``k``'s order: the baseline first on even rounds and last on odd ones, and the
    candidates rotated by ``k``, so no candidate always runs next to the baseline (drift then
    widens intervals instead of biasing one candidate)."""
    cands = [x for x in keys if x != BASELINE]
    if cands:
        shift = k % len(cands)
        cands = cands[shift:] + cands[:shift]
    order = [BASELINE, *cands]
    return order if k % 2 == 0 else order[::-1]
