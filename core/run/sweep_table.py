"""The sweep's answer from its measured rounds: one row per technique set, the Pareto fronts,
what dominates what, and the set to apply under an accuracy budget.

Pure functions of run results (no store, no process), so the choice is tested on known points
with a stubbed measurement. Medians over rounds are the point estimates; every "clearly" claim
comes from the same paired interval ``compare`` uses, taken over the rounds both sets ran in.
"""

from __future__ import annotations

import statistics
from typing import Any

from wattlab.core.run import pareto
from wattlab.core.run.stats import MIN_PAIRS, paired_interval, run_metrics
from wattlab.core.run.sweep_plan import BASELINE, SweepPlan

RoundMetrics = list[dict[str, dict[str, float | None]]]  # per round: key -> run_metrics
ENERGY_METRICS = ("energy_per_item_j", "energy_per_token_j", "energy_j")
FRONTS = {  # name -> the second objective next to energy (minimised; accuracy negated)
    "energy_accuracy": "accuracy",
    "energy_latency": "latency_p50_ms",
    "energy_memory": "peak_mem_bytes",
}
ROW_METRICS = ("throughput_items_s", "latency_p50_ms", "model_size_bytes", "peak_mem_bytes")
FAIRNESS_GAP = "accuracy_gap"  # best minus worst group accuracy (fraction)


def metrics_by_round(
    rounds: list[dict[str, dict[str, Any]]], carbon: dict[str, Any]
) -> RoundMetrics:
    """Each completed run's comparable figures, by round and technique set."""
    return [{key: run_metrics(r, carbon) for key, r in rnd.items()} for rnd in rounds]


def energy_metric(rm: RoundMetrics) -> str:
    """Energy per item where the workload counts items, else per token, else the window."""
    for m in ENERGY_METRICS:
        if any(v.get(m) is not None for rnd in rm for v in rnd.values()):
            return m
    return ENERGY_METRICS[0]


def median_of(rm: RoundMetrics, key: str, metric: str) -> float | None:
    vals = [v for rnd in rm if key in rnd if (v := rnd[key].get(metric)) is not None]
    return statistics.median(vals) if vals else None


def paired(
    rm: RoundMetrics, a: str, b: str, metric: str
) -> tuple[list[float | None], list[float | None]]:
    """``a`` and ``b`` in the rounds both ran: their shared drift cancels in the ratio."""
    both = [rnd for rnd in rm if a in rnd and b in rnd]
    return [rnd[a].get(metric) for rnd in both], [rnd[b].get(metric) for rnd in both]


def _no_lower(x: float | None, y: float | None) -> bool:
    """Accuracy ``x`` is at least ``y``. Unknown on either side is not "at least": a set is
    never stopped on energy alone when its quality cannot be compared."""
    if x is None or y is None:
        return False
    return x >= y - 1e-12


def quality_changes(rm: RoundMetrics, key: str) -> dict[str, float | None]:
    """``key``'s accuracy, its change and the group gap's change against the baseline, in
    points (medians over rounds): what the budgets are checked on, mid-sweep and at the end."""
    acc, base_acc = median_of(rm, key, "accuracy"), median_of(rm, BASELINE, "accuracy")
    gap, base_gap = median_of(rm, key, FAIRNESS_GAP), median_of(rm, BASELINE, FAIRNESS_GAP)
    return {
        "accuracy": acc,
        "accuracy_change_points": _points_between(acc, base_acc),
        "accuracy_gap_points": 100 * gap if gap is not None else None,
        "fairness_change_points": _points_between(gap, base_gap),
    }


def _points_between(x: float | None, base: float | None) -> float | None:
    return 100 * (x - base) if x is not None and base is not None else None


def budget_ok_so_far(rm: RoundMetrics, key: str, plan: SweepPlan) -> bool:
    """Whether ``key``'s medians so far keep it within the accuracy (and group-gap) budget."""
    return bool(within_budget(quality_changes(rm, key), plan))


def clear_dominator(
    rm: RoundMetrics,
    key: str,
    others: list[str],
    margin: float,
    names: dict[str, str] | None = None,
) -> str | None:
    """Why ``key`` is clearly dominated, or None: some other set used more than ``margin``
    less energy with 95% confidence (the paired interval says "worse" for ``key``) and is at
    least as accurate. Checked only from ``MIN_PAIRS`` shared rounds on."""
    metric = energy_metric(rm)
    for other in others:
        if other == key:
            continue
        ref, mine = paired(rm, other, key, metric)
        iv = paired_interval(ref, mine, lower_is_better=True, margin=margin)
        if iv.pairs < MIN_PAIRS or iv.verdict != "worse" or iv.ci is None:
            continue
        if _no_lower(median_of(rm, other, "accuracy"), median_of(rm, key, "accuracy")):
            lo, hi = (100 * (x - 1) for x in iv.ci)
            name = (names or {}).get(other, other)
            return (
                f"clearly dominated by {name}: it used {100 * (iv.ratio or 1) - 100:+.1f}% "
                f"energy against it (95% interval {lo:+.1f}% to {hi:+.1f}%, {iv.pairs} rounds) "
                "and was no more accurate"
            )
    return None


def prepare_cost(result: dict[str, Any]) -> tuple[float | None, float | None, str | None]:
    """Time and energy the worker spent applying the techniques (its ``prepare`` phase), and
    the weakest label of the energy counted."""
    from wattlab.core.measure.sensors.base import weakest_label

    seconds = (result.get("phases") or {}).get("prepare")
    rows = [e for e in result.get("energy") or [] if e.get("in_total", True)]
    parts = [(e.get("by_phase_j") or {}).get("prepare") for e in rows]
    # Any source without a figure makes the total unknown: a sum of the known parts is not it.
    joules = sum(p for p in parts if p is not None) if parts and None not in parts else None
    label = weakest_label([e["label"] for e in rows if e.get("label")]) if rows else None
    return seconds, joules, label


def _prepare_median(
    rounds: list[dict[str, dict[str, Any]]], key: str
) -> tuple[float | None, float | None, str | None]:
    costs = [prepare_cost(rnd[key]) for rnd in rounds if key in rnd]
    secs = [c[0] for c in costs if c[0] is not None]
    joules = [c[1] for c in costs if c[1] is not None]
    label = next((c[2] for c in costs if c[2]), None)
    return (
        statistics.median(secs) if secs else None,
        statistics.median(joules) if joules else None,
        label,
    )


def _weakest_label(rounds: list[dict[str, dict[str, Any]]], key: str) -> str | None:
    """The measured windows' weakest label over the set's runs: its figures are no stronger."""
    from wattlab.core.measure.sensors.base import weakest_label

    labels = [
        lb
        for rnd in rounds
        if key in rnd
        if (lb := (rnd[key].get("measured_phase") or {}).get("label"))
    ]
    return weakest_label(labels) if labels else None


def _energy_verdict(comp: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """The candidate's own comparison verdict on energy (per item), from ``assemble``."""
    v = next((v for v in (comp or {}).get("verdicts") or [] if v["metric"] == metric), None)
    if v is None:
        return {}
    ci = v.get("ratio_ci")
    return {
        "energy_change_pct": v.get("delta_pct"),
        "energy_ci_pct": [100 * (ci[0] - 1), 100 * (ci[1] - 1)] if ci else None,
        "energy_verdict": v.get("verdict"),
        "pairs": v.get("pairs"),
    }


def _verdict_words(verdict: str | None, pct: float | None) -> str:
    if pct is None or verdict is None:
        return "energy could not be compared"
    if verdict == "better":
        return f"saves {abs(pct):.1f}% energy"
    if verdict == "worse":
        return f"costs {abs(pct):.1f}% more energy"
    if verdict in ("no meaningful change", "no change"):
        return "saves nothing worth having on this hardware"
    if verdict == "within noise":
        return f"{pct:+.1f}%, within this machine's noise: no saving can be claimed"
    if verdict == "inconclusive":
        return f"{pct:+.1f}%: a real change, size not settled"
    return f"{pct:+.1f}% ({verdict})"


def build_row(
    key: str,
    text: str,
    rm: RoundMetrics,
    rounds: list[dict[str, dict[str, Any]]],
    comp: dict[str, Any] | None,
    metric: str,
) -> dict[str, Any]:
    """One row of the table: medians over rounds, the energy verdict against the baseline
    and the preparation cost. Status and notes are added by the caller."""
    prep_s, prep_j, prep_label = _prepare_median(rounds, key)
    row: dict[str, Any] = {
        "key": key,
        "text": text,
        "comparison_id": (comp or {}).get("comparison_id"),
        "rounds": sum(1 for rnd in rm if key in rnd),
        "energy_metric": metric,
        "energy_median_j": median_of(rm, key, metric),
        "energy_label": _weakest_label(rounds, key),
        **quality_changes(rm, key),
        "prepare_s": prep_s,
        "prepare_j": prep_j,
        "prepare_label": prep_label,
        **{m: median_of(rm, key, m) for m in ROW_METRICS},
    }
    if key != BASELINE:
        row.update(_energy_verdict(comp, metric))
    return row


def within_budget(row: dict[str, Any], plan: SweepPlan) -> bool | None:
    """Accuracy lost within the budget (and the group gap grown within its budget, when one
    is set); None when accuracy is unknown, so an unscored set is never recommended."""
    change = row.get("accuracy_change_points")
    if change is None:
        return None
    if change < -plan.max_accuracy_loss_points - 1e-9:
        return False
    if plan.max_fairness_gap_points is not None:
        grown = row.get("fairness_change_points")
        if grown is None or grown > plan.max_fairness_gap_points + 1e-9:
            return False
    return True


def fronts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The three Pareto fronts over the measured rows (energy against accuracy, latency and
    memory)."""
    out = {}
    for name, second in FRONTS.items():
        sign = -1.0 if second == "accuracy" else 1.0
        points = {
            r["key"]: (r["energy_median_j"], None if r[second] is None else sign * r[second])
            for r in rows
        }
        out[name] = pareto.front(points)
    return out


def dominance(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Who dominates whom on energy and accuracy (point estimates: medians)."""
    points = {
        r["key"]: (r["energy_median_j"], None if r["accuracy"] is None else -r["accuracy"])
        for r in rows
    }
    return pareto.dominated_by(points)


def recommend(rows: list[dict[str, Any]], rm: RoundMetrics, plan: SweepPlan) -> dict[str, Any]:
    """The lowest-energy set that is within the budget and measurably saves energy (its
    interval entirely beyond the margin); the baseline when none does. Its confidence says
    whether the runner-up can be told apart from it on this machine."""
    eligible = sorted(
        (
            r
            for r in rows
            if r["key"] != BASELINE
            and r.get("status") == "measured"
            and r.get("within_budget")
            and r.get("energy_verdict") == "better"
            and r["energy_median_j"] is not None
        ),
        key=lambda r: r["energy_median_j"],
    )
    budget = _budget_text(plan)
    if not eligible:
        return {
            "key": BASELINE,
            "text": "no technique",
            "comparison_id": None,
            "reason": f"no set saved energy measurably {budget}: keep the unmodified model "
            + _why_none(rows),
            "confidence": None,
        }
    best = eligible[0]
    ci = best.get("energy_ci_pct")
    confidence = (
        f"energy {best['energy_change_pct']:+.1f}% against the baseline"
        + (f" (95% interval {ci[0]:+.1f}% to {ci[1]:+.1f}%" if ci else " (no interval")
        + f", {best.get('pairs')} pairs, {best.get('energy_label')})"
    )
    if len(eligible) > 1:
        confidence += "; " + _against_runner_up(best, eligible[1], rm, plan.margin)
    acc = best.get("accuracy_change_points")
    return {
        "key": best["key"],
        "text": best["text"],
        "comparison_id": best.get("comparison_id"),
        "reason": f"the lowest measured energy {budget}"
        + (f" (accuracy {acc:+.2f} points)" if acc is not None else ""),
        "confidence": confidence,
    }


def _budget_text(plan: SweepPlan) -> str:
    text = f"within the {plan.max_accuracy_loss_points:g}-point accuracy budget"
    if plan.max_fairness_gap_points is not None:
        text += f" and the {plan.max_fairness_gap_points:g}-point group-gap budget"
    return text


def _why_none(rows: list[dict[str, Any]]) -> str:
    """The reason no set is recommended, true to what the rows say."""
    others = [r for r in rows if r["key"] != BASELINE]
    cands = [r for r in others if r.get("status") == "measured"]
    if not cands:
        if others and all(r.get("status") == "failed" for r in others):
            return "(every set failed to run; see each set's reason)"
        return "(every set was stopped early: another set or the baseline clearly beat it)"
    if all(r.get("within_budget") is None for r in cands):
        return "(accuracy is unknown, so the budget cannot be checked)"
    if all(r.get("energy_verdict") == "too few repeats" for r in cands):
        return "(too few rounds for a verdict: at least 3 are needed)"
    saving = [r for r in cands if r.get("energy_verdict") == "better"]
    if saving:
        return "(the sets that save energy are over the budget)"
    return "(no set's saving exceeded this machine's noise)"


def _against_runner_up(
    best: dict[str, Any], runner: dict[str, Any], rm: RoundMetrics, margin: float
) -> str:
    metric = best["energy_metric"]
    ref, other = paired(rm, best["key"], runner["key"], metric)
    iv = paired_interval(ref, other, lower_is_better=True, margin=margin)
    if iv.verdict == "worse" and iv.ratio is not None:
        return f"clearly ahead of the runner-up {runner['text']} ({100 * iv.ratio - 100:+.1f}%)"
    pct = f"{100 * iv.ratio - 100:+.1f}%, " if iv.ratio is not None else ""
    return (
        f"not separable from the runner-up {runner['text']} on this machine ({pct}"
        f"{iv.verdict}): either is a sound choice"
    )


def notes_for(row: dict[str, Any], warnings: tuple[str, ...], plan: SweepPlan) -> str:
    """The table's one-line note: what the row's figures mean for a user."""
    gap = _gap_words(row)
    if row["key"] == BASELINE:
        return "the unmodified model, measured in every round (shared by every set)" + gap
    if row.get("status") in ("failed", "refused"):
        return row.get("reason") or row["status"]
    parts = [_verdict_words(row.get("energy_verdict"), row.get("energy_change_pct"))]
    if row.get("within_budget") is False:
        parts.append("over the budget")
    if row.get("status") == "stopped early":
        parts.append(f"stopped early: {row.get('reason')}")
    parts += list(warnings)
    return "; ".join(parts) + gap


def _gap_words(row: dict[str, Any]) -> str:
    """With --sensitive-column: the best-worst group accuracy gap, and its growth."""
    gap, grown = row.get("accuracy_gap_points"), row.get("fairness_change_points")
    if gap is None:
        return ""
    change = (
        f" ({grown:+.2f} against the baseline)"
        if grown is not None and row["key"] != BASELINE
        else ""
    )
    return f"; group accuracy gap {gap:.2f} pt{change}"
