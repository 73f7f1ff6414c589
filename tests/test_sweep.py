"""The sweep's choice on known points: a stubbed measurement returns results whose energy and
accuracy are set per technique set, so the Pareto fronts, the dominance, the early stops, the
recommendation and the resume can be checked exactly without running a model."""

from __future__ import annotations

from typing import Any

import pytest

from wattlab.core.errors import UserError
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.run import pareto, sweep
from wattlab.core.run.sweep_plan import (
    BASELINE,
    Candidate,
    SweepPlan,
    auto_texts,
    build_plan,
    round_order,
)
from wattlab.core.spec import build_spec

# key -> (energy per item in J, accuracy). Known answer under a 0.5-point budget: "A".
POINTS: dict[str, tuple[float, float]] = {
    BASELINE: (1.0, 0.90),
    "A": (0.50, 0.90),  # the cheapest set that keeps accuracy
    "B": (0.40, 0.80),  # cheaper still, but 10 points less accurate: over the budget
    "C": (1.30, 0.89),  # costs more and is less accurate: the baseline clearly beats it
    "D": (0.55, 0.905),  # a little dearer than A, a little more accurate: on the front
    "E": (0.70, 0.88),  # A beats it on both: clearly dominated by A
}
# Real technique texts behind the letters (the plan checks them like the CLI does).
TEXT = {
    "A": "mixed-precision:dtype=bf16,mode=cast",
    "B": "quantization:backend=ort",
    "C": "pruning:method=unstructured,amount=0.3",
    "D": "mixed-precision:dtype=bf16,mode=autocast",
    "E": "onnx-runtime",
}
LETTER = {**{t: k for k, t in TEXT.items()}, BASELINE: BASELINE}
GAPS: dict[str, float] = {}  # key -> best-worst group accuracy gap, for the fairness tests
DRIFT = (1.0, 1.1, 0.95, 1.05, 0.9)  # one machine-wide factor per round, shared by all runs


def _plan(repeats: int = 5) -> SweepPlan:
    base = build_spec(model="demo", dataset="demo", mode="infer")
    cands = [Candidate(TEXT[k], (TEXT[k],)) for k in POINTS if k != BASELINE]
    return SweepPlan(base, cands, repeats=repeats, cooldown_s=0.0)


def _fake_result(store: RunStore, key: str, k: int, n: int) -> dict[str, Any]:
    key = LETTER[key]
    energy, acc = POINTS[key]
    per_item = energy * DRIFT[k % len(DRIFT)] * (1 + 0.002 * ((n * 7) % 5 - 2))
    rid = store.create_run("session", {}, f"{key} {k}")
    result = {
        "run_id": rid,
        "status": "completed",
        "measured_phase": {
            "phases": ["infer"],
            "duration_s": 2.0,
            "gross_j": per_item * 1000,
            "net_j": per_item * 900,
            "label": "estimated",
        },
        "energy_per_item_j": per_item,
        "throughput_items_s": 500 / energy,
        "phases": {"prepare": 0.5 if key != BASELINE else 0.0},
        "energy": [
            {
                "source": "cpu",
                "label": "estimated",
                "in_total": True,
                "by_phase_j": {"prepare": 3.0},
            }
        ],
        "session": {
            "fairness": {"accuracy_gap": GAPS[key]} if key in GAPS else None,
            "metrics": {"accuracy": acc},
            "peak_mem_bytes": int(4e8 * energy),
            "latency_ms": {"p50": 5.0 * energy},
            "model": {"size_bytes": int(4e6 * energy)},
        },
    }
    store.finish_run(rid, "completed", result)
    return result


class StubMeasure:
    """Counts calls; ``stop_after`` makes ``should_stop`` true once that many runs ran."""

    def __init__(self, store: RunStore, stop_after: int | None = None) -> None:
        self.store, self.stop_after, self.calls = store, stop_after, []

    def __call__(self, spec: Any, key: str, k: int) -> dict[str, Any]:
        self.calls.append((key, k))
        return _fake_result(self.store, key, k, len(self.calls))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.calls) >= self.stop_after


def _run(store: RunStore, plan: SweepPlan, stub: StubMeasure, state=None) -> dict[str, Any]:
    sid = sweep.start(plan, store) if state is None else state[0]
    return sweep.run(
        plan,
        sid,
        store,
        MeasureSettings(),
        CarbonSettings(),
        state=None if state is None else state[1],
        measure=stub,
        should_stop=stub.should_stop,
    )


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs.db")


def test_pareto_front_and_dominance_on_known_points():
    points = {k: (e, -a) for k, (e, a) in POINTS.items()}
    assert pareto.front(points) == ["A", "B", "D"]
    dom = pareto.dominated_by(points)
    assert dom[BASELINE] == ["A", "D"]  # same accuracy as A at twice the energy
    assert dom["E"] == ["A", "D"] and dom["A"] == [] and dom["C"] == [BASELINE, "A", "D"]
    assert pareto.front({"x": (1.0, None), "y": (2.0, 1.0)}) == ["y"]  # unknown: left out


def test_sweep_recommends_the_cheapest_set_within_budget_and_stops_dominated(store):
    stub = StubMeasure(store)
    out = _run(store, _plan(), stub)
    rows = {LETTER[r["key"]]: r for r in out["rows"]}
    assert out["status"] == "completed" and out["rounds_completed"] == 5
    assert out["recommendation"]["key"] == TEXT["A"]
    assert "clearly ahead of the runner-up mixed-precision" in out["recommendation"]["confidence"]
    assert [LETTER[k] for k in out["fronts"]["energy_accuracy"]] == ["A", "B", "D"]
    assert rows["B"]["within_budget"] is False and rows["B"]["energy_verdict"] == "better"
    assert rows["B"]["accuracy_change_points"] == pytest.approx(-10.0)
    # C loses to the baseline and E to A: both stop after round 3, the rest run all 5.
    assert rows["C"]["status"] == rows["E"]["status"] == "stopped early"
    assert "clearly dominated by baseline" in rows["C"]["reason"]
    assert "clearly dominated by mixed-precision:mode=cast" in rows["E"]["reason"]
    assert rows["C"]["rounds"] == rows["E"]["rounds"] == 3 and rows["A"]["rounds"] == 5
    assert len(stub.calls) == 3 * 6 + 2 * 4
    assert rows["A"]["energy_change_pct"] == pytest.approx(-50.0, abs=1.0)
    assert rows["A"]["prepare_s"] == 0.5 and rows["A"]["prepare_j"] == 3.0
    # Each candidate is an ordinary stored comparison that shares the baseline's runs.
    comp = store.result(rows["A"]["comparison_id"])
    assert comp["pairs_completed"] == 5 and comp["sweep_id"] == out["sweep_id"]
    base_runs = {p["run_id"] for p in comp["per_run"] if p["side"] == "baseline"}
    other = store.result(rows["D"]["comparison_id"])
    assert base_runs == {p["run_id"] for p in other["per_run"] if p["side"] == "baseline"}
    assert store.run(out["sweep_id"]).status == "completed"


def test_no_recommendation_when_nothing_saves_within_budget(store):
    plan = _plan(repeats=3)
    plan.max_accuracy_loss_points = 0.5
    plan.candidates = [Candidate(TEXT[k], (TEXT[k],)) for k in ("B", "C")]
    out = _run(store, plan, StubMeasure(store))
    rec = out["recommendation"]
    assert rec["key"] == BASELINE and rec["confidence"] is None
    assert "the sets that save energy are over the budget" in rec["reason"]


def test_an_interrupted_sweep_resumes_without_measuring_twice(store):
    plan = _plan()
    first = StubMeasure(store, stop_after=8)  # round 1 (6 runs) and 2 runs of round 2
    partial = _run(store, plan, first)
    sid = partial["sweep_id"]
    assert partial["status"] == "cancelled" and partial["rounds_completed"] == 1
    assert partial["resume_command"] == f"wattlab sweep --resume {sid}"
    assert store.run(sid).status == "cancelled"
    plan2, state = sweep.load(store, sid)
    assert len(state.rounds) == 1 and len(state.discarded_runs) == 2
    assert [c.key for c in plan2.candidates] == [c.key for c in plan.candidates]
    second = StubMeasure(store)
    out = _run(store, plan2, second, state=(sid, state))
    assert out["status"] == "completed" and out["rounds_completed"] == 5
    assert len(second.calls) == 26 - 6  # round 1 kept; round 2 measured again in full
    assert {k for _, k in second.calls} == {1, 2, 3, 4}
    assert out["recommendation"]["key"] == TEXT["A"]
    # The partial pass's comparison rows were replaced, not duplicated.
    for cid in partial["comparison_ids"]:
        assert store.run(cid) is None
    with pytest.raises(UserError, match="complete; nothing to resume"):
        sweep.load(store, sid)


def test_ctrl_c_keeps_the_sweep_resumable(store):
    plan = _plan(repeats=3)

    class Interrupting(StubMeasure):
        def __call__(self, spec: Any, key: str, k: int) -> dict[str, Any]:
            if len(self.calls) == 7:
                raise KeyboardInterrupt
            return super().__call__(spec, key, k)

    sid = sweep.start(plan, store)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(
            plan, sid, store, MeasureSettings(), CarbonSettings(), measure=Interrupting(store)
        )
    assert store.run(sid).status == "cancelled"
    assert store.result(sid)["rounds_completed"] == 1


def test_a_set_over_the_fairness_budget_never_stops_the_one_that_would_be_recommended(
    store, monkeypatch
):
    # A is cheapest but widens the group gap by 3 points; E saves less and keeps the gap.
    monkeypatch.setitem(GAPS, BASELINE, 0.02)
    monkeypatch.setitem(GAPS, "A", 0.05)
    monkeypatch.setitem(GAPS, "E", 0.02)
    monkeypatch.setitem(POINTS, "E", (0.70, 0.90))
    plan = _plan()
    plan.max_fairness_gap_points = 1.0
    plan.candidates = [Candidate(TEXT[k], (TEXT[k],)) for k in ("A", "E")]
    out = _run(store, plan, StubMeasure(store))
    rows = {LETTER[r["key"]]: r for r in out["rows"]}
    assert rows["E"]["status"] == "measured" and rows["A"]["within_budget"] is False
    assert out["recommendation"]["key"] == TEXT["E"]


def test_a_sweep_whose_sets_all_fail_stops_and_says_why(store):
    from wattlab.core.run.client import SessionFailed

    class Failing(StubMeasure):
        def __call__(self, spec, key, k):
            if key != BASELINE:
                self.calls.append((key, k))
                raise SessionFailed("the worker refused it", True, 99)
            return super().__call__(spec, key, k)

    stub = Failing(store)
    out = _run(store, _plan(), stub)
    assert len(stub.calls) == 6  # round 1 only: no baseline-alone rounds after every set failed
    assert "every set failed to run" in out["recommendation"]["reason"]


def test_too_few_rounds_is_the_reason_given_not_noise(store):
    out = _run(store, _plan(repeats=2), StubMeasure(store))
    assert out["recommendation"]["key"] == BASELINE
    assert "too few rounds for a verdict" in out["recommendation"]["reason"]


def test_the_fairness_budget_refuses_a_set_that_widens_the_group_gap():
    from wattlab.core.run.sweep_table import within_budget

    plan = _plan()
    plan.max_fairness_gap_points = 1.0
    fair = {"accuracy_change_points": -0.2, "fairness_change_points": 0.5}
    assert within_budget(fair, plan) is True
    assert within_budget({**fair, "fairness_change_points": 2.0}, plan) is False
    assert within_budget({**fair, "fairness_change_points": None}, plan) is False  # unknown
    assert within_budget({**fair, "accuracy_change_points": -0.6}, plan) is False
    assert within_budget({"accuracy_change_points": None}, plan) is None


def test_round_order_alternates_and_rotates():
    keys = [BASELINE, "a", "b", "c"]
    assert round_order(keys, 0) == [BASELINE, "a", "b", "c"]
    assert round_order(keys, 1) == ["a", "c", "b", BASELINE]
    assert round_order(keys, 2) == [BASELINE, "c", "a", "b"]


def test_auto_candidates_are_checked_by_preflight():
    base = build_spec(model="demo", dataset="demo", mode="infer")
    plan = build_plan(base, [("pruning:method=lottery",)], auto=True)
    keys = [c.key for c in plan.candidates]
    refused = {r.key: r.reason for r in plan.refused}
    assert "mixed-precision:dtype=bf16,mode=cast" in keys and "quantization:backend=ort" in keys
    assert "pruning:method=structured,amount=0.3 quantization:backend=ort" in keys
    assert "training mode" in refused["pruning:method=lottery"]
    if plan.base.device == "auto" and "quantization:backend=torchao" not in keys:
        assert "CUDA" in refused["quantization:backend=torchao"]  # a machine without a GPU
    assert len(keys) == len(set(keys))
    dense = next(c for c in plan.candidates if c.key.startswith("pruning:method=unstructured"))
    assert any("dense kernels" in w for w in dense.warnings)
    assert ("mixed-precision:dtype=fp16,mode=cast",) not in auto_texts("infer", "cpu")


def test_a_failing_baseline_ends_the_cli_in_one_line_with_the_resume_hint(
    tmp_path, monkeypatch, capsys
):
    from tests import tiny_models as tm
    from wattlab.core.cli.main import main
    from wattlab.core.run.client import SessionFailed

    model = tm.bert_classifier(tmp_path / "bert")
    data = tm.write_csv(tmp_path / "d.csv", tm.sentences(40))

    def failing_run(plan, sweep_id, *a, **kw):
        raise SessionFailed("the dataset has a label the model does not know", True, 7)

    monkeypatch.setattr(sweep, "run", failing_run)
    code = main(["sweep", "--model", str(model), "--dataset", str(data),
                 "--candidates", "onnx-runtime", "--idle", "0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len([ln for ln in err if ln.startswith("wattlab:")]) == 1
    assert "baseline run 7 kept as failed" in err[-1] and "wattlab sweep --resume" in err[-1]


def test_a_resumed_sweep_is_measured_with_the_settings_it_started_with():
    from wattlab.core.cli.sweep import _stored_settings
    from wattlab.core.measure.meter import MeasureSettings

    plan = _plan()
    plan.measure = {"interval_s": 0.05, "idle_s": 1.0, "settle_max_s": 10.0, "min_measure_s": 2.0}
    plan.carbon = {"region": "DE", "intensity_g_per_kwh": None, "pue": 1.2,
                   "price_per_kwh": None, "currency": "EUR"}  # fmt: skip
    again = SweepPlan.from_dict(plan.to_dict())
    settings, carbon = _stored_settings(again, MeasureSettings(interval_s=0.5), CarbonSettings())
    assert settings.interval_s == 0.05 and settings.idle_s == 1.0
    assert carbon.region == "DE" and carbon.pue == 1.2
