"""The results view a researcher keeps open (pytest-qt, offscreen): a stopped comparison shown
as what completed, single runs as first-class results, interactive per-repeat charts with hover
values, each delta with its interval, no stale charts, an untrained head's caveat, and a layout
that fits 1024x700. Results are built by core (assemble) or by hand: no worker runs."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, Qt
from PySide6.QtGui import QImage

from tests.test_result_view import HEAD_NOTE, comparison, run_result
from wattlab.core.measure.sampling import Sample
from wattlab.core.report import BASE_C, OPT_C

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui


@pytest.fixture
def view(qtbot):
    from wattlab.app.widgets.results import ResultsView

    v = ResultsView()
    qtbot.addWidget(v)
    v.resize(1024, 700)
    v.show()
    qtbot.waitExposed(v)
    return v


def column(table, c: int) -> list[str]:
    return [table.item(r, c).text() for r in range(table.rowCount())]


def row_of(table, label: str) -> int:
    return column(table, 0).index(label)


def png(w: int = 40, h: int = 30) -> bytes:
    img = QImage(w, h, QImage.Format_RGB32)
    img.fill(Qt.red)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    img.save(buf, "PNG")
    return bytes(data.data())


def samples() -> list[Sample]:
    return [Sample(100.0 + t, {"est.cpu_floor_w": 5.0 + t}) for t in range(11)]


class Hover:
    """The hover event pyqtgraph's scatter reads: a position in the item's coordinates."""

    exit = False

    def __init__(self, pos: QPointF) -> None:
        self._pos = pos

    def pos(self) -> QPointF:
        return self._pos


def test_a_stopped_comparison_is_marked_and_its_incomplete_pairs_get_no_verdict(view):
    comp, results = comparison(2, cancelled_run=4)  # Stop during pair 2's optimized run
    view.show_comparison(comp, runs=results)
    assert view.status_line.isVisible()
    assert view.status_line.text().startswith(
        "Cancelled: 1 of 5 pairs completed; no verdict on incomplete pairs"
    )
    t = view.table
    assert set(column(t, 4)) <= {"too few repeats", "no complete pairs"}
    for r in range(t.rowCount()):
        for c in (3, 4):
            assert t.item(r, c).background().style() == Qt.NoBrush  # no verdict colouring
    runs = view.runs_table
    at = column(runs, 0).index("4")
    assert runs.item(at, 3).text() == "cancelled" and runs.item(at, 4).text() == "no"
    assert runs.item(at, 0).font().italic()
    assert runs.item(column(runs, 0).index("1"), 4).text() == "yes"
    assert view.export_btn.isEnabled() and view.shown() is comp  # export what core writes


def test_a_completed_comparison_is_not_marked_cancelled(view):
    comp, results = comparison(5)
    view.show_comparison(comp, runs=results)
    assert not view.status_line.isVisible()
    r = row_of(view.table, "Energy per item")
    assert view.table.item(r, 4).text() == "better"
    assert view.table.item(r, 4).background().style() != Qt.NoBrush


def test_each_delta_shows_its_95_interval(view):
    comp, _ = comparison(5)
    view.show_comparison(comp)
    item = view.table.item(row_of(view.table, "Energy per item"), 3)
    assert view.table.horizontalHeaderItem(3).text() == "Delta [95% CI]"
    assert re.fullmatch(r"-\d+\.\d% \[-\d+\.\d, -\d+\.\d%\]", item.text())
    assert item.toolTip().startswith("95% interval of the change: -")


def test_a_single_run_is_shown_as_itself_with_source_charts_and_export(view, qtbot):
    comp, _ = comparison(3)
    view.show_comparison(comp, chart_png=png())
    res = run_result(12, e=2.0, techniques=("onnx-runtime",))
    view.show_run(res, samples())
    t = view.table
    assert t.horizontalHeaderItem(1).text() == "Optimized run: onnx-runtime"
    assert [t.isColumnHidden(c) for c in range(6)] == [False, False, True, True, True, False]
    assert t.horizontalHeaderItem(5).text() == "Source"
    energy = row_of(t, "Energy per item")
    assert t.item(energy, 1).text() == "2 J [estimated]" and t.item(energy, 5).text() == "estimated"
    assert view.run_result is res and view.comparison is None
    assert not view.table_tabs.isTabVisible(1) and not view.status_line.isVisible()
    charts = view.plots.run
    assert charts.power.isVisibleTo(view) and not charts.power_note.isVisibleTo(view)
    assert len(charts.power_curve.getData()[1]) == 10
    assert charts.window.isVisible() and tuple(charts.window.getRegion()) == (0.0, 4.0)
    assert list(charts.bars.opts["height"]) == [3.5, 7.0]  # load, infer; no unused GPU
    assert [x.toPlainText() for x in charts.bar_labels] == ["3.5 J", "7 J"]
    assert "[estimated]" in charts.phases.getPlotItem().titleLabel.text
    assert view.charts.pixmap().isNull()  # the comparison's report page went with it
    assert view.export_btn.isEnabled() and view.shown() is res
    with qtbot.waitSignal(view.export_requested, timeout=1000):
        qtbot.mouseClick(view.export_btn, Qt.LeftButton)


def test_a_run_without_techniques_or_samples_says_what_it_lacks(view):
    view.show_run(run_result(13))
    assert view.table.horizontalHeaderItem(1).text() == "This run"
    charts = view.plots.run
    assert not charts.power.isVisibleTo(view) and charts.power_note.isVisibleTo(view)
    assert "samples are not available" in charts.power_note.text()
    comp, _ = comparison(3)
    view.show_comparison(comp)  # back to a comparison: its columns and tabs come back
    assert view.table.horizontalHeaderItem(1).text() == "Baseline"
    assert not any(view.table.isColumnHidden(c) for c in range(6))
    assert view.table_tabs.isTabVisible(1) and view.run_result is None


def test_the_metric_chooser_overlays_every_repeat_with_values_on_hover(view):
    comp, results = comparison(3, cancelled_run=6)
    view.show_comparison(comp, runs=results)
    chart = view.plots.repeats
    offered = [chart.metric.itemData(i) for i in range(chart.metric.count())]
    assert {"energy_per_item_j", "throughput_items_s", "accuracy"} <= set(offered)
    assert set(offered) <= {v["metric"] for v in comp["verdicts"]}
    assert chart.metric.currentData() == "energy_per_item_j"  # the primary metric first
    base = chart.scatters["baseline"].points()
    assert [p.pos().x() for p in base] == [1, 2, 3]
    assert [p.pos().y() for p in base] == pytest.approx([1.0, 1.01, 1.02])
    assert {p.pen().color().name() for p in base} == {BASE_C}
    assert [p.brush().color().name() for p in base[:2]] == [BASE_C, BASE_C]
    assert base[2].brush().style() == Qt.NoBrush  # its partner was stopped: pair incomplete
    opt = chart.scatters["optimized"].points()
    assert {p.pen().color().name() for p in opt} == {OPT_C}
    assert opt[-1].brush().style() == Qt.NoBrush  # the stopped run: not in the verdict
    assert len(chart.lines["optimized"].getData()[0]) == 2  # the line joins counted runs only
    chart.metric.setCurrentIndex(chart.metric.findData("accuracy"))
    ys = [p.pos().y() for p in chart.scatters["optimized"].points()]
    assert ys == pytest.approx([0.6, 0.61, 0.62])
    assert chart.plot.getPlotItem().titleLabel.text == "Accuracy: each repeat"
    sc = chart.scatters["optimized"]
    sc.hoverEvent(Hover(sc.points()[0].pos()))
    assert sc.getViewBox().toolTip() == "optimized run 2, pair 1: 0.6000"
    assert chart.plot.getPlotItem().legend is None  # the legend is text above the plot
    assert "baseline" in chart.legend.text() and "optimized" in chart.legend.text()


def test_a_comparison_never_shows_the_previous_ones_charts(view):
    first, _ = comparison(3)
    view.show_comparison(first, chart_png=png())
    assert not view.charts.pixmap().isNull() and view.chart_tabs.isTabVisible(1)
    comp, _ = comparison(2, opt_e=0.5)
    view.show_comparison(comp)  # no chart page drawn for this one
    assert view.charts.pixmap().isNull()  # not the first comparison's page
    assert not view.chart_tabs.isTabVisible(1) and not view.charts_message.isVisible()
    ys = [p.pos().y() for p in view.plots.repeats.scatters["optimized"].points()]
    assert ys == pytest.approx([0.5, 0.512])  # this comparison's repeats, not the first's


def test_deleted_runs_are_named_above_the_charts(view):
    comp, results = comparison(2)
    view.show_comparison(comp, {3, 2})  # as the window finds them in the store
    assert view.charts_message.isVisible()  # above the chart tabs, whichever is open
    assert view.charts_message.text().startswith(
        "Runs 2, 3 of this comparison were deleted: charts drawn from the runs"
    )
    runs = view.runs_table
    assert runs.item(column(runs, 0).index("2"), 3).text() == "completed (deleted)"
    assert runs.item(column(runs, 0).index("2"), 0).font().italic()
    del results[4]
    view.show_comparison(comp, runs=results)  # or the stored results, looked up
    assert view.charts_message.text().startswith("Run 4 of this comparison was deleted")
    view.show_comparison(comp)
    assert not view.charts_message.isVisible()


def test_an_untrained_head_shows_its_caveat_by_the_accuracy_row_and_no_verdict(view):
    comp, results = comparison(5, notes=(HEAD_NOTE,))
    view.show_comparison(comp, runs=results)
    t = view.table
    acc = row_of(t, "Accuracy")
    assert t.item(acc, 4).text() == "untrained head: no verdict"
    assert t.item(acc, 4).background().style() == Qt.NoBrush
    assert not t.isColumnHidden(6) and HEAD_NOTE in t.item(acc, 6).text()
    assert t.item(row_of(t, "Energy per item"), 6).text() == ""
    assert "points (untrained head: no verdict)" in view.headline.text()
    assert "(better)" not in view.headline.text().split("accuracy")[1]
    view.show_run(run_result(1, notes=(HEAD_NOTE,)))
    assert HEAD_NOTE in view.table.item(row_of(view.table, "Accuracy"), 6).text()
    view.show_run(run_result(1))
    assert view.table.isColumnHidden(6)  # no caveat, no empty column


def test_the_view_fits_1024x700(view, qtbot):
    comp, results = comparison(5)
    view.show_comparison(comp, runs=results, chart_png=png(800, 1100))  # taller than the view
    hint = view.minimumSizeHint()
    assert hint.width() <= 700 and hint.height() <= 450
    assert view.splitter.orientation() == Qt.Vertical
    table_h, charts_h = view.splitter.sizes()
    assert table_h >= 150 and charts_h >= 150
    view.show_run(run_result(1), samples())
    assert view.minimumSizeHint().height() <= 450
