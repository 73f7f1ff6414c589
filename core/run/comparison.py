"""One comparison end to end: interleaved measured sessions, verdicts, a stored record, reports.

The comparison is itself a row in the run store (kind ``comparison``) whose result holds every
run id, so ``wattlab report ID`` can rebuild the PDF/CSV/JSON later without re-running.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from wattlab.core import protocol
from wattlab.core.errors import UserError
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.report import POINT_METRICS, manifest
from wattlab.core.results import (
    SCHEMA_VERSION,
    UNTRAINED_HEAD_MARK,
    UNTRAINED_VERDICT,
    RunResult,
    Verdict,
)
from wattlab.core.run.client import EventCallback, SessionRunner
from wattlab.core.run.stats import (
    DEFAULT_MARGIN,
    DEFAULT_REPEATS,
    METHOD_TEXT,
    MIN_PAIRS,
    ComparisonProgress,
    PairRun,
    describe_techniques,
    headline,
    is_disturbed,
    primary_metric,
    run_interleaved,
    run_metrics,
    verdicts,
)
from wattlab.core.spec import RunSpec


def compare(
    base: RunSpec,
    opt: RunSpec,
    store: RunStore,
    settings: MeasureSettings,
    carbon: CarbonSettings,
    repeats: int = DEFAULT_REPEATS,
    cooldown_s: float = 3.0,
    quality_target: float | None = None,
    on_event: EventCallback | None = None,
    on_progress: Callable[[ComparisonProgress], None] | None = None,
    runner_hook: Callable[[SessionRunner], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    margin: float = DEFAULT_MARGIN,
    rerun_disturbed: bool = False,
    deploy_queries: int | None = None,
) -> dict[str, Any]:
    """Counterbalanced pairs of measured sessions, verdicts, and a stored comparison row.
    With no technique on the optimized side it is an A/A check of the machine's noise.
    Lifecycle specs (train, then serve) add the stage-by-stage block at ``deploy_queries``."""
    if dataclasses.replace(base, techniques=(), label=None) != dataclasses.replace(
        opt, techniques=(), label=None
    ):
        from wattlab.core.errors import SpecError

        raise SpecError("baseline and optimized specs must be identical except for techniques")
    settings.validate()
    c = carbon.resolved()
    cid = store.create_run(
        "comparison",
        {"baseline": base.to_dict(), "optimized": opt.to_dict(), "repeats": repeats},
        f"compare: {describe_techniques(opt) if opt.techniques else 'A/A (no technique)'}",
    )
    results: dict[int, dict[str, Any]] = {}

    def run_one(spec: RunSpec, side: str, i: int) -> dict[str, Any]:
        runner = SessionRunner(spec, store, settings, on_event=on_event)
        if runner_hook:
            runner_hook(runner)
        r = runner.run()
        results[r["run_id"]] = r
        return r

    try:
        pairs = run_interleaved(
            base, opt, repeats, run_one, cooldown_s, on_progress, should_stop, rerun_disturbed
        )
    except BaseException as exc:
        store.finish_run(
            cid,
            "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed",
            None,
            f"{type(exc).__name__}: {exc}",
        )
        raise
    sides, info = sides_of(pairs)
    comp = assemble(
        cid,
        base,
        opt,
        repeats,
        cooldown_s,
        settings,
        c,
        quality_target,
        results,
        sides,
        info,
        margin,
    )
    if base.lifecycle:
        add_lifecycle(comp, results, sides, info, deploy_queries or DEFAULT_DEPLOY_QUERIES, margin)
    cancelled = should_stop() or any(r["status"] == "cancelled" for r in results.values())
    if cancelled:
        mark_cancelled(comp)
    store.finish_run(cid, comp["status"], comp)
    return comp


DEFAULT_DEPLOY_QUERIES = 1_000_000


def add_lifecycle(
    comp: dict[str, Any],
    results: dict[int, dict[str, Any]],
    sides: list[tuple[int, str, int]],
    info: dict[int, dict[str, Any]],
    deploy_queries: int,
    margin: float = DEFAULT_MARGIN,
) -> None:
    """The stage-by-stage block of a lifecycle comparison (run/lifecycle.py), over the same
    complete pairs as the verdicts; its headline follows the comparison's."""
    from wattlab.core.run.lifecycle import summarize

    base_runs, opt_runs = verdict_pairs(results, sides, info)
    block = summarize(base_runs, opt_runs, deploy_queries, comp["carbon"], margin)
    comp["lifecycle"] = block
    if block is not None:
        comp["headline"] += " " + block["headline"]


def mark_cancelled(comp: dict[str, Any]) -> None:
    """A stopped comparison keeps what completed, and says so before any figure: the verdicts
    cover the complete pairs only (fewer than three give "too few repeats", never a verdict)."""
    comp["status"] = "cancelled"
    done, planned = comp["pairs_completed"], comp["repeats"]
    comp["headline"] = (
        f"Cancelled after {done} of {planned} pair{'s' if planned != 1 else ''}: "
        + comp["headline"]
    )


def sides_of(
    pairs: list[PairRun],
) -> tuple[list[tuple[int, str, int]], dict[int, dict[str, Any]]]:
    """(run id, side, pair) in the order the runs happened, and per run: its position, the
    pair's order, whether it was disturbed and whether a re-run replaced its pair."""
    sides: list[tuple[int, str, int]] = []
    info: dict[int, dict[str, Any]] = {}
    position = 0
    for pr in pairs:
        for side in pr.order:
            r = pr.runs.get(side)
            if r is None:
                continue
            sides.append((r["run_id"], side, pr.index))
            info[r["run_id"]] = {
                "position": position,
                "pair_order": list(pr.order),
                "disturbed": is_disturbed(r),
                "replaced_by_pair": pr.replaced_by,
                "rerun_of_pair": pr.rerun_of,
            }
            position += 1
    return sides, info


def verdict_pairs(
    results: dict[int, dict[str, Any]],
    sides: list[tuple[int, str, int]],
    info: dict[int, dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Baseline and optimized results of the complete pairs that count, aligned by pair."""
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for rid, side, i in sides:
        if info.get(rid, {}).get("replaced_by_pair") is None and _completed(results[rid]):
            by_pair.setdefault(i, {})[side] = results[rid]
    done = [by_pair[i] for i in sorted(by_pair) if len(by_pair[i]) == 2]
    return [p["baseline"] for p in done], [p["optimized"] for p in done]


def _completed(result: dict[str, Any]) -> bool:
    """Only a run that measured all its work belongs in a pair (a stored 0.1 result has no
    status and was always complete)."""
    return result.get("status", "completed") == "completed"


def assemble(
    cid: int,
    base: RunSpec,
    opt: RunSpec,
    repeats: int,
    cooldown_s: float,
    settings: MeasureSettings,
    carbon: dict[str, Any],
    quality_target: float | None,
    results: dict[int, dict[str, Any]],
    sides: list[tuple[int, str, int]],
    info: dict[int, dict[str, Any]] | None = None,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any]:
    info = info or {rid: {"position": k} for k, (rid, _, _) in enumerate(sides)}
    base_runs, opt_runs = verdict_pairs(results, sides, info)
    n = len(base_runs)
    all_base = [results[r] for r, s, _ in sides if s == "baseline"]
    all_opt = [results[r] for r, s, _ in sides if s == "optimized"]
    if quality_target is None and base.mode == "train":
        quality_target = _reached_by_all(all_base + all_opt)
    vs = verdicts(base_runs, opt_runs, carbon, quality_target, margin)
    model_notes = {
        "baseline": _model_notes(all_base),
        "optimized": _model_notes(all_opt),
    }
    untrained = base.mode != "train" and _untrained_head(model_notes)
    if untrained:
        _no_quality_verdicts(vs)
    primary = primary_metric(vs)
    aa = not opt.techniques
    tech_text = describe_techniques(opt) if not aa else "A/A (no technique)"
    rag = base.mode == "rag"
    if rag:
        _name_rag_metrics(vs)
    first_opt = (all_opt[0].get("session") or {}) if all_opt else {}
    first_base = (all_base[0].get("session") or {}) if all_base else {}
    any_run = next(iter(results.values()), {})
    disturbed = sum(1 for rid, _, _ in sides if info.get(rid, {}).get("disturbed"))
    return {
        "schema_version": SCHEMA_VERSION,
        "comparison_id": cid,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "baseline_spec": base.to_dict(),
        "optimized_spec": opt.to_dict(),
        "technique_text": tech_text,
        "aa": aa,
        "repeats": repeats,
        "pairs_completed": n,
        "status": "completed",  # mark_cancelled() changes it when the user stopped
        "cooldown_s": cooldown_s,
        "measured_phases": list(protocol.measured_phases(base.mode)),
        "quality_target": quality_target,
        "carbon": carbon,
        "sampling": {
            "interval_s": settings.interval_s,
            "idle_s": settings.idle_s,
            "min_measure_s": settings.min_measure_s,
        },
        "statistics": _statistics(margin, primary, disturbed),
        "device": (first_base.get("device") or {}).get("device"),
        "headline": headline(vs, tech_text, "query" if rag else "item", aa)
        + _disturbed_note(base_runs + opt_runs, n),
        "verdicts": [v.to_dict() for v in vs],
        "model_notes": model_notes,
        "untrained_head": untrained,
        "per_run": _per_run(results, sides, info, carbon, quality_target),
        "techniques": first_opt.get("techniques") or [],
        "agreement": first_opt.get("agreement"),
        "early_exit": first_opt.get("early_exit"),
        "lottery_rounds": first_opt.get("lottery_rounds"),
        "epochs": {
            "baseline": first_base.get("epochs") or [],
            "optimized": first_opt.get("epochs") or [],
        },
        "fairness": _fairness_by_side(base_runs + all_base, opt_runs + all_opt),
        "scaling": scaling(vs, _ranks(first_base), _ranks(first_opt)),
        "power_model": any_run.get("power_model"),
        "rag": rag_summary(vs, base_runs, opt_runs) if rag else None,
        "manifest": {
            **manifest.build(any_run.get("sensors")),
            "specs": {"baseline": base.to_dict(), "optimized": opt.to_dict()},
            "labels": sorted({lb for lb in map(_energy_label, results.values()) if lb}),
        },
    }


def _ranks(session: dict[str, Any]) -> int:
    """How many DDP ranks a run trained with (1: one process)."""
    ranks = (session.get("distributed") or {}).get("ranks")
    return int(ranks) if isinstance(ranks, int) and ranks > 0 else 1


def scaling(vs: list[Verdict], base_ranks: int, opt_ranks: int) -> dict[str, Any] | None:
    """Data-parallel scaling when the sides ran different numbers of ranks: the speed-up of the
    measured phase (baseline time / optimized time, from the paired time ratio and its 95%
    interval) and the scaling efficiency, speed-up / (rank ratio): 1.0 is perfect scaling."""
    if base_ranks == opt_ranks:
        return None
    by = {v.metric: v for v in vs}
    time_v = by.get("duration_s")
    if time_v is None or time_v.delta_pct is None:
        return None
    ratio = 1.0 + time_v.delta_pct / 100.0  # optimized / baseline time (geometric mean)
    factor = opt_ranks / base_ranks
    ci = time_v.ratio_ci
    return {
        "baseline_ranks": base_ranks,
        "optimized_ranks": opt_ranks,
        "speedup": 1.0 / ratio,
        "speedup_ci": [1.0 / ci[1], 1.0 / ci[0]] if ci else None,
        "efficiency": 1.0 / ratio / factor,
        "efficiency_ci": [1.0 / ci[1] / factor, 1.0 / ci[0] / factor] if ci else None,
        "time_verdict": time_v.verdict,
    }


def _model_notes(runs: list[dict[str, Any]]) -> list[str]:
    """What the loader said about the model (the first run of a side says it for all)."""
    session = (runs[0].get("session") or {}) if runs else {}
    return [
        str(n)
        for key in ("model", "model_before")
        for n in (session.get(key) or {}).get("notes") or []
    ]


def _untrained_head(model_notes: dict[str, list[str]]) -> bool:
    """A classifier scored through a head the loader had to create (core.models.hf's note):
    its accuracy is chance, and any change in it is noise, never "better"."""
    return any(UNTRAINED_HEAD_MARK in n for notes in model_notes.values() for n in notes)


def _no_quality_verdicts(vs: list[Verdict]) -> None:
    for v in vs:
        if v.metric in POINT_METRICS:
            v.verdict = UNTRAINED_VERDICT
            v.role = "descriptive"


def _fairness_by_side(
    base_runs: list[dict[str, Any]], opt_runs: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Each side's per-group figures (--sensitive-column), from its first run that has them
    (runs of the verdict first): the groups behind the medians in the verdict table. None
    when no run has any."""

    def first(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
        found = ((r.get("session") or {}).get("fairness") for r in runs)
        return next((f for f in found if isinstance(f, dict)), None)

    sides = {"baseline": first(base_runs), "optimized": first(opt_runs)}
    return sides if any(sides.values()) else None


def _energy_label(result: dict[str, Any]) -> str | None:
    return RunResult.from_dict(result).energy_label


def _reached_by_all(runs: list[dict[str, Any]]) -> float | None:
    """Training's quality target: the best eval accuracy every run reached (energy to target
    is then comparable across runs); None when some run never scored."""
    best = [
        max((e.get("accuracy") or 0) for e in (r.get("session") or {}).get("epochs") or [{}])
        for r in runs
    ]
    return min(best) if best and min(best) > 0 else None


def _name_rag_metrics(vs: list[Verdict]) -> None:
    """In a RAG comparison an item is a query and a token a generated token."""
    for v in vs:
        if v.metric == "energy_per_item_j":
            v.label = "Energy per query"
        elif v.metric == "energy_per_token_j":
            v.label = "Energy per generated token"


def _statistics(margin: float, primary: Verdict | None, disturbed: int) -> dict[str, Any]:
    return {
        "method": METHOD_TEXT.format(min=MIN_PAIRS, margin=100 * margin),
        "margin": margin,
        "min_pairs": MIN_PAIRS,
        "order": "counterbalanced: pair k runs baseline first when k is even, optimized "
        "first when k is odd",
        "primary_metric": primary.metric if primary is not None else None,
        "disturbed_runs": disturbed,
    }


def _per_run(
    results: dict[int, dict[str, Any]],
    sides: list[tuple[int, str, int]],
    info: dict[int, dict[str, Any]],
    carbon: dict[str, Any],
    quality_target: float | None,
) -> list[dict[str, Any]]:
    """Every run of the comparison with its own figures: the noise a verdict is judged by."""
    return [
        {
            "run_id": rid,
            "side": side,
            "index": i,
            **info.get(rid, {}),
            "label": _energy_label(results[rid]),
            "status": results[rid].get("status"),
            "start_temp_c": results[rid].get("start_temp_c"),
            "contention": results[rid].get("contention"),
            "metrics": run_metrics(results[rid], carbon, quality_target),
        }
        for rid, side, i in sides
    ]


def _disturbed_note(counted: list[dict[str, Any]], pairs: int) -> str:
    """Said on the headline itself: a verdict over disturbed runs is weaker than it looks."""
    k = sum(1 for r in counted if is_disturbed(r))
    if not k:
        return ""
    return (
        f" {k} of the {2 * pairs} runs in the verdict were disturbed by other processes (see "
        "each run's contention); --rerun-disturbed repeats such pairs."
    )


def rag_summary(
    vs: list[Any], base_runs: list[dict[str, Any]], opt_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The RAG cache's own figures next to the verdicts: per-layer hit rates, false hits,
    hits vs misses, and the energy saved per 1,000 queries (from the medians the verdict on
    energy per query uses, so the two never disagree)."""
    import statistics

    by = {v.metric: v for v in vs}
    e = by.get("energy_per_item_j")
    saved = None
    if e is not None and e.baseline_median is not None and e.optimized_median is not None:
        saved = {
            "joules": 1000 * (e.baseline_median - e.optimized_median),
            "verdict": e.verdict,
            "label": e.source,
        }

    def side(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
        rags: list[dict[str, Any]] = [
            x for x in ((r.get("session") or {}).get("rag") for r in runs) if x
        ]
        if not rags:
            return None

        def med(get: Any) -> float | None:
            vals = [v for v in (get(x) for x in rags) if v is not None]
            return statistics.median(vals) if vals else None

        first = rags[0]
        return {
            "layers": first["layers"],
            "index": first["index"],
            "index_per_run": [x["index"] for x in rags],
            "query_layer": first["query_layer"],
            "prefix_layer": first["prefix_layer"],
            "by_kind": first["by_kind"],
            "answer_accuracy": med(lambda x: x["answer_accuracy"]),
            "retrieval_recall": med(lambda x: x["retrieval_recall"]),
            "hit_energy_per_query_j": med(
                lambda x: ((x.get("energy") or {}).get("hit") or {}).get("energy_per_query_j")
            ),
            "miss_energy_per_query_j": med(
                lambda x: ((x.get("energy") or {}).get("miss") or {}).get("energy_per_query_j")
            ),
            "energy_label": (first.get("energy") or {}).get("label"),
            "energy_method": (first.get("energy") or {}).get("method"),
            "hit_latency_p50_ms": med(lambda x: x["latency_ms"]["hits"]["p50"]),
            "miss_latency_p50_ms": med(lambda x: x["latency_ms"]["misses"]["p50"]),
            "hit_ttft_p50_ms": med(lambda x: x["ttft_ms"]["hits"]["p50"]),
            "miss_ttft_p50_ms": med(lambda x: x["ttft_ms"]["misses"]["p50"]),
        }

    return {
        "saved_per_1000_queries": saved,
        "baseline": side(base_runs),
        "optimized": side(opt_runs),
    }


def compare_stored(
    store: RunStore, baseline_id: int, optimized_id: int, settings: MeasureSettings, carbon: dict
) -> dict[str, Any]:
    """Any two stored session runs as one pair (baseline, optimized): the history view's
    "compare these two". Raises UserError when either is not a finished session."""
    ra, rb = store.result(baseline_id), store.result(optimized_id)
    if not ra or not rb or "measured_phase" not in ra or "measured_phase" not in rb:
        raise UserError("compare two finished sessions (training or inference runs)")
    return assemble(
        0,
        RunSpec.from_dict(ra["spec"]),
        RunSpec.from_dict(rb["spec"]),
        1,
        0.0,
        settings,
        carbon,
        None,
        {baseline_id: ra, optimized_id: rb},
        [(baseline_id, "baseline", 0), (optimized_id, "optimized", 0)],
    )
