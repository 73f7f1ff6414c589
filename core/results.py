"""Typed results: what a run and a comparison produced, and the schema of the stored JSON.

The store keeps each result as JSON (``to_dict``); everything that reads a result back goes
through ``from_dict``, which is tolerant of rows stored before a field existed (it gets its
default, never a KeyError) and keeps every key it does not model in ``extra`` so that a round trip
loses nothing. A field read by attribute fails loudly in the type checker when it is renamed,
where a string key would silently show "-" in a report.

Schema versions: 1 = results stored before this module (no ``schema_version`` key); 2 = the same
keys plus ``schema_version``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 2
# The scalar figures of a session's ``fairness`` (--sensitive-column; models/fairness.py) that
# comparisons judge like any other metric; fractions in [0, 1], as accuracy is.
FAIRNESS_METRICS = (
    "worst_group_accuracy",
    "accuracy_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "disparate_impact",
)


def _known(cls: type, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``d`` into the fields ``cls`` models and the rest."""
    names = {f.name for f in fields(cls)} - {"extra", "keys"}
    return {k: v for k, v in d.items() if k in names}, {
        k: v for k, v in d.items() if k not in names
    }


@dataclass(frozen=True)
class PhaseEnergy:
    """Energy spent over named phases (the measured window, or one phase such as RAG's index):
    gross, net of idle over the time each source had readings, and the weakest counted label."""

    phases: tuple[str, ...]
    duration_s: float
    gross_j: float
    net_j: float | None  # None: no idle baseline, or it came out negative (a warning says so)
    label: str | None  # measured | integrated | estimated | attributed; None: nothing counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases": list(self.phases),
            "duration_s": self.duration_s,
            "gross_j": self.gross_j,
            "net_j": self.net_j,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PhaseEnergy | None:
        if not d:
            return None
        return cls(
            tuple(d.get("phases") or ()),
            float(d.get("duration_s") or 0.0),
            float(d.get("gross_j") or 0.0),
            d.get("net_j"),
            d.get("label"),
        )


@dataclass(frozen=True)
class SessionSummary:
    """What the worker reported about its own work (items, tokens, quality, the model)."""

    items: int | None = None
    tokens: int | None = None
    cancelled: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    techniques: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # The keys the worker actually sent, in its order: to_dict gives back exactly those.
    keys: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        typed = {
            k: getattr(self, k)
            for k in ("items", "tokens", "cancelled", "metrics", "model", "techniques")
        }
        merged = {**self.extra, **typed}
        order = self.keys or tuple(k for k, v in merged.items() if v not in (None, {}, [], False))
        return {k: merged[k] for k in order if k in merged}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SessionSummary:
        known, rest = _known(cls, d or {})
        for name in ("metrics", "model"):
            known[name] = known.get(name) or {}
        known["techniques"] = known.get("techniques") or []
        known["cancelled"] = bool(known.get("cancelled"))
        return cls(**known, extra=rest, keys=tuple((d or {}).keys()))


@dataclass(frozen=True)
class RunResult:
    """One stored run: its status, the measured window's energy and the figures derived from
    it (each per-item figure divides the measured window's energy by the items it processed)."""

    run_id: int
    status: str  # completed | cancelled | failed | interrupted
    duration_s: float = 0.0
    measured_phase: PhaseEnergy | None = None
    throughput_items_per_s: float | None = None
    energy_per_item_j: float | None = None
    energy_per_token_j: float | None = None
    net_energy_per_item_j: float | None = None
    warnings: list[str] = field(default_factory=list)
    energy: list[dict[str, Any]] = field(default_factory=list)  # SourceEnergy.as_dict() rows
    spec: dict[str, Any] = field(default_factory=dict)
    session: SessionSummary = field(default_factory=SessionSummary)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def energy_label(self) -> str | None:
        return self.measured_phase.label if self.measured_phase else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("extra", "measured_phase", "session")
        }
        if self.measured_phase is not None:
            d["measured_phase"] = self.measured_phase.to_dict()
        if self.session != SessionSummary() or "session" in self.extra:
            d["session"] = self.session.to_dict()
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        known, rest = _known(cls, d)
        known["measured_phase"] = PhaseEnergy.from_dict(known.get("measured_phase"))
        if "session" in known:
            known["session"] = SessionSummary.from_dict(known["session"])
        known["schema_version"] = int(known.get("schema_version") or 1)
        known["warnings"] = list(known.get("warnings") or [])
        known["energy"] = list(known.get("energy") or [])
        known["spec"] = dict(known.get("spec") or {})
        known.setdefault("run_id", -1)
        known.setdefault("status", "unknown")
        return cls(**known, extra=rest)


@dataclass
class Verdict:
    """One metric of a comparison: medians, the paired interval and what it allows us to say."""

    metric: str
    label: str
    unit: str
    baseline_median: float | None
    optimized_median: float | None
    baseline_spread: tuple[float, float] | None
    optimized_spread: tuple[float, float] | None
    delta: float | None
    delta_pct: float | None  # the geometric-mean paired change where pairs exist
    ratio_ci: tuple[float, float] | None
    verdict: str  # better | worse | no meaningful change | inconclusive | within noise |
    #               no change | too few repeats | unknown
    source: str | None = None  # measured / integrated / estimated, for energy-derived metrics
    pairs: int = 0
    role: str = "descriptive"  # primary | descriptive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        known, _ = _known(cls, d)
        for name in ("baseline_spread", "optimized_spread", "ratio_ci"):
            v = known.get(name)
            known[name] = tuple(v) if v is not None else None
        for name in (
            "baseline_median",
            "optimized_median",
            "delta",
            "delta_pct",
            "baseline_spread",
            "optimized_spread",
            "ratio_ci",
        ):
            known.setdefault(name, None)
        known.setdefault("label", known.get("metric", ""))
        known.setdefault("unit", "")
        known.setdefault("verdict", "unknown")
        return cls(**known)


# The complete pairs a verdict needs (fewer: "too few repeats"): here, not in run.stats, so the
# report side reads the same number without importing the orchestration side.
MIN_PAIRS = 3
UNTRAINED_VERDICT = "untrained head: no verdict"
# What core.models.hf writes in a model's notes when it had to add a fresh classification head.
UNTRAINED_HEAD_MARK = "untrained until you train it"
# What that note and every caveat about it point to: train the head once, keep it, measure that.
UNTRAINED_HEAD_FIX = (
    "train it once and keep it with `wattlab run --mode train --save-model DIR` on this model "
    "and dataset, then measure `--model DIR`"
)


@dataclass(frozen=True)
class Comparison:
    """Baseline vs optimized: the verdicts, the runs they came from, and how they were judged."""

    comparison_id: str
    headline: str
    verdicts: list[Verdict]
    per_run: list[dict[str, Any]] = field(default_factory=list)
    aa: bool = False
    pairs_completed: int = 0
    statistics: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra",)
        }
        d["verdicts"] = [v.to_dict() for v in self.verdicts]
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        known, rest = _known(cls, d)
        known["verdicts"] = [Verdict.from_dict(v) for v in known.get("verdicts") or []]
        known["comparison_id"] = str(known.get("comparison_id") or "")
        known.setdefault("headline", "")
        known["schema_version"] = int(known.get("schema_version") or 1)
        return cls(**known, extra=rest)
