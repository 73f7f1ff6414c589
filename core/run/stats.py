"""Baseline vs optimized: counterbalanced repeats and a verdict per metric that respects noise.

Order: pair k runs A B when k is even and B A when k is odd (A B B A A B ...), with a cool-down
between runs, so slow drift (thermal, turbo budgets, other load) and first-run effects do not
line up with one side; the order of every run is recorded.

Verdict method (per metric), chosen to hold its coverage at small n: the paired ratios
r_i = optimized_i / baseline_i are taken on a log scale, and a Student-t 95% interval of their
mean gives an interval for the geometric-mean ratio. Under log-normal noise its coverage is
exact at any n >= 2 (a percentile bootstrap of 3 pairs, the previous method, covered 76%: it
called "better/worse" 24% of the time when nothing changed).
- Below ``MIN_PAIRS`` pairs: "too few repeats" (no verdict), unless the metric is
  deterministic (every pair gives the same ratio, e.g. model size).
- A practical-equivalence margin (default 3%): an interval inside 1 +/- margin is "no
  meaningful change".
- Interval entirely beyond the margin: "better" / "worse" (a minimal-effect test: the change
  exceeds the margin with 95% confidence, so with no real change a verdict comes out well under
  5% of the time).
- Interval off 1 but reaching into the margin: "inconclusive" (real, size not settled).
- Otherwise: "within noise".
Energy per item (per token where there are no items) is the primary metric. Every other metric
gets the same interval but is descriptive: no correction for multiple comparisons is applied,
so read their verdicts as a guide, not a test.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.measure.carbon import co2_g, cost
from wattlab.core.results import FAIRNESS_METRICS, RunResult, Verdict
from wattlab.core.spec import RunSpec

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
    # --sensitive-column: does the technique cost one group more than another?
    "worst_group_accuracy": ("Worst-group accuracy", "", False),
    "accuracy_gap": ("Accuracy gap, best - worst group", "", True),
    "demographic_parity_difference": ("Demographic parity difference", "", True),
    "equalized_odds_difference": ("Equalized-odds difference", "", True),
    "disparate_impact": ("Disparate impact (parity ratio)", "", False),
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


def fairness_metrics(session: dict[str, Any]) -> dict[str, float | None]:
    """The comparable fairness figures of a session (``FAIRNESS_METRICS``); each None when the
    run had no --sensitive-column, or the figure was undefined: unknown, never 0."""
    f = session.get("fairness")
    f = f if isinstance(f, dict) else {}
    out: dict[str, float | None] = {}
    for key in FAIRNESS_METRICS:
        v = f.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            v = None
        out[key] = None if v is None else float(v)
    return out


def run_metrics(
    r: dict[str, Any], carbon: dict[str, Any], quality_target: float | None = None
) -> dict[str, float | None]:
    """The comparable numbers of one session result."""
    s = r.get("session") or {}
    pe = RunResult.from_dict(r).measured_phase
    # A run that stopped before its measured phase has no energy figures: unknown, never 0.
    gross_j = pe.gross_j if pe else None
    m = s.get("metrics") or {}
    # One window for every figure: the measured phase (older stored runs: the loop's own time).
    thr = r.get("throughput_items_per_s") or (s.get("throughput") or {}).get("items_per_s")
    if thr is None and s.get("items") and s.get("train_time_s"):
        thr = s["items"] / s["train_time_s"]
    lat = s.get("latency_ms") or {}
    rag = s.get("rag") or {}
    out: dict[str, float | None] = {
        "energy_j": gross_j,
        "energy_net_j": pe.net_j if pe else None,
        "energy_kwh": gross_j / 3.6e6 if gross_j is not None else None,
        "energy_per_item_j": r.get("energy_per_item_j"),
        "energy_per_token_j": r.get("energy_per_token_j"),
        "duration_s": pe.duration_s if pe else None,
        "throughput_items_s": thr,
        "latency_p50_ms": lat.get("p50"),
        "latency_p95_ms": lat.get("p95"),
        "peak_mem_bytes": s.get("peak_mem_bytes"),
        "model_size_bytes": (s.get("model") or {}).get("size_bytes"),
        "accuracy": m.get("accuracy"),
        "macro_f1": m.get("macro_f1"),
        "perplexity": m.get("perplexity"),
        "co2_g": co2_g(gross_j, carbon),
        "cost": cost(gross_j, carbon),
        "energy_to_target_j": None,
        "ttft_p50_ms": ((rag.get("ttft_ms") or {}).get("all") or {}).get("p50"),
        "retrieval_recall": rag.get("retrieval_recall"),
        **fairness_metrics(s),
    }
    if quality_target is not None:
        for e in s.get("epochs") or []:
            if (e.get("accuracy") or 0) >= quality_target:
                out["energy_to_target_j"] = e.get("energy_j_so_far")
                break
    return out


from wattlab.core.results import MIN_PAIRS  # noqa: E402 - re-exported for callers

DEFAULT_MARGIN = 0.03
DEFAULT_REPEATS = 5
PRIMARY_METRICS = ("energy_per_item_j", "energy_per_token_j", "energy_j")
METHOD_TEXT = (
    "95% Student-t interval of the mean log paired ratio (optimized/baseline), i.e. of the "
    "geometric-mean ratio; counterbalanced order (A B, B A, ...); verdict only from {min} pairs; "
    "'better'/'worse' only when the whole interval lies beyond +/-{margin:g}%, 'no meaningful "
    "change' when it lies inside, 'inconclusive' in between. Energy per item is the primary "
    "metric; the others are descriptive (no multiple-comparison correction)."
)

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile_975(df: int) -> float:
    """Student-t 0.975 quantile: the table to 30 df, then the Cornish-Fisher expansion."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class ComparisonProgress:
    """Which side of which pair is about to run: the GUI switches its live plot on ``side``
    and the CLI prints ``text``, so neither has to parse the other's words."""

    side: str  # baseline | optimized
    pair_index: int  # 0-based
    pairs: int
    rerun_of: int | None = None  # re-running a disturbed pair (0-based index of that pair)

    @property
    def text(self) -> str:
        again = f" (re-run of pair {self.rerun_of + 1})" if self.rerun_of is not None else ""
        return f"{self.side} run {self.pair_index + 1}/{self.pairs}{again}"


@dataclass
class Interval:
    verdict: str
    ci: tuple[float, float] | None = None
    ratio: float | None = None  # geometric mean of the paired ratios
    pairs: int = 0


def _decide(lo: float, hi: float, lower_is_better: bool, margin: float) -> str:
    """A minimal-effect rule: "better"/"worse" only when the whole interval lies beyond the
    margin, so a verdict says the change exceeds the margin with 95% confidence (and a change
    inside the margin, however real, is never called better)."""
    if lo >= 1 - margin and hi <= 1 + margin:
        return "no meaningful change"
    if hi < 1 - margin or lo > 1 + margin:
        return "better" if (hi < 1.0) == lower_is_better else "worse"
    if hi < 1.0 or lo > 1.0:
        return "inconclusive"  # a real change, not shown to exceed the margin
    return "within noise"


def paired_interval(
    base: list[float | None],
    opt: list[float | None],
    lower_is_better: bool,
    margin: float = DEFAULT_MARGIN,
    min_pairs: int = MIN_PAIRS,
) -> Interval:
    pairs = [(b, o) for b, o in zip(base, opt, strict=True) if b is not None and o is not None]
    if not pairs:
        return Interval("unknown")
    if all(b == o for b, o in pairs):
        return Interval("no change", (1.0, 1.0), 1.0, len(pairs))
    if any(b <= 0 or o <= 0 for b, o in pairs):
        return Interval("unknown", pairs=len(pairs))
    logs = [math.log(o / b) for b, o in pairs]
    n = len(logs)
    mean = sum(logs) / n
    sd = statistics.stdev(logs) if n > 1 else 0.0
    ratio = math.exp(mean)
    deterministic = n >= 2 and max(logs) - min(logs) < 1e-12
    if deterministic:
        return Interval(_decide(ratio, ratio, lower_is_better, margin), (ratio, ratio), ratio, n)
    if n < min_pairs:
        return Interval("too few repeats", None, ratio, n)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    lo, hi = math.exp(mean - half), math.exp(mean + half)
    return Interval(_decide(lo, hi, lower_is_better, margin), (lo, hi), ratio, n)


def paired_verdict(
    base: list[float | None],
    opt: list[float | None],
    lower_is_better: bool,
    margin: float = DEFAULT_MARGIN,
) -> tuple[str, tuple[float, float] | None]:
    iv = paired_interval(base, opt, lower_is_better, margin)
    return iv.verdict, iv.ci


def primary_metric(vs: list[Verdict]) -> Verdict | None:
    by = {v.metric: v for v in vs}
    return next((by[m] for m in PRIMARY_METRICS if m in by), None)


def verdicts(
    base_runs: list[dict[str, Any]],
    opt_runs: list[dict[str, Any]],
    carbon: dict,
    quality_target: float | None = None,
    margin: float = DEFAULT_MARGIN,
) -> list[Verdict]:
    bm = [run_metrics(r, carbon, quality_target) for r in base_runs]
    om = [run_metrics(r, carbon, quality_target) for r in opt_runs]
    labels = {r["measured_phase"]["label"] for r in base_runs + opt_runs}
    from wattlab.core.measure.sensors.base import weakest_label

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
        iv = paired_interval(b, o, lower, margin)
        delta = omed - bmed if bmed is not None and omed is not None else None
        pct: float | None
        if iv.ratio is not None:
            pct = 100.0 * (iv.ratio - 1.0)
        else:
            pct = 100.0 * delta / bmed if delta is not None and bmed else None
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
                pct,
                iv.ci,
                iv.verdict,
                energy_label if key in ENERGY_DERIVED else None,
                iv.pairs,
            )
        )
    main = primary_metric(out)
    if main is not None:
        main.role = "primary"
    return out


def headline(vs: list[Verdict], technique_text: str, per: str = "item", aa: bool = False) -> str:
    """One sentence a reader can quote: the primary metric's change and what it is worth."""
    by = {v.metric: v for v in vs}
    e = primary_metric(vs)
    q = by.get("accuracy") or by.get("perplexity")
    if e is None or e.delta_pct is None:
        return f"{technique_text}: energy could not be compared."
    pct, src, n = e.delta_pct, e.source, e.pairs
    ci = (
        f"95% interval {100 * (e.ratio_ci[0] - 1):+.1f}% to {100 * (e.ratio_ci[1] - 1):+.1f}%"
        if e.ratio_ci
        else "no interval"
    )
    if aa:
        return (
            f"A/A check (the same spec on both sides, {n} pairs): energy per {per} {pct:+.1f}% "
            f"({e.verdict}; {ci}; {src}). That interval is this machine's noise floor: smaller "
            "savings cannot be told apart from noise here."
        )
    if e.verdict in ("better", "worse"):
        change = "less" if pct < 0 else "more"
        s = (
            f"{technique_text} used {abs(pct):.1f}% {change} energy per {per} than the baseline "
            f"({e.verdict}; {ci}; {src})"
        )
    elif e.verdict == "too few repeats":
        s = (
            f"{technique_text}: energy per {per} {pct:+.1f}% over {n} pair(s), too few repeats "
            f"for a verdict (at least {MIN_PAIRS}; {src})"
        )
    elif e.verdict == "inconclusive":
        s = (
            f"{technique_text}: energy per {per} {pct:+.1f}% ({ci}; {src}): a real change, not "
            "shown to exceed the practical margin; more pairs would settle its size"
        )
    elif e.verdict == "within noise":
        s = (
            f"{technique_text}: energy per {per} {pct:+.1f}%, within this machine's noise "
            f"({ci}; {src}): no saving can be claimed on this hardware"
        )
    else:
        s = (
            f"{technique_text} made no meaningful change to energy per {per} ({pct:+.1f}%, "
            f"{e.verdict}; {src}): it saves nothing worth having on this hardware"
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
    from wattlab.core.errors import SpecError
    from wattlab.core.techniques.catalog import get

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
SIDES = ("baseline", "optimized")


def pair_order(k: int) -> tuple[str, str]:
    """A B for even pairs, B A for odd ones: order and drift cancel across pairs."""
    return SIDES if k % 2 == 0 else (SIDES[1], SIDES[0])


def is_disturbed(result: dict[str, Any] | None) -> bool:
    return bool(((result or {}).get("contention") or {}).get("disturbed"))


@dataclass
class PairRun:
    """One baseline/optimized pair, in the order it ran."""

    index: int
    order: tuple[str, str]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    rerun_of: int | None = None
    replaced_by: int | None = None

    @property
    def complete(self) -> bool:
        """Both sides ran to the end: a cancelled run measured only part of the work, and a
        pair holding one would compare a whole run against a fragment."""
        return all(
            side in self.runs and self.runs[side].get("status", "completed") == "completed"
            for side in SIDES
        )

    @property
    def disturbed(self) -> bool:
        return any(is_disturbed(r) for r in self.runs.values())


def run_interleaved(
    base: RunSpec,
    opt: RunSpec,
    repeats: int,
    run: RunFn,
    cooldown_s: float = 3.0,
    on_progress: Callable[[ComparisonProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    rerun_disturbed: bool = False,
) -> list[PairRun]:
    """Counterbalanced pairs; ``run(spec, side, pair_index)`` measures one session. With
    ``rerun_disturbed`` each pair that other processes disturbed is run once more at the end
    and the new pair takes its place in the verdicts (the disturbed one stays recorded)."""
    if repeats < 1:
        from wattlab.core.errors import SpecError

        raise SpecError(f"repeats must be at least 1, got {repeats}")
    specs = {"baseline": base, "optimized": opt}
    pairs: list[PairRun] = []
    started = [False]

    def one_pair(k: int, of: int, rerun_of: int | None = None) -> PairRun:
        pr = PairRun(k, pair_order(k), rerun_of=rerun_of)
        pairs.append(pr)
        for side in pr.order:
            if should_stop():
                return pr
            if started[0]:
                time.sleep(cooldown_s)
            started[0] = True
            if on_progress:
                on_progress(ComparisonProgress(side, k, of, rerun_of))
            label = f"{side} {k + 1}/{of}" + (
                f" (re-run of pair {rerun_of + 1})" if rerun_of is not None else ""
            )
            pr.runs[side] = run(dataclasses.replace(specs[side], label=label), side, k)
        return pr

    for k in range(repeats):
        if not one_pair(k, repeats).complete:
            return pairs
    if rerun_disturbed:
        for pr in [p for p in pairs if p.complete and p.disturbed]:
            new = one_pair(len(pairs), len(pairs) + 1, rerun_of=pr.index)
            if not new.complete:
                break
            pr.replaced_by = new.index
    return pairs
