"""What the results view may say, without Qt: no verdict on a stopped comparison's incomplete
pairs or on an untrained head, each delta with its interval, which runs count and which are
gone, a single run's figures with their labels, and the series its charts draw."""

from __future__ import annotations

import pytest

from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.sampling import Sample
from wattlab.core.report import VERDICT_COLOURS
from wattlab.core.report import result_view as rv
from wattlab.core.results import Verdict
from wattlab.core.run.comparison import assemble, mark_cancelled
from wattlab.core.spec import RunSpec

HEAD_NOTE = (
    "bert checkpoint without a classification head: a new 2-label head was added "
    "(untrained until you train it)"
)


def run_result(
    rid: int,
    e: float = 1.0,
    acc: float = 0.5,
    status: str = "completed",
    notes: tuple[str, ...] = (),
    mode: str = "infer",
    techniques: tuple[str, ...] = (),
) -> dict:
    """A stored session result with what the view reads (as the worker and meter write it)."""
    return {
        "run_id": rid,
        "status": status,
        "energy_per_item_j": e,
        "throughput_items_per_s": 10.0 / e,
        "measured_phase": {
            "phases": ["infer"],
            "duration_s": 2.0,
            "gross_j": 20 * e,
            "net_j": None,
            "label": "estimated",
        },
        "phase_marks": [[100.0, "load"], [104.0, "infer"], [108.0, "post"]],
        "energy": [
            {"source": "cpu", "label": "estimated", "by_phase_j": {"infer": 6.0, "load": 3.0}},
            {"source": "ram", "label": "estimated", "by_phase_j": {"infer": 1.0, "load": 0.5}},
            {
                "source": "gpu0",
                "label": "measured",
                "by_phase_j": {"infer": 99.0},
                "in_total": False,
            },
        ],
        "spec": {"mode": mode, "techniques": [{"name": t} for t in techniques]},
        "session": {
            "mode": mode,
            "items": 20,
            "metrics": {"accuracy": acc},
            "model": {"notes": list(notes), "size_bytes": 1000},
        },
    }


def comparison(
    pairs: int,
    repeats: int = 5,
    cancelled_run: int | None = None,
    notes: tuple[str, ...] = (),
    opt_e: float = 0.8,
    mode: str = "infer",
) -> tuple[dict, dict[int, dict]]:
    """A comparison assembled by core from ``pairs`` pairs (run ids 1, 2, ...; odd ids are
    baseline); ``cancelled_run``: that run stopped, and so did the comparison."""
    results, sides = {}, []
    for k in range(2 * pairs):
        rid, side = k + 1, ("baseline", "optimized")[k % 2]
        e = 1.0 + 0.01 * (k // 2) if side == "baseline" else opt_e + 0.012 * (k // 2)
        acc = 0.5 if side == "baseline" else 0.6 + 0.01 * (k // 2)
        status = "cancelled" if rid == cancelled_run else "completed"
        results[rid] = run_result(rid, e, acc, status, notes, mode)
        sides.append((rid, side, k // 2))
    opt = RunSpec(mode=mode, techniques=({"name": "onnx-runtime"},))
    comp = assemble(
        7,
        RunSpec(mode=mode),
        opt,
        repeats,
        0,
        MeasureSettings(0.05, 0.1),
        CarbonSettings().resolved(),
        None,
        results,
        sides,
    )
    if cancelled_run is not None:
        mark_cancelled(comp)
    return comp, results


def test_a_cancelled_comparison_says_so_and_gives_no_verdict_without_enough_pairs():
    comp, results = comparison(2, cancelled_run=4)  # pair 2's optimized run was stopped
    assert comp["pairs_completed"] == 1
    text = rv.cancelled_text(comp)
    assert text.startswith("Cancelled: 1 of 5 pairs completed; no verdict on incomplete pairs")
    rows = rv.comparison_rows(comp)
    assert rows and all(r.colour is None for r in rows)
    assert {r.cells[4] for r in rows} <= {"too few repeats", "no complete pairs"}
    size = next(r for r in rows if r.metric == "model_size_bytes")
    assert size.cells[4] == "too few repeats"  # core calls a 1-pair deterministic metric


def test_a_completed_comparison_keeps_its_verdicts_and_colours():
    comp, _ = comparison(5)
    assert rv.cancelled_text(comp) is None and rv.comparison_status(comp) == "completed"
    energy = next(r for r in rv.comparison_rows(comp) if r.metric == "energy_per_item_j")
    assert energy.cells[4] == "better" and energy.colour == VERDICT_COLOURS["better"]


def test_each_delta_carries_its_95_interval():
    v = Verdict("energy_per_item_j", "Energy per item", "J", 1.0, 0.9, None, None, -0.1, -10.0,
                (0.85, 0.95), "better", "estimated", 5)  # fmt: skip
    assert rv.ci_text(v) == "95% interval of the change: -15.0% to -5.0%"
    assert rv.delta_text(v) == "-10.0% [-15.0, -5.0%]"
    acc = Verdict("accuracy", "Accuracy", "", 0.5, 0.6, None, None, 0.1, 20.0, (1.1, 1.3),
                  "better", None, 5)  # fmt: skip
    assert rv.delta_text(acc) == "+10.0 pt [+10.0, +30.0% rel.]"
    assert rv.ci_text(acc).endswith("+10.0% to +30.0% (relative)")
    none = Verdict("x", "X", "", 1.0, None, None, None, None, None, None, "unknown")
    assert rv.delta_text(none) == "-"
    comp, _ = comparison(5)
    energy = next(r for r in rv.comparison_rows(comp) if r.metric == "energy_per_item_j")
    assert energy.cells[3].endswith("%]") and energy.delta_tip.startswith("95% interval")


def test_runs_of_a_stopped_comparison_are_marked_and_left_out_of_the_verdict():
    comp, results = comparison(3, cancelled_run=6)
    rows = {r.run_id: r for r in rv.per_run_rows(comp, results)}
    assert rows[6].cancelled and rows[6].cells[3] == "cancelled" and rows[6].cells[4] == "no"
    assert rows[5].cells[4] == "no"  # its partner: the pair is incomplete
    assert [rows[i].cells[4] for i in (1, 2, 3, 4)] == ["yes"] * 4
    assert rows[1].cells[1:4] == ["baseline", "1", "completed"]
    assert rows[2].cells[8] == "estimated" and rows[2].cells[5].endswith(" J")


def test_run_statuses_come_from_per_run_when_core_stores_them():
    comp, _ = comparison(2, cancelled_run=4)
    for pr in comp["per_run"]:
        pr["status"] = "cancelled" if pr["run_id"] == 4 else "completed"
    rows = {r.run_id: r for r in rv.per_run_rows(comp)}
    assert rows[4].cancelled and rows[4].cells[4] == "no" and rows[1].cells[4] == "yes"


def test_core_stores_each_runs_status_in_the_comparison():
    comp, _ = comparison(2, cancelled_run=4)
    rows = {r.run_id: r for r in rv.per_run_rows(comp)}
    assert rows[4].cells[3] == "cancelled" and rows[4].cells[4] == "no"


def test_without_statuses_a_stopped_comparison_does_not_guess_which_run_counts():
    comp, _ = comparison(2, cancelled_run=4)
    for pr in comp["per_run"]:  # stored before core kept each run's status
        pr.pop("status")
    rows = {r.run_id: r for r in rv.per_run_rows(comp)}
    assert rows[4].cells[3] == "-" and rows[4].cells[4] == "-"  # unknown, not "yes"
    done, _ = comparison(3)  # finished: every counted run ran to its end
    assert {(r.cells[3], r.cells[4]) for r in rv.per_run_rows(done)} == {("completed", "yes")}


def test_deleted_runs_are_named():
    comp, results = comparison(2)
    del results[2]
    results[3] = None
    assert rv.missing_runs(comp, runs=results) == [2, 3]
    assert rv.missing_runs(comp, {4, 1}) == [1, 4]  # in the order the runs ran
    assert rv.missing_runs(comp) == [] and rv.deleted_text([]) is None
    assert rv.deleted_text([2, 3]).startswith(
        "Runs 2, 3 of this comparison were deleted: charts drawn from the runs (power over "
        "time, the report's chart page) are unavailable."
    )
    assert rv.deleted_text([5]).startswith("Run 5 of this comparison was deleted")
    rows = {r.run_id: r for r in rv.per_run_rows(comp, results)}
    assert rows[2].deleted and rows[2].cells[3] == "completed (deleted)" and not rows[1].deleted
    rows = {r.run_id: r for r in rv.per_run_rows(comp, missing={4})}
    assert rows[4].deleted and not rows[2].deleted


def test_an_untrained_head_is_found_in_a_run_and_in_a_comparison():
    assert HEAD_NOTE in rv.untrained_head_caveat(run_result(1, notes=(HEAD_NOTE,)))
    assert rv.untrained_head_caveat(run_result(1)) is None
    # a training session trains the new head: its accuracy is the model's
    assert rv.untrained_head_caveat(run_result(1, notes=(HEAD_NOTE,), mode="train")) is None
    comp, results = comparison(3, notes=(HEAD_NOTE,))
    assert HEAD_NOTE in rv.untrained_head_caveat(comp)  # core stores the sides' model notes
    older = {k: v for k, v in comp.items() if k != "model_notes"}  # stored before they were
    assert rv.untrained_head_caveat(older) is None
    assert HEAD_NOTE in rv.untrained_head_caveat(older, results)
    assert rv.untrained_head_caveat({**older, "runs": results}) is not None  # comparison.json
    trained, runs = comparison(3, notes=(HEAD_NOTE,), mode="train")
    assert rv.untrained_head_caveat(trained, runs) is None


def test_an_untrained_head_gets_no_accuracy_verdict_in_core_or_the_view():
    """Core judges it (so the PDF and CSV say it too); the view adds the caveat beside it."""
    comp, _ = comparison(5, notes=(HEAD_NOTE,))
    acc = next(v for v in comp["verdicts"] if v["metric"] == "accuracy")
    assert acc["verdict"] == rv.UNTRAINED_VERDICT and comp["untrained_head"]
    assert f"points ({rv.UNTRAINED_VERDICT})" in comp["headline"]
    assert "(better)" not in comp["headline"].split("accuracy")[1]
    caveat = rv.untrained_head_caveat(comp)
    rows = {r.metric: r for r in rv.comparison_rows(comp, caveat)}
    acc_row = rows["accuracy"]
    assert acc_row.cells[4] == rv.UNTRAINED_VERDICT and acc_row.colour is None
    assert acc_row.note == caveat
    assert acc_row.cells[3].startswith("+")  # the change itself is still shown
    assert rows["energy_per_item_j"].cells[4] == "better" and not rows["energy_per_item_j"].note
    trained, _ = comparison(5)
    plain = next(v for v in trained["verdicts"] if v["metric"] == "accuracy")
    assert plain["verdict"] == "better"  # a trained head keeps its verdict


def test_a_run_is_titled_for_what_it_is_and_labels_its_energy():
    assert rv.run_title(run_result(1)) == "This run"
    assert rv.run_title(run_result(1, techniques=("onnx-runtime", "quantization"))) == (
        "Optimized run: onnx-runtime + quantization"
    )
    rows = {r.metric: r for r in rv.run_table_rows(run_result(1, e=2.0))}
    assert rows["energy_j"].cells[1] == "40 J [estimated]" and rows["energy_j"].cells[5] == (
        "estimated"
    )
    assert rows["energy_net_j"].cells[1] == "-"  # unknown, never 0
    assert rows["throughput_items_s"].cells[1] == "5 items/s" and rows["duration_s"].cells[5] == "-"
    assert "energy_per_token_j" not in rows
    assert all(r.cells[2:5] == ["", "", ""] for r in rows.values())
    caveat = rv.untrained_head_caveat(run_result(1, notes=(HEAD_NOTE,)))
    noted = {r.metric: r.note for r in rv.run_table_rows(run_result(1), caveat)}
    assert noted["accuracy"] == caveat and noted["energy_j"] == ""


def test_energy_per_phase_counts_the_sources_in_the_total_in_run_order():
    pe = rv.phase_energy(run_result(1))
    assert pe.phases == [("load", 3.5), ("infer", 7.0)] and pe.label == "estimated"


def test_power_over_time_is_aligned_at_the_measured_phase():
    samples = [Sample(100.0 + t, {"est.cpu_floor_w": 5.0}) for t in range(11)]
    s = rv.power_series(run_result(1), samples)
    assert s.t[0] == pytest.approx(-3.0) and s.t[-1] == pytest.approx(6.0)
    assert list(s.w) == pytest.approx([5.0] * 10)
    assert s.window == (0.0, 4.0)
    assert rv.power_series(run_result(1), []).t.size == 0


def test_every_repeat_of_a_metric_with_hover_text():
    comp, results = comparison(3, cancelled_run=6)
    assert ("energy_per_item_j", "Energy per item") in rv.metric_choices(comp)
    pts = rv.repeat_points(comp, "energy_per_item_j", results)
    assert [p.x for p in pts["baseline"]] == [1, 2, 3]
    assert [p.y for p in pts["baseline"]] == pytest.approx([1.0, 1.01, 1.02])
    first = pts["optimized"][0]
    assert first.tip == "optimized run 2, pair 1: 0.8 J [estimated]" and first.counted
    last = pts["optimized"][-1]
    assert not last.counted and last.tip.endswith("; cancelled; not in the verdict")
    acc = rv.repeat_points(comp, "accuracy", results)["baseline"][0]
    assert acc.tip == "baseline run 1, pair 1: 0.5000"  # no energy label on a quality figure
    assert rv.metric_unit(comp, "energy_per_item_j") == "J"
