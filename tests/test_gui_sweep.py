"""The Sweep tab: it lists stored sweeps, shows core's table cells and recommendation, marks the
recommended point, turns a click on a candidate into its stored comparison (shown in Results),
says how to make a sweep when there is none, and fits a 1024x700 window."""

from __future__ import annotations

import copy

import pytest
from PySide6.QtWidgets import QApplication

from tests.test_result_view import comparison
from wattlab.app.widgets.sweep import EMPTY_TEXT, SweepView
from wattlab.core.measure.store import RunStore
from wattlab.core.report import sweep_text as st

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

MP = "mixed-precision:dtype=bf16,mode=cast"


def _row(key: str, text: str, energy: float, acc: float, cid: int | None, **more) -> dict:
    """A sweep table row with the fields the view and core's cells read."""
    return {
        "key": key,
        "text": text,
        "status": "measured",
        "comparison_id": cid,
        "energy_median_j": energy,
        "energy_label": "estimated",
        "accuracy": acc,
        "accuracy_change_points": 0.0,
        "latency_p50_ms": 15.6 * energy / 0.009,
        "peak_mem_bytes": 455188480,
        "model_size_bytes": 9236448,
        "throughput_items_s": 1978.4,
        "dominated_by": [],
        "reason": None,
        "note": f"note of {key}",
        **more,
    }


def sweep_result(cids: tuple[int, int] = (27, 28), rec: str = "quantization") -> dict:
    """A stored sweep result shaped as core's sweep writes it: baseline and two candidates."""
    rows = [
        _row("baseline", "baseline (no technique)", 0.0091, 0.956, None, dominated_by=[MP]),
        _row(MP, "mixed-precision:mode=cast", 0.0043, 0.956, cids[0], energy_change_pct=-75.0,
             energy_ci_pct=[-99.0, 507.0], energy_verdict="within noise", within_budget=True),
        _row("quantization", "quantization", 0.0028, 0.955, cids[1], energy_change_pct=-79.5,
             energy_ci_pct=[-96.1, -60.0], energy_verdict="better", within_budget=True,
             accuracy_change_points=-0.1),
    ]  # fmt: skip
    recommended = next(r for r in rows if r["key"] == rec)
    return {
        "kind": "sweep",
        "sweep_id": None,  # set when stored
        "status": "completed",
        "mode": "infer",
        "model": "demo",
        "dataset": "demo",
        "rounds_completed": 3,
        "elapsed_s": 106.2,
        "energy_metric": "energy_per_item_j",
        "plan": {"repeats": 3, "candidates": [{"key": MP}, {"key": "quantization"}]},
        "rows": rows,
        "fronts": {
            "energy_accuracy": [MP, "quantization"],
            "energy_latency": ["quantization"],
            "energy_memory": ["baseline", MP, "quantization"],
        },
        "recommendation": {
            "key": rec,
            "text": recommended["text"],
            "comparison_id": recommended["comparison_id"],
            "reason": "the least energy within the 0.5-point accuracy budget",
            "confidence": "high",
        },
        "comparison_ids": list(cids),
        "resume_command": None,
        "refused": [{"key": "pruning", "reason": "not for this model"}],
        "method": "3 rounds",
    }


def store_sweep(store: RunStore, out: dict, label: str = "sweep: 2 technique sets") -> int:
    sid = store.create_run("sweep", {}, label)
    out = {**copy.deepcopy(out), "sweep_id": sid}
    store.finish_run(sid, out["status"], out)
    return sid


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "sweeps.db")


@pytest.fixture
def view(qtbot, store):
    def make() -> SweepView:
        v = SweepView(store)
        qtbot.addWidget(v)
        v.resize(900, 700)
        v.show()
        return v

    return make


def test_lists_stored_sweeps_newest_first_and_shows_the_newest(view, store):
    older = store_sweep(store, sweep_result(), "sweep: first")
    newer = store_sweep(store, sweep_result(rec="baseline"), "sweep: second")
    v = view()
    assert [v.sweeps.itemData(i) for i in range(v.sweeps.count())] == [newer, older]
    assert v.sweeps.itemText(0) == f"#{newer} completed: sweep: second"
    assert v.sweep["sweep_id"] == newer
    assert v.status.text() == st.status_line(v.sweep)
    assert not v.empty.isVisible() and v.body.isVisible()


def test_table_has_one_row_per_sweep_row_with_cores_cells(view, store):
    out = sweep_result()
    store_sweep(store, out)
    v = view()
    assert v.table.rowCount() == len(out["rows"])
    assert [v.table.horizontalHeaderItem(c).text() for c in range(v.table.columnCount())] == list(
        st.COLUMNS
    )
    for r, row in enumerate(out["rows"]):
        cells = [v.table.item(r, c).text() for c in range(v.table.columnCount())]
        assert cells == st.row_cells(row, out["fronts"])  # in the sweep's order: no sorting
        assert row["note"] in v.table.item(r, 2).toolTip()
    assert not v.table.isSortingEnabled()


def test_recommendation_lines_are_shown_first_in_bold(view, store):
    out = sweep_result()
    store_sweep(store, out)
    v = view()
    lines = st.recommendation_lines(out)
    assert v.recommendation.text().startswith(f"<b>{lines[0]}</b>")
    assert "confidence: high" in v.recommendation.text()
    assert v.others.text() == "\n".join(st.other_lines(out))  # the refused set and its reason


def test_the_recommended_point_is_ringed_on_every_chart(view, store):
    store_sweep(store, sweep_result(rec="quantization"))
    v = view()
    assert v.recommended_point() == pytest.approx((0.0028, 0.955))
    v.axis.setCurrentIndex(1)  # latency p50: the same set, ringed at its latency
    assert v.recommended_point() == pytest.approx((0.0028, 15.6 * 0.0028 / 0.009))
    assert "energy per item (J, estimated)" == v.plot.getAxis("bottom").labelText


def test_clicking_a_candidate_opens_its_comparison_and_the_baseline_opens_nothing(
    view, store, qtbot
):
    store_sweep(store, sweep_result(cids=(41, 42)))
    v = view()
    points = {v.sweep["rows"][pt.data()]["key"]: pt for pt in v.scatter.points()}
    assert set(points) == {"baseline", MP, "quantization"}
    with qtbot.waitSignal(v.open_comparison, timeout=1000) as sig:
        v._points_clicked(v.scatter, [points["quantization"]], None)
    assert sig.args == [42]
    with qtbot.assertNotEmitted(v.open_comparison):
        v._points_clicked(v.scatter, [points["baseline"]], None)
    assert "quantization" in v._tip(0, 0, points["quantization"].data())


def test_double_clicking_a_row_opens_its_comparison(view, store, qtbot):
    store_sweep(store, sweep_result(cids=(41, 42)))
    v = view()
    with qtbot.waitSignal(v.open_comparison, timeout=1000) as sig:
        v.table.itemDoubleClicked.emit(v.table.item(1, 3))
    assert sig.args == [41]


def test_empty_store_says_how_to_make_a_sweep(view, store):
    v = view()
    assert v.empty.isVisible() and not v.body.isVisible()
    assert v.empty.text() == EMPTY_TEXT
    assert "wattlab sweep --model demo --mode infer --auto" in v.empty.text()
    store_sweep(store, sweep_result())
    v.refresh()  # a sweep run from a terminal appears on refresh
    assert v.body.isVisible() and v.table.rowCount() == 3


def test_a_sweep_without_a_result_yet_says_so(view, store):
    store.create_run("sweep", {}, "sweep: running")
    v = view()
    assert v.empty.isVisible() and "no stored result yet (status running)" in v.empty.text()


def test_in_the_window_a_clicked_point_shows_its_comparison_in_results(window, qtbot):
    store = window.store
    comp, results = comparison(3)
    for rid in sorted(results):  # the comparison's runs, stored under the same ids
        assert store.create_run("session", {}, f"run {rid}") == rid
        store.finish_run(rid, "completed", results[rid])
    cid = store.create_run("comparison", {}, "compare")
    store.finish_run(cid, "completed", comp)
    sid = store_sweep(store, sweep_result(cids=(cid, cid)))
    window.tabs.setCurrentWidget(window.sweep)  # showing the tab reads the store
    assert window.sweep.sweep["sweep_id"] == sid
    window.sweep.open_comparison.emit(cid)
    assert window.tabs.currentWidget() is window.results
    assert window.results.comparison == store.result(cid)  # as stored (JSON)
    assert window.results.comparison["headline"] == comp["headline"]
    window.open_stored(sid)  # a sweep row opened from the Runs tab shows in the Sweep tab
    assert window.tabs.currentWidget() is window.sweep


def test_the_sweep_tab_fits_a_1024x700_window(window):
    store_sweep(window.store, sweep_result())
    window.resize(1024, 700)
    window.tabs.setCurrentWidget(window.sweep)
    QApplication.processEvents()
    assert window.width() == 1024 and window.height() == 700
    v = window.sweep
    for w in (v.refresh_btn, v.axis, v.sweeps, v.table, v.plot):
        right = w.mapTo(window, w.rect().bottomRight())
        assert window.rect().contains(right), w
    assert v.table.height() >= v._table_height(3)  # every row in view
    assert v.plot.height() >= 140
