"""Baseline vs optimized: interleaved repeats and a verdict per metric that respects noise.

Runs go A B A B ... (baseline first in each pair) with a cool-down between runs, so slow drift
(thermal, turbo budgets, other load) hits both sides alike; the GPU temperature at each start is
kept with the run.

Verdict method (per metric): the paired ratios r_i = optimized_i / baseline_i over the n pairs
are resampled with replacement (bootstrap, 2,000 draws, fixed seed) and the median ratio's 95%
interval is taken. If the whole interval lies on the metric's good side of 1 the optimized side is
``better``; on the bad side, ``worse``; an interval that contains 1 is ``within noise``. With one
pair there is no noise estimate and the verdict says so. Deterministic metrics (model size) have
a zero-width interval, so any change is a verdict. With n = 3 the interval is the range of the
three ratios: "better" then means better in every pair.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .carbon import co2_g, cost
from .spec import RunSpec

# name -> (label, unit, lower_is_better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "energy_j": ("Energy (measured phase, gross)", "J", True),
    "energy_net_j": ("Energy net of idle", "J", True),
    "energy_kwh": ("Energy", "kWh", True),
    "energy_per_item_j": ("Energy per item", "J", True),
    "energy_per_token_j": ("Energy per token", "J", True),
    "duration_s": ("Time (measured phase)", "s", True),
    "throughput_items_s": ("Throughput", "items/s", False),
    "latency_p50_ms": ("Latency p50 (batch)", "ms", True),
    "latency_p95_ms": ("Latency p95 (batch)", "ms", True),
    "ttft_p50_ms": ("Time to first token p50", "ms", True),
    "retrieval_recall": ("Retrieval recall@k", "", False),
    "peak_mem_bytes": ("Peak memory", "bytes", True),
    "model_size_bytes": ("Model size", "bytes", True),
    "accuracy": ("Accuracy", "", False),
    "macro_f1": ("Macro-F1", "", False),
    "perplexity": ("Perplexity", "", True),
    "energy_to_target_j": ("Energy to reach quality target", "J", True),
    "co2_g": ("CO2", "g", True),
    "cost": ("Cost", "", True),
}
ENERGY_DERIVED = {
    "energy_j",
    "energy_net_j",
    "energy_kwh",
    "energy_per_item_j",
    "energy_per_token_j",
    "energy_to_target_j",
    "co2_g",
    "cost",
}


def run_metrics(
    r: dict[str, Any], carbon: dict[str, Any], quality_target: float | None = None
) -> dict[str, float | None]:
    """The comparable numbers of one session result."""
    s = r.get("session") or {}
    pe = r["measured_phase"]
    m = s.get("metrics") or {}
    thr = (s.get("throughput") or {}).get("items_per_s")
    if thr is None and s.get("items") and s.get("train_time_s"):
        thr = s["items"] / s["train_time_s"]
    lat = s.get("latency_ms") or {}
    rag = s.get("rag") or {}
    out: dict[str, float | None] = {
        "energy_j": pe["gross_j"],
        "energy_net_j": pe["net_j"],
        "energy_kwh": pe["gross_j"] / 3.6e6,
        "energy_per_item_j": r.get("energy_per_item_j"),
        "energy_per_token_j": r.get("energy_per_token_j"),
        "duration_s": pe["duration_s"],
        "throughput_items_s": thr,
        "latency_p50_ms": lat.get("p50"),
        "latency_p95_ms": lat.get("p95"),
        "peak_mem_bytes": s.get("peak_mem_bytes"),
        "model_size_bytes": (s.get("model") or {}).get("size_bytes"),
        "accuracy": m.get("accuracy"),
        "macro_f1": m.get("macro_f1"),
        "perplexity": m.get("perplexity"),
        "co2_g": co2_g(pe["gross_j"], carbon),
        "cost": cost(pe["gross_j"], carbon),
        "energy_to_target_j": None,
        "ttft_p50_ms": ((rag.get("ttft_ms") or {}).get("all") or {}).get("p50"),
        "retrieval_recall": rag.get("retrieval_recall"),
    }
    if quality_target is not None:
        for e in s.get("epochs") or []:
            if (e.get("accuracy") or 0) >= quality_target:
                out["energy_to_target_j"] = e.get("energy_j_so_far")
                break
    return out


@dataclass
class Verdict:
    metric: str
    label: str
    unit: str
    baseline_median: float | None
    optimized_median: float | None
    baseline_spread: tuple[float, float] | None
    optimized_spread: tuple[float, float] | None
    delta: float | None
    delta_pct: float | None
    ratio_ci: tuple[float, float] | None
    verdict: str  # better | worse | within noise | no change | single run | unknown
    source: str | None = None  # measured / integrated / estimated, for energy-derived metrics


def paired_verdict(
    base: list[float | None],
    opt: list[float | None],
    lower_is_better: bool,
    draws: int = 2000,
    seed: int = 0,
) -> tuple[str, tuple[float, float] | None]:
    pairs = [(b, o) for b, o in zip(base, opt, strict=True) if b is not None and o is not None]
    if not pairs:
        return "unknown", None
    if all(b == o for b, o in pairs):
        return "no change", (1.0, 1.0)
    if any(b == 0 for b, _ in pairs):
        return "unknown", None
    ratios = np.array([o / b for b, o in pairs])
    if len(ratios) < 2:
        return "single run", (float(ratios[0]), float(ratios[0]))
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(ratios, size=(draws, len(ratios)), replace=True), axis=1)
    lo, hi = (float(x) for x in np.percentile(meds, [2.5, 97.5]))
    if hi < 1.0:
        v = "better" if lower_is_better else "worse"
    elif lo > 1.0:
        v = "worse" if lower_is_better else "better"
    else:
        v = "within noise"
    return v, (lo, hi)


def verdicts(
    base_runs: list[dict[str, Any]],
    opt_runs: list[dict[str, Any]],
    carbon: dict,
    quality_target: float | None = None,
) -> list[Verdict]:
    bm = [run_metrics(r, carbon, quality_target) for r in base_runs]
    om = [run_metrics(r, carbon, quality_target) for r in opt_runs]
    labels = {r["measured_phase"]["label"] for r in base_runs + opt_runs}
    from .sensors.base import weakest_label

    energy_label = weakest_label([x for x in labels if x])
    out = []
    for key, (label, unit, lower) in METRICS.items():
        b = [m[key] for m in bm]
        o = [m[key] for m in om]
        bv = [x for x in b if x is not None]
        ov = [x for x in o if x is not None]
        if not bv and not ov:
            continue
        bmed = statistics.median(bv) if bv else None
        omed = statistics.median(ov) if ov else None
        v, ci = paired_verdict(b, o, lower)
        delta = omed - bmed if bmed is not None and omed is not None else None
        out.append(
            Verdict(
                key,
                label,
                unit if key != "cost" else carbon.get("currency", ""),
                bmed,
                omed,
                (min(bv), max(bv)) if bv else None,
                (min(ov), max(ov)) if ov else None,
                delta,
                100.0 * delta / bmed if delta is not None and bmed else None,
                ci,
                v,
                energy_label if key in ENERGY_DERIVED else None,
            )
        )
    return out


def headline(vs: list[Verdict], technique_text: str, per: str = "item") -> str:
    by = {v.metric: v for v in vs}
    e = by.get("energy_per_item_j") or by.get("energy_j")
    q = by.get("accuracy") or by.get("perplexity")
    if e is None or e.delta_pct is None:
        return f"{technique_text}: energy could not be compared."
    change = "less" if e.delta_pct < 0 else "more"
    s = (
        f"{technique_text} used {abs(e.delta_pct):.1f}% {change} energy per {per} than the "
        f"baseline ({e.verdict}; {e.source})"
    )
    if q is not None and q.delta is not None:
        if q.metric == "accuracy":
            s += f", accuracy {q.delta * 100:+.1f} points ({q.verdict})"
        else:
            s += f", perplexity {q.delta:+.2f} ({q.verdict})"
    return s + "."


def describe_techniques(spec: RunSpec) -> str:
    """``name:k=v`` per technique, listing only parameters that differ from their defaults:
    the GUI sends every parameter, and a headline must stay readable."""
    if not spec.techniques:
        return "no technique"
    from .errors import SpecError
    from .techniques.base import get

    parts = []
    for t in spec.techniques:
        raw = t.get("params") or {}
        try:
            tech = get(t["name"])
            typed = tech.parse_params(raw)
            defaults = {p.name: p.default for p in tech.params}
            raw = {k: v for k, v in raw.items() if typed.get(k) != defaults.get(k)}
        except SpecError:
            pass  # a stored spec from another version: show it as it was given
        params = ",".join(f"{k}={v}" for k, v in raw.items())
        parts.append(t["name"] + (f":{params}" if params else ""))
    return " + ".join(parts)


RunFn = Callable[[RunSpec, str, int], dict[str, Any]]


def run_interleaved(
    base: RunSpec,
    opt: RunSpec,
    repeats: int,
    run: RunFn,
    cooldown_s: float = 3.0,
    on_progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A B A B ...; ``run(spec, side, index)`` measures one session and returns its result."""
    if repeats < 1:
        from .errors import SpecError

        raise SpecError(f"repeats must be at least 1, got {repeats}")
    base_runs: list[dict[str, Any]] = []
    opt_runs: list[dict[str, Any]] = []
    for i in range(repeats):
        for side, spec, sink in (("baseline", base, base_runs), ("optimized", opt, opt_runs)):
            if should_stop():
                return base_runs, opt_runs
            if base_runs or opt_runs:
                time.sleep(cooldown_s)
            if on_progress:
                on_progress(f"{side} run {i + 1}/{repeats}")
            sink.append(run(dataclasses.replace(spec, label=f"{side} {i + 1}/{repeats}"), side, i))
    return base_runs, opt_runs
