"""``wattlab sweep``: every candidate technique set measured against one shared baseline, in
rounds, and the answer a user wants: which set to apply under an accuracy budget.

Each round runs the baseline once and every still-active candidate once, in a rotating,
alternating order (sweep_plan.round_order), so drift is shared within a round and spread over
the candidates across rounds. A candidate pairs with its round's baseline run; each candidate
becomes an ordinary stored comparison (same statistics as ``compare``), so ``wattlab report``
and the app open it like any other.

Budget-aware: from the third round on, a candidate that another set (or the baseline) clearly
beats on energy at no loss of accuracy stops being measured. Resumable: the sweep is a store
row whose events record each run and each completed round; a resumed sweep continues from the
first incomplete round (the runs of an interrupted round stay stored but are not counted).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.errors import UserError
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.results import SCHEMA_VERSION
from wattlab.core.run import sweep_table as table
from wattlab.core.run.client import EventCallback, SessionFailed, SessionRunner
from wattlab.core.run.comparison import assemble, sides_of
from wattlab.core.run.progress import span
from wattlab.core.run.stats import MIN_PAIRS, PairRun, describe_techniques, is_disturbed
from wattlab.core.run.sweep_plan import BASELINE, SweepPlan, round_order
from wattlab.core.spec import RunSpec

Measure = Callable[[RunSpec, str, int], dict[str, Any]]  # (spec, key, round) -> run result
RUN_EVENT, ROUND_EVENT, STOP_EVENT = "sweep-run", "sweep-round", "sweep-stop"


@dataclass(frozen=True)
class SweepProgress:
    """Which run of the sweep is about to start, and how long the rest should take (the mean
    run so far times the runs left, an upper bound since dominated sets may stop early)."""

    round_index: int  # 0-based
    rounds: int
    key: str
    run_number: int  # 1-based, over the whole sweep
    planned_runs: int
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return (self.run_number - 1) / max(self.planned_runs, 1)

    @property
    def text(self) -> str:
        left = f", about {span(self.eta_s)} left" if self.eta_s is not None else ""
        return (
            f"round {self.round_index + 1}/{self.rounds}, run {self.run_number}/"
            f"{self.planned_runs}: {self.key}{left}"
        )


@dataclass
class SweepState:
    """What has been measured: completed rounds (key -> run result), the candidates that left
    the sweep (stopped early or failed) and why, and the runs of an interrupted round."""

    rounds: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    stopped: dict[str, dict[str, str]] = field(default_factory=dict)
    discarded_runs: list[int] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)

    def active(self, plan: SweepPlan) -> list[str]:
        return [c.key for c in plan.candidates if c.key not in self.stopped]


def start(plan: SweepPlan, store: RunStore) -> int:
    """The sweep's store row; its spec is the plan, so ``--resume`` needs nothing else."""
    what = f"{len(plan.candidates)} technique sets"
    return store.create_run("sweep", plan.to_dict(), f"sweep: {what} ({plan.base.mode})")


def load(store: RunStore, sweep_id: int) -> tuple[SweepPlan, SweepState]:
    """A stored sweep to resume: its plan and what its events say was measured."""
    row = store.run(sweep_id)
    if row is None or row.kind != "sweep":
        raise UserError(f"no sweep with id {sweep_id} in {store.path}")
    if row.status == "completed":
        raise UserError(f"sweep {sweep_id} is complete; nothing to resume")
    if row.status == "running":
        raise UserError(f"sweep {sweep_id} is still running in another process")
    plan = SweepPlan.from_dict(row.spec)
    state = SweepState()
    counted: set[int] = set()
    runs: list[int] = []
    for _t, kind, data in store.events(sweep_id):
        if kind == ROUND_EVENT:
            rnd = {k: store.result(int(rid)) for k, rid in data["runs"].items()}
            state.rounds.append({k: r for k, r in rnd.items() if r is not None})
            counted.update(int(r) for r in data["runs"].values())
        elif kind == STOP_EVENT:
            state.stopped[data["key"]] = {"status": data["status"], "reason": data["reason"]}
        elif kind == RUN_EVENT:
            runs.append(int(data["run_id"]))
    state.discarded_runs = [r for r in runs if r not in counted]
    old = (store.result(sweep_id) or {}).get("comparison_ids") or []
    store.delete_runs(old)  # rebuilt from the same runs when the sweep ends
    return plan, state


def run(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    settings: MeasureSettings,
    carbon: CarbonSettings,
    state: SweepState | None = None,
    measure: Measure | None = None,
    on_event: EventCallback | None = None,
    on_progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Measure the remaining rounds and store the sweep's summary. Ctrl-C (KeyboardInterrupt)
    or ``should_stop`` ends it as ``cancelled`` with what completed, resumable later."""
    state = state or SweepState()
    measure = measure or _session_measure(store, settings, on_event)
    c = carbon.resolved()
    began = time.monotonic()
    try:
        _measure_rounds(plan, sweep_id, store, state, measure, c, on_progress, should_stop)
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        _finish(plan, sweep_id, store, state, settings, c, status, time.monotonic() - began)
        raise
    status = "cancelled" if should_stop() else "completed"
    return _finish(plan, sweep_id, store, state, settings, c, status, time.monotonic() - began)


def _session_measure(
    store: RunStore, settings: MeasureSettings, on_event: EventCallback | None
) -> Measure:
    def measure(spec: RunSpec, key: str, k: int) -> dict[str, Any]:
        return SessionRunner(spec, store, settings, on_event=on_event).run()

    return measure


def _measure_rounds(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    measure: Measure,
    carbon: dict[str, Any],
    on_progress: Callable[[SweepProgress], None] | None,
    should_stop: Callable[[], bool],
) -> None:
    for k in range(len(state.rounds), plan.repeats):
        if not state.active(plan):
            return  # every set failed or stopped: the baseline alone would measure nothing
        order = round_order([BASELINE, *state.active(plan)], k)
        results = _measure_round(
            plan, sweep_id, store, state, measure, order, k, on_progress, should_stop
        )
        if (
            results is not None
            and plan.rerun_disturbed
            and any(map(is_disturbed, results.values()))
        ):
            # Once: the disturbed round stays stored, the quiet one is counted (without the
            # sets that failed in it).
            state.discarded_runs += list(_ids(results).values())
            order = round_order([BASELINE, *state.active(plan)], k)
            results = _measure_round(
                plan, sweep_id, store, state, measure, order, k, on_progress, should_stop
            )
        if results is None:
            return
        state.rounds.append(results)
        store.add_event(sweep_id, time.time(), ROUND_EVENT, {"round": k, "runs": _ids(results)})
        _stop_dominated(plan, sweep_id, store, state, carbon, k)


def _measure_round(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    measure: Measure,
    order: list[str],
    k: int,
    on_progress: Callable[[SweepProgress], None] | None,
    should_stop: Callable[[], bool],
) -> dict[str, dict[str, Any]] | None:
    """One round's runs by key; None when the user stopped before it completed."""
    results: dict[str, dict[str, Any]] = {}
    for i, key in enumerate(order):
        if should_stop():
            return None
        if state.run_seconds or i:
            time.sleep(plan.cooldown_s)
        if on_progress:
            on_progress(_progress(plan, state, k, order, i, key))
        t0 = time.monotonic()
        r = _measure_one(plan, sweep_id, store, state, measure, key, k)
        state.run_seconds.append(time.monotonic() - t0 + plan.cooldown_s)
        if r is not None:
            results[key] = r
    return results


def _ids(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {key: int(r["run_id"]) for key, r in results.items()}


def _measure_one(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    measure: Measure,
    key: str,
    k: int,
) -> dict[str, Any] | None:
    """One labelled run; a candidate that fails leaves the sweep with the worker's reason (a
    failing baseline ends the sweep: nothing could be compared)."""
    label = f"sweep {sweep_id} round {k + 1}/{plan.repeats}: {key}"
    try:
        r = measure(dataclasses.replace(plan.spec_of(key), label=label), key, k)
    except SessionFailed as exc:
        if key == BASELINE:
            raise
        _leave(sweep_id, store, state, key, "failed", f"run {exc.run_id} failed: {exc}")
        return None
    store.add_event(
        sweep_id, time.time(), RUN_EVENT, {"round": k, "key": key, "run_id": r["run_id"]}
    )
    if r.get("status", "completed") != "completed":
        raise KeyboardInterrupt(f"run {r['run_id']} was {r.get('status')}")
    return r


def _leave(
    sweep_id: int, store: RunStore, state: SweepState, key: str, status: str, reason: str
) -> None:
    state.stopped[key] = {"status": status, "reason": reason}
    store.add_event(
        sweep_id, time.time(), STOP_EVENT, {"key": key, "status": status, "reason": reason}
    )


def _stop_dominated(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    carbon: dict[str, Any],
    k: int,
) -> None:
    """After round ``k``: drop the candidates another set clearly beats, unless this was the
    last round anyway (stopping then saves nothing)."""
    if len(state.rounds) < MIN_PAIRS or k + 1 >= plan.repeats:
        return
    rm = table.metrics_by_round(state.rounds, carbon)
    active = state.active(plan)
    names = {c.key: describe_techniques(c.spec(plan.base)) for c in plan.candidates}
    # Only a set that could itself be recommended may push another out: one over the accuracy
    # or group-gap budget must not remove the set that would have been the answer.
    allowed = [BASELINE, *(k for k in active if table.budget_ok_so_far(rm, k, plan))]
    for key in active:
        reason = table.clear_dominator(rm, key, allowed, plan.margin, names)
        if reason is not None:
            _leave(sweep_id, store, state, key, "stopped early", f"after {k + 1} rounds, {reason}")


def _progress(
    plan: SweepPlan,
    state: SweepState,
    k: int,
    order: list[str],
    i: int,
    key: str,
) -> SweepProgress:
    per_round = 1 + len(state.active(plan))
    left_after = (len(order) - i) + (plan.repeats - k - 1) * per_round
    mean_s = sum(state.run_seconds) / len(state.run_seconds) if state.run_seconds else None
    done_runs = len(state.run_seconds)
    return SweepProgress(
        k,
        plan.repeats,
        key,
        done_runs + 1,
        done_runs + left_after,
        mean_s * left_after if mean_s is not None else None,
    )


# -- the answer ------------------------------------------------------------------------------
def _finish(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    settings: MeasureSettings,
    carbon: dict[str, Any],
    status: str,
    elapsed_s: float,
) -> dict[str, Any]:
    comps = {
        c.key: _store_comparison(plan, sweep_id, store, state, settings, carbon, c.key, status)
        for c in plan.candidates
        if any(c.key in rnd for rnd in state.rounds)
    }
    out = summarise(plan, state, comps, carbon)
    out.update(
        sweep_id=sweep_id,
        status=status,
        elapsed_s=elapsed_s,
        comparison_ids=[comp["comparison_id"] for comp in comps.values()],
        resume_command=f"wattlab sweep --resume {sweep_id}" if status != "completed" else None,
    )
    store.finish_run(sweep_id, status, out)
    return out


def _store_comparison(
    plan: SweepPlan,
    sweep_id: int,
    store: RunStore,
    state: SweepState,
    settings: MeasureSettings,
    carbon: dict[str, Any],
    key: str,
    status: str,
) -> dict[str, Any]:
    """The candidate against the shared baseline as an ordinary stored comparison."""
    opt = plan.spec_of(key)
    cid = store.create_run(
        "comparison",
        {"baseline": plan.base.to_dict(), "optimized": opt.to_dict(), "sweep_id": sweep_id},
        f"sweep {sweep_id}: {describe_techniques(opt)}",
    )
    results, sides, info = _pairs_of(state, key)
    comp = assemble(
        cid, plan.base, opt, plan.repeats, plan.cooldown_s, settings, carbon, None,
        results, sides, info, plan.margin,
    )  # fmt: skip
    comp["sweep_id"] = sweep_id
    comp["statistics"]["order"] = (
        "shared baseline: each round ran the baseline once and every candidate once, the "
        "baseline first in even rounds and last in odd ones, the candidates rotated"
    )
    store.finish_run(cid, "completed" if status == "completed" else "cancelled", comp)
    return comp


def _pairs_of(
    state: SweepState, key: str
) -> tuple[dict[int, dict[str, Any]], list[tuple[int, str, int]], dict[int, dict[str, Any]]]:
    """The rounds ``key`` ran in as compare's pairs (its round's baseline run and its own, in
    the order they ran), laid out by compare's own ``sides_of``."""
    pairs = []
    for k, rnd in enumerate(state.rounds):
        if key not in rnd or BASELINE not in rnd:
            continue
        runs = {"baseline": rnd[BASELINE], "optimized": rnd[key]}
        order = tuple(sorted(runs, key=lambda side: int(runs[side]["run_id"])))
        pairs.append(PairRun(k, (order[0], order[1]), runs))
    sides, info = sides_of(pairs)
    results = {int(r["run_id"]): r for pr in pairs for r in pr.runs.values()}
    return results, sides, info


def summarise(
    plan: SweepPlan,
    state: SweepState,
    comps: dict[str, dict[str, Any]],
    carbon: dict[str, Any],
) -> dict[str, Any]:
    """The stored answer: the table, the fronts, who dominates whom, the recommendation."""
    rm = table.metrics_by_round(state.rounds, carbon)
    metric = table.energy_metric(rm)
    rows = [table.build_row(BASELINE, "baseline (no technique)", rm, state.rounds, None, metric)]
    for cand in plan.candidates:
        row = table.build_row(
            cand.key, describe_techniques(cand.spec(plan.base)), rm, state.rounds,
            comps.get(cand.key), metric,
        )  # fmt: skip
        left = state.stopped.get(cand.key)
        row["status"] = left["status"] if left else "measured"
        row["reason"] = left["reason"] if left else None
        row["within_budget"] = table.within_budget(row, plan)
        row["warnings"] = list(cand.warnings)
        rows.append(row)
    rows[0].update(status="measured", reason=None, within_budget=True, warnings=[])
    measured = [r for r in rows if r["rounds"]]
    dom = table.dominance(measured)
    for r in rows:
        r["dominated_by"] = dom.get(r["key"], [])
        warnings = tuple(r.pop("warnings"))
        r["note"] = table.notes_for(r, warnings, plan)
    untrained = any(comp.get("untrained_head") for comp in comps.values())
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "mode": plan.base.mode,
        "model": plan.base.model,
        "dataset": plan.base.dataset,
        "plan": plan.to_dict(),
        "rounds_completed": len(state.rounds),
        "energy_metric": metric,
        "rows": rows,
        "refused": [r.to_dict() for r in plan.refused],
        "fronts": table.fronts(measured),
        "recommendation": table.recommend(rows, rm, plan),
        "untrained_head": untrained,
        "discarded_runs": state.discarded_runs,
        "disturbed_runs": sum(1 for rnd in state.rounds for r in rnd.values() if is_disturbed(r)),
        "counted_runs": sum(len(rnd) for rnd in state.rounds),
        "method": _method_text(plan),
    }


def _method_text(plan: SweepPlan) -> str:
    return (
        f"{plan.repeats} rounds; each round runs the baseline and every active candidate once "
        "(baseline first in even rounds, last in odd ones; candidates rotated), with a "
        f"{plan.cooldown_s:g} s cool-down. Each candidate pairs with its round's baseline run; "
        "verdicts use compare's paired 95% interval with a "
        f"{100 * plan.margin:g}% margin. From round {MIN_PAIRS} a candidate stops when another "
        "set used clearly less energy (whole interval beyond the margin) at no lower accuracy. "
        "Fronts and dominance use medians over rounds."
    )
