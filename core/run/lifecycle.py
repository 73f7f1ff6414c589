"""A model's lifecycle, train then serve, compared stage by stage (``compare --lifecycle``).

Each side's run trains (its training-time techniques), converts (what its techniques do to
deploy: QAT weights to int8, pruning masks made permanent, a distilled student kept), then serves
the trained model over the eval split (``RunSpec.lifecycle``), all in one worker, so every stage
is metered by the same sampler with its own phases. From the paired runs this module derives
what the seed papers tabulate: training energy and time, accuracy per epoch, model size, peak
memory, inference time per batch, energy per query, the total energy and CO2 at the number of
queries the user expects to serve, and the **break-even** number of queries after which a side
that costs more to train (distillation, QAT) has paid for itself.

The one-off cost is everything before serving: the techniques' preparation, training with its
evaluations, and conversion. Serving is charged per query (one eval item). Gross energy is used
throughout, as for every comparison's per-item figures; each figure keeps the weakest source
label of what it sums. The break-even is computed from the medians and, per pair, from each
pair's own runs; when the serving energies cannot be told apart (their paired interval is not a
``better``/``worse`` verdict), it is reported as undetermined rather than as a number.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wattlab.core.measure.carbon import co2_g
from wattlab.core.measure.sensors.base import weakest_label
from wattlab.core.run.client import phase_energy
from wattlab.core.run.stats import DEFAULT_MARGIN, paired_interval

# Stage -> the worker phases it spans (core/worker/runner.py and infer.py name them).
STAGES: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare",),
    "train": ("train", "eval"),
    "convert": ("convert", "warmup"),  # the deploy step, then the server's warm-up batches
    "serve": ("infer",),
}
# Phases of a lifecycle run in no stage: loading the model and data before anything, and the
# bookkeeping after each measured part (scoring, the result): named in every summary's notes.
LEFT_OUT_PHASES = ("load", "post")
ONE_OFF_STAGES = ("prepare", "train", "convert")
J_PER_KWH = 3.6e6

# (key, label, unit, lower is better) of each paired row of the lifecycle table.
ROWS: tuple[tuple[str, str, str, bool], ...] = (
    ("train_energy_j", "Training energy (prepare + train + convert)", "J", True),
    ("train_time_s", "Training time (prepare + train + convert)", "s", True),
    ("serve_energy_per_query_j", "Energy per query (serving)", "J", True),
    ("serve_batch_ms", "Inference time per batch (mean)", "ms", True),
    ("serve_accuracy", "Accuracy of the served model", "", False),
    ("serve_perplexity", "Perplexity of the served model", "", True),
    ("model_size_bytes", "Served model size", "B", True),
    ("train_peak_mem_bytes", "Peak memory, training", "B", True),
    ("serve_peak_mem_bytes", "Peak memory, serving", "B", True),
    ("total_energy_kwh", "Total energy at the deployed queries", "kWh", True),
    ("total_co2_g", "Total CO2 at the deployed queries", "g", True),
)


@dataclass(frozen=True)
class RunLifecycle:
    """One run's stages: one-off energy and time, serving energy per query and its figures."""

    stage_energy_j: dict[str, float | None]
    stage_time_s: dict[str, float]
    label: str | None
    train_energy_j: float | None
    train_time_s: float
    serve_queries: int
    serve_energy_per_query_j: float | None
    serve_batch_ms: float | None
    serve_accuracy: float | None
    serve_perplexity: float | None
    model_size_bytes: int | None
    train_peak_mem_bytes: int | None
    serve_peak_mem_bytes: int | None


def run_lifecycle(result: dict[str, Any]) -> RunLifecycle | None:
    """A lifecycle run's stage figures from its stored result; None when it did not serve
    (cancelled, diverged, or not a lifecycle run)."""
    serve = (result.get("session") or {}).get("serve")
    if not serve:
        return None
    stage_energy: dict[str, float | None] = {}
    stage_time: dict[str, float] = {}
    labels = []
    for stage, phases in STAGES.items():
        pe = phase_energy(result, phases)
        stage_time[stage] = pe.duration_s
        stage_energy[stage] = pe.gross_j if pe.duration_s > 0 or stage == "serve" else 0.0
        if pe.duration_s > 0 and pe.label:
            labels.append(pe.label)
    one_off = [stage_energy[s] for s in ONE_OFF_STAGES]
    queries = int(serve.get("items") or 0)
    served_j = stage_energy["serve"]
    metrics = serve.get("metrics") or {}
    return RunLifecycle(
        stage_energy_j=stage_energy,
        stage_time_s=stage_time,
        label=weakest_label(labels) if labels else None,
        train_energy_j=None if any(j is None for j in one_off) else sum(one_off),  # type: ignore[arg-type]
        train_time_s=sum(stage_time[s] for s in ONE_OFF_STAGES),
        serve_queries=queries,
        serve_energy_per_query_j=served_j / queries if served_j is not None and queries else None,
        serve_batch_ms=(serve.get("latency_ms") or {}).get("mean"),
        serve_accuracy=_number(metrics.get("accuracy")),
        serve_perplexity=_number(metrics.get("perplexity")),
        model_size_bytes=(serve.get("model") or {}).get("size_bytes"),
        train_peak_mem_bytes=(result.get("session") or {}).get("peak_mem_bytes"),
        serve_peak_mem_bytes=serve.get("peak_mem_bytes"),
    )


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def total_energy_j(run: RunLifecycle, queries: float) -> float | None:
    """One-off energy plus ``queries`` served at the run's energy per query."""
    if run.train_energy_j is None or run.serve_energy_per_query_j is None:
        return None
    return run.train_energy_j + queries * run.serve_energy_per_query_j


@dataclass(frozen=True)
class BreakEven:
    """When the optimized side's lifecycle becomes cheaper (or stops being cheaper) than the
    baseline's, in queries served. ``kind``: ``pays-off-after`` (costlier to train, cheaper to
    serve), ``always-cheaper``, ``cheaper-until`` (cheaper to train, costlier to serve),
    ``never``, ``same``, or ``undetermined`` (a figure is unknown, or serving energies are not
    told apart by their paired interval). ``queries`` comes from the medians; ``per_pair`` from
    each pair."""

    kind: str
    queries: float | None
    per_pair: list[float | None]
    text: str


def break_even(
    one_off_j: tuple[float | None, float | None],
    per_query_j: tuple[float | None, float | None],
    serving_told_apart: bool,
    per_pair: list[float | None] | None = None,
) -> BreakEven:
    """The break-even of (baseline, optimized) one-off energies and energies per query."""
    pairs = per_pair or []
    (tb, to), (sb, so) = one_off_j, per_query_j
    if tb is None or to is None or sb is None or so is None:
        return BreakEven("undetermined", None, pairs, "a stage's energy is unknown")
    d_one_off, d_serve = to - tb, sb - so  # extra one-off cost; saving per query
    n = crossing(d_one_off, d_serve)
    kind, text = _kind(d_one_off, d_serve, n)
    if not serving_told_apart:
        medians = f" (the medians: {text})" if kind != "same" else ""
        return BreakEven(
            "undetermined",
            n,
            pairs,
            "the serving energies per query are not told apart by their 95% interval, so "
            f"whether and when the optimized side pays off is undetermined{medians}",
        )
    return BreakEven(kind, n, pairs, text)


def _kind(d_one_off: float, d_serve: float, n: float | None) -> tuple[str, str]:
    """The break-even's kind and sentence from the extra one-off energy of the optimized side
    and its saving per query (either may be 0)."""
    if d_serve > 0 and d_one_off > 0:
        return "pays-off-after", (
            f"costlier to train by {d_one_off:.4g} J, it pays off after {n:,.0f} queries"
        )
    if d_serve > 0:
        return "always-cheaper", "no costlier to train and cheaper to serve: cheaper from the start"
    if d_serve == 0 and d_one_off < 0:
        return "always-cheaper", "cheaper to train, the same to serve: cheaper from the start"
    if d_serve < 0 and d_one_off < 0:
        return "cheaper-until", (
            f"cheaper to train, costlier to serve: cheaper only until {n:,.0f} queries"
        )
    if d_serve == 0 and d_one_off == 0:
        return "same", "the same to train and to serve"
    return "never", "costlier to serve or to train and cheaper at neither: it never pays off"


def crossing(d_one_off_j: float, d_serve_j: float) -> float | None:
    """The query count where two lifecycles cost the same: extra one-off energy over the saving
    per query; None when they never cross (no saving, or both signs agree)."""
    if d_serve_j == 0 or (d_one_off_j > 0) != (d_serve_j > 0):
        return None
    return d_one_off_j / d_serve_j


@dataclass
class LifecycleSummary:
    """The ``lifecycle`` block of a lifecycle comparison."""

    deploy_queries: int
    label: str | None
    pairs: int
    rows: list[dict[str, Any]]
    stages: dict[str, dict[str, dict[str, float | None]]]
    epochs: dict[str, list[dict[str, Any]]]
    break_even: dict[str, Any]
    roc: dict[str, Any]
    headline: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    base_runs: Sequence[dict[str, Any]],
    opt_runs: Sequence[dict[str, Any]],
    deploy_queries: int,
    carbon: dict[str, Any],
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any] | None:
    """The lifecycle block from the complete pairs' results (aligned by pair); None when no
    pair served (nothing to say beyond the ordinary comparison)."""
    pairs = [
        (b, o)
        for b, o in zip(map(run_lifecycle, base_runs), map(run_lifecycle, opt_runs), strict=True)
        if b is not None and o is not None
    ]
    if not pairs:
        return None
    base, opt = [p[0] for p in pairs], [p[1] for p in pairs]
    rows = _rows(base, opt, deploy_queries, carbon, margin)
    by_key = {r["key"]: r for r in rows}
    serve_verdict = by_key["serve_energy_per_query_j"]["verdict"]
    be = break_even(
        (by_key["train_energy_j"]["baseline"], by_key["train_energy_j"]["optimized"]),
        (
            by_key["serve_energy_per_query_j"]["baseline"],
            by_key["serve_energy_per_query_j"]["optimized"],
        ),
        serve_verdict in ("better", "worse"),
        [_pair_crossing(b, o) for b, o in pairs],
    )
    label = weakest_label([r.label for r in base + opt if r.label])
    total = by_key["total_energy_kwh"]
    return LifecycleSummary(
        deploy_queries=deploy_queries,
        label=label,
        pairs=len(pairs),
        rows=rows,
        stages={"baseline": _stage_medians(base), "optimized": _stage_medians(opt)},
        epochs={"baseline": _epochs(base_runs[0]), "optimized": _epochs(opt_runs[0])},
        break_even=asdict(be),
        roc={
            "baseline": _roc(base_runs[0]),
            "optimized": _roc(opt_runs[0]),
        },
        headline=_headline(total, deploy_queries, be, label),
        notes=_notes(base_runs, opt_runs, len(pairs)),
    ).to_dict()


def _values(runs: list[RunLifecycle], key: str, queries: int, carbon: dict[str, Any]) -> list[Any]:
    if key == "total_energy_kwh":
        return [_kwh(total_energy_j(r, queries)) for r in runs]
    if key == "total_co2_g":
        return [co2_g(total_energy_j(r, queries), carbon) for r in runs]
    return [getattr(r, key) for r in runs]


def _kwh(j: float | None) -> float | None:
    return None if j is None else j / J_PER_KWH


def _rows(
    base: list[RunLifecycle],
    opt: list[RunLifecycle],
    queries: int,
    carbon: dict[str, Any],
    margin: float,
) -> list[dict[str, Any]]:
    """One paired row per lifecycle figure: medians, change and the paired 95% interval with
    the same verdict rule as every comparison."""
    rows = []
    for key, label, unit, lower in ROWS:
        b, o = _values(base, key, queries, carbon), _values(opt, key, queries, carbon)
        bv, ov = [x for x in b if x is not None], [x for x in o if x is not None]
        if not bv and not ov:
            continue
        iv = paired_interval(b, o, lower, margin)
        bmed = statistics.median(bv) if bv else None
        omed = statistics.median(ov) if ov else None
        pct = 100.0 * (iv.ratio - 1.0) if iv.ratio is not None else None
        rows.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "baseline": bmed,
                "optimized": omed,
                "change_pct": pct,
                "ci": list(iv.ci) if iv.ci else None,
                "verdict": iv.verdict,
                "pairs": iv.pairs,
            }
        )
    return rows


def _stage_medians(runs: list[RunLifecycle]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        js = [r.stage_energy_j[stage] for r in runs]
        known = [j for j in js if j is not None]
        out[stage] = {
            "energy_j": statistics.median(known) if len(known) == len(js) else None,
            "duration_s": statistics.median(r.stage_time_s[stage] for r in runs),
        }
    return out


def _pair_crossing(b: RunLifecycle, o: RunLifecycle) -> float | None:
    """One pair's break-even, from its own two runs."""
    tb, to = b.train_energy_j, o.train_energy_j
    sb, so = b.serve_energy_per_query_j, o.serve_energy_per_query_j
    if tb is None or to is None or sb is None or so is None:
        return None
    return crossing(to - tb, sb - so)


def _epochs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy (or perplexity), time and energy so far per epoch, of the side's first run."""
    keep = ("epoch", "accuracy", "perplexity", "eval_loss", "train_time_s", "energy_j_so_far")
    return [{k: e.get(k) for k in keep} for e in (result.get("session") or {}).get("epochs") or []]


def _roc(result: dict[str, Any]) -> list[Any] | None:
    """The served model's ROC points (binary classifiers only)."""
    serve = (result.get("session") or {}).get("serve") or {}
    return (serve.get("metrics") or {}).get("roc_points")


def _distils(runs: Sequence[dict[str, Any]]) -> bool:
    spec = (runs[0].get("spec") or {}) if runs else {}
    return any(t.get("name") == "distillation" for t in spec.get("techniques") or ())


def _headline(total: dict[str, Any], queries: int, be: BreakEven, label: str | None) -> str:
    b, o = total["baseline"], total["optimized"]
    if b is None or o is None or total["change_pct"] is None:
        return f"Lifecycle at {queries:,} queries: a stage's energy is unknown. {be.text}."
    change = total["change_pct"]
    ci = total["ci"]
    ci_text = f", 95% interval {100 * (ci[0] - 1):+.1f}% to {100 * (ci[1] - 1):+.1f}%" if ci else ""
    return (
        f"Lifecycle at {queries:,} queries: {o:.4g} kWh against {b:.4g} kWh"
        f" ({change:+.1f}%{ci_text}; {total['verdict']}; {label or 'unknown source'}); "
        f"{be.text}."
    )


def _notes(
    base_runs: Sequence[dict[str, Any]], opt_runs: Sequence[dict[str, Any]], served: int
) -> list[str]:
    notes = [
        "one-off stages: the techniques' preparation, training with its evaluations, conversion "
        "and the server's warm-up; loading the model and the scoring after each part are in no "
        "stage"
    ]
    if _distils(opt_runs):
        notes.append(
            "the optimized side distils: its teacher is the model as given (for the demo, its "
            "cached trained weights), whose own training is charged to neither side"
        )
    if served < len(base_runs):
        notes.append(
            f"{len(base_runs) - served} pair(s) did not serve (cancelled or diverged) and are "
            "left out of the lifecycle figures"
        )
    for side, runs in (("baseline", base_runs), ("optimized", opt_runs)):
        extended = [
            r
            for r in runs
            if ((r.get("session") or {}).get("serve") or {}).get("extended_to_min_duration")
        ]
        if extended:
            notes.append(
                f"{side}: the serving pass was repeated to reach the minimum measured duration "
                "(per-query energy is over every query served)"
            )
    return notes
