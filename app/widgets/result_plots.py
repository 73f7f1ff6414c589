"""The results view's interactive charts (pyqtgraph: zoom and pan with the mouse, values on
hover): every repeat of a chosen metric for a comparison, power over time and energy per phase
for a single run. The series come from core.report.result_view; nothing is computed here.

Legends are a line of text above each plot, never drawn inside it, so they cannot cover data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from wattlab.core.report import BASE_C, OPT_C
from wattlab.core.report import result_view as rv
from wattlab.core.report.text import fmt_value

SIDE_COLOURS = {"baseline": BASE_C, "optimized": OPT_C}
PHASE_C = "#55a868"
# Titles and axis labels a little smaller than pyqtgraph's: a plot item is at least as wide
# as its title, and at 1024x700 two side by side were wider than their pane (the power plot
# was cut under the phases plot).
TITLE_SIZE = "9pt"


def _plot(unit: str, bottom: str) -> pg.PlotWidget:
    """A small, white plot: mouse zoom and pan as pyqtgraph has them, no SI prefixes (a unit
    of "kJ (x1000)" helps nobody), and no minimum size beyond a few lines of text."""
    w = pg.PlotWidget()
    w.setBackground("w")
    w.showGrid(x=False, y=True, alpha=0.15)
    w.setLabel("left", unit)
    w.setLabel("bottom", bottom)
    for side in ("left", "bottom"):
        w.getAxis(side).enableAutoSIPrefix(False)
    w.setMinimumSize(160, 120)
    w.getViewBox().setDefaultPadding(0.08)  # points at the ends stay clear of the axes
    return w


def _legend_html(entries: Sequence[tuple[str, str]]) -> str:
    return "&nbsp;&nbsp;".join(
        f"<span style='color:{colour}'>&#9679;</span> {name}" for name, colour in entries
    )


class RepeatsChart(QWidget):
    """Every repeat of both sides for the metric chosen in ``metric``, at its pair; a run that
    is in no verdict pair (cancelled, or its pair incomplete) is drawn hollow."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Metric:"))
        self.metric = QComboBox()
        self.metric.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.metric.setMinimumContentsLength(16)
        row.addWidget(self.metric)
        self.legend = QLabel(
            _legend_html(list(SIDE_COLOURS.items())) + "&nbsp;&nbsp;x: not in the verdict"
        )
        self.legend.setTextFormat(Qt.RichText)
        row.addWidget(self.legend)
        row.addStretch(1)
        lay.addLayout(row)
        self.plot = _plot("", "pair")
        lay.addWidget(self.plot, 1)
        self.scatters: dict[str, pg.ScatterPlotItem] = {}
        self.lines: dict[str, pg.PlotDataItem] = {}
        for side, colour in SIDE_COLOURS.items():
            self.lines[side] = self.plot.plot([], [], pen=pg.mkPen(colour, width=1))
            sc = pg.ScatterPlotItem(hoverable=True, tip=_tip, hoverSize=11)
            self.plot.addItem(sc)
            self.scatters[side] = sc
        self._comp: Mapping[str, Any] = {}
        self._runs: rv.Runs | None = None
        self.metric.currentIndexChanged.connect(self._draw)

    def set_comparison(self, comp: Mapping[str, Any], runs: rv.Runs | None = None) -> None:
        """Offer the comparison's metrics (keeping the chosen one where it has it) and draw."""
        keep = self.metric.currentData()
        self._comp, self._runs = comp, runs
        self.metric.blockSignals(True)
        self.metric.clear()
        for key, label in rv.metric_choices(comp):
            self.metric.addItem(label, key)
        at = self.metric.findData(keep)
        if at < 0:
            primary = (comp.get("statistics") or {}).get("primary_metric")
            at = max(self.metric.findData(primary), 0)
        self.metric.setCurrentIndex(at)
        self.metric.blockSignals(False)
        self._draw()

    def _draw(self) -> None:
        key = self.metric.currentData()
        points = rv.repeat_points(self._comp, key, self._runs) if key else {}
        xs: set[int] = set()
        for side, colour in SIDE_COLOURS.items():
            pts = sorted(points.get(side, []), key=lambda p: p.x)
            counted = [p for p in pts if p.counted]
            self.lines[side].setData([p.x for p in counted], [p.y for p in counted])
            self.scatters[side].setData(spots=[_spot(p, colour) for p in pts])
            xs.update(p.x for p in pts)
        self.plot.getAxis("bottom").setTicks([[(x, str(x)) for x in sorted(xs)]])
        self.plot.setLabel("left", rv.metric_unit(self._comp, key) if key else "")
        self.plot.setTitle(
            f"{self.metric.currentText()}: each repeat" if key else "", size=TITLE_SIZE
        )
        self.plot.enableAutoRange()


def _tip(x: float, y: float, data: Any) -> str:
    """The hover text of a point: core's words for it (run, pair, value, unit and label)."""
    return str(data) if data else f"{x:g}: {y:.4g}"


def _spot(p: rv.RepeatPoint, colour: str) -> dict[str, Any]:
    return {
        "pos": (p.x, p.y),
        "data": p.tip,
        "size": 9,
        "symbol": "o" if p.counted else "x",
        "pen": pg.mkPen(colour, width=1.5),
        "brush": pg.mkBrush(colour) if p.counted else pg.mkBrush(None),
    }


class RunCharts(QWidget):
    """One run: total power over time with the measured window shaded (when its samples are
    given), and its energy per phase with each bar's joules and label written on it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.power = _plot("W", "s from the measured start")
        self.power.setTitle("Total power; shaded: measured", size=TITLE_SIZE)
        self.power_curve = self.power.plot([], [], pen=pg.mkPen(OPT_C, width=1))
        self.window = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(221, 132, 82, 40))
        self.power.addItem(self.window)
        self.power_note = QLabel()
        self.power_note.setWordWrap(True)
        self.power_note.setAlignment(Qt.AlignCenter)
        self.phases = _plot("J", "phase")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=PHASE_C)
        self.phases.addItem(self.bars)
        self.bar_labels: list[pg.TextItem] = []
        for w in (self.power, self.power_note, self.phases):
            lay.addWidget(w, 1)

    def set_run(
        self,
        result: Mapping[str, Any],
        samples: Sequence[Any] | None = None,
        phases: Sequence[tuple[float, str]] | None = None,
    ) -> None:
        self._set_power(result, samples, phases)
        self._set_phases(result)

    def _set_power(
        self,
        result: Mapping[str, Any],
        samples: Sequence[Any] | None,
        phases: Sequence[tuple[float, str]] | None,
    ) -> None:
        series = rv.power_series(result, samples or [], phases)
        has = series.t.size > 0
        self.power.setVisible(has)
        self.power_note.setVisible(not has)
        self.power_note.setText(
            "" if has else "Power over time: this run's samples are not available."
        )
        self.power_curve.setData(series.t, series.w)
        self.window.setVisible(series.window is not None)
        if series.window is not None:
            self.window.setRegion(series.window)
        self.power.enableAutoRange()

    def _set_phases(self, result: Mapping[str, Any]) -> None:
        pe = rv.phase_energy(result)
        for item in self.bar_labels:
            self.phases.removeItem(item)
        self.bar_labels = []
        xs = list(range(len(pe.phases)))
        heights = [j for _, j in pe.phases]
        self.bars.setOpts(x=xs, height=heights, width=0.6)
        suffix = f" [{pe.label}]" if pe.label else ""
        for x, (_, j) in zip(xs, pe.phases, strict=True):
            text = pg.TextItem(fmt_value(j, "J"), color="#333333", anchor=(0.5, 1.0))
            text.setPos(x, j)
            self.phases.addItem(text)
            self.bar_labels.append(text)
        self.phases.getAxis("bottom").setTicks([list(enumerate(n for n, _ in pe.phases))])
        self.phases.setTitle(
            f"Energy per phase{suffix}" if pe.phases else "No energy per phase", size=TITLE_SIZE
        )
        self.phases.enableAutoRange()


class ResultPlots(QWidget):
    """The charts pane: a comparison's repeats, or a single run's power and phases."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.repeats = RepeatsChart()
        self.run = RunCharts()
        lay.addWidget(self.repeats, 1)
        lay.addWidget(self.run, 1)
        self.run.hide()

    def show_comparison(self, comp: Mapping[str, Any], runs: rv.Runs | None = None) -> None:
        self.run.hide()
        self.repeats.show()
        self.repeats.set_comparison(comp, runs)

    def show_run(
        self,
        result: Mapping[str, Any],
        samples: Sequence[Any] | None = None,
        phases: Sequence[tuple[float, str]] | None = None,
    ) -> None:
        self.repeats.hide()
        self.run.show()
        self.run.set_run(result, samples, phases)
