"""Sweep: one stored ``wattlab sweep`` at a time: its status, its recommendation, a Pareto chart
(energy per item against accuracy, latency or memory) and its table.

Every figure and sentence on screen is core's (core/report/sweep_text.py, the same words the CLI
and the PDF use); the chart's fields, scales and colours are the PDF's (sweep_report.PANELS). This
view only lays them out and turns a click on a candidate into ``open_comparison``, which the
main window answers by showing that stored comparison in Results. A sweep is started from the
CLI, never from here. Reading is one short store query for the list and one result for the shown
sweep, so it runs on the GUI thread like the Runs table's.
"""

from __future__ import annotations

import html
import textwrap
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.store import RunStore, StoreError
from wattlab.core.report import BASE_C, OPT_C, VERDICT_COLOURS
from wattlab.core.report import sweep_text as st
from wattlab.core.report.sweep_report import FRONT_C, PANELS

LIST_LIMIT = 2000  # newest runs scanned for sweeps: one light query (no results read)
ID_ROLE = Qt.ItemDataRole.UserRole
TIP_ROLE = Qt.ItemDataRole.ToolTipRole
TABLE_MIN_ROWS = 4  # rows the table always shows; the chart takes the rest of the height
LABEL_CHARS = 28  # a point's caption on the chart (its tooltip has the whole text)
TEXT_MAX_W = 240  # the technique-set column; its tooltip has the whole text
EMPTY_TEXT = (
    "No sweep stored yet. A sweep measures many technique sets against one shared baseline "
    "and recommends one. Start one from a terminal, for example:\n\n"
    "    wattlab sweep --model demo --mode infer --auto\n\n"
    "It appears here when it ends (or when it is stopped: it can be resumed)."
)
Y_CELL = {  # the table column whose text a point's tooltip shows for its y value
    "accuracy": "Accuracy",
    "latency_p50_ms": "Latency p50",
    "peak_mem_bytes": "Peak mem",
}
FRONT_WORDS = {
    "energy_accuracy": "accuracy",
    "energy_latency": "latency",
    "energy_memory": "memory",
}


class SweepView(QWidget):
    """``refresh()`` re-reads the store (the main window calls it when a run ends; showing the
    tab calls it too). ``open_comparison`` carries the stored comparison id of a clicked point
    or double-clicked row."""

    open_comparison = Signal(int)

    def __init__(self, store: RunStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.sweep: dict[str, Any] | None = None  # the result on screen
        self._plotted: list[dict[str, Any]] = []  # the rows behind the scatter's points
        self._labels: list[pg.TextItem] = []  # their captions
        self._build()
        self.refresh()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(self._build_top())
        self.empty = _wrapping_label(EMPTY_TEXT)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty.setStyleSheet("color:#444; padding:12px")
        lay.addWidget(self.empty, 1)
        self.body = QWidget()
        bl = QVBoxLayout(self.body)
        bl.setContentsMargins(0, 0, 0, 0)
        self.status = _wrapping_label("")
        self.status.setStyleSheet("color:#444")
        self.recommendation = _wrapping_label("")
        self.recommendation.setTextFormat(Qt.TextFormat.RichText)
        self.others = _wrapping_label("")
        self.others.setStyleSheet("color:#7a4a00")
        for w in (self.status, self.recommendation, self.others):
            bl.addWidget(w)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(self._build_plot())
        self.split.addWidget(self._build_table())
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 0)
        self.split.setChildrenCollapsible(False)
        bl.addWidget(self.split, 1)
        lay.addWidget(self.body, 1)

    def _build_top(self) -> QHBoxLayout:
        """The sweep picker, the chart's y axis and Refresh, on one row."""
        row = QHBoxLayout()
        row.addWidget(QLabel("Sweep:"))
        self.sweeps = QComboBox()
        self.sweeps.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.sweeps.setMinimumContentsLength(16)
        self.sweeps.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        row.addWidget(self.sweeps, 1)
        row.addWidget(QLabel("against:"))
        self.axis = QComboBox()
        self.axis.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.axis.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        for front, _field, _label, _scale in PANELS:
            self.axis.addItem(FRONT_WORDS[front], front)
        self.axis.setToolTip("the chart's y axis, and the Pareto front it joins in green")
        row.addWidget(self.axis)
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.setToolTip("read the run store again")
        row.addWidget(self.refresh_btn)
        self.sweeps.currentIndexChanged.connect(self._picked)
        self.axis.currentIndexChanged.connect(self._show_plot)
        self.refresh_btn.clicked.connect(lambda *_: self.refresh())
        return row

    def _build_plot(self) -> QWidget:
        """The scatter with its caption; the points' items are rebuilt on each show."""
        box = QWidget()
        pl = QVBoxLayout(box)
        pl.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.plot.setMinimumSize(200, 140)
        self.plot.getViewBox().setDefaultPadding(0.08)  # the ring and captions stay inside
        self.scatter = pg.ScatterPlotItem(hoverable=True, tip=self._tip, size=11)
        self.scatter.sigClicked.connect(self._points_clicked)
        self.ring = pg.ScatterPlotItem(size=24, pen=pg.mkPen("k", width=1.6), brush=None)
        self.front_line = pg.PlotDataItem(pen=pg.mkPen(FRONT_C, width=1.6))
        self.caption = _wrapping_label(
            "blue: baseline · orange: technique sets · green: Pareto front · ringed: "
            "recommended · medians over rounds · click a point to open its comparison"
        )
        self.caption.setStyleSheet("color:#666; font-size:8pt")
        pl.addWidget(self.plot, 1)
        pl.addWidget(self.caption)
        return box

    def _build_table(self) -> QTableWidget:
        self.table = QTableWidget(0, len(st.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(st.COLUMNS))
        front = self.table.horizontalHeaderItem(len(st.COLUMNS) - 1)
        front.setToolTip(st.front_cell.__doc__ or "")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(False)  # the sweep's own order: baseline first
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.itemDoubleClicked.connect(self._row_double_clicked)
        return self.table

    # -- reading the store -------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the stored sweeps again (newest first) and show the one picked before, or the
        newest: a sweep that just ended appears without the user asking."""
        keep = self.sweeps.currentData()
        try:
            rows = self.store.runs(LIST_LIMIT, kind="sweep")
        except StoreError as exc:
            self._show_empty(f"The run store could not be read: {exc}")
            return
        self.sweeps.blockSignals(True)
        try:
            self.sweeps.clear()
            for r in rows:
                self.sweeps.addItem(f"#{r.id} {r.status}: {r.label or 'sweep'}", r.id)
                self.sweeps.setItemData(self.sweeps.count() - 1, r.label, TIP_ROLE)
            at = self.sweeps.findData(keep) if keep is not None else -1
            self.sweeps.setCurrentIndex(max(at, 0) if rows else -1)
        finally:
            self.sweeps.blockSignals(False)
        self.sweeps.setEnabled(bool(rows))
        self.axis.setEnabled(bool(rows))
        self._picked()

    def show_sweep(self, sweep_id: int) -> bool:
        """Pick one stored sweep (the Runs tab's Open of a sweep row lands here)."""
        at = self.sweeps.findData(sweep_id)
        if at < 0:
            self.refresh()
            at = self.sweeps.findData(sweep_id)
        if at < 0:
            return False
        self.sweeps.blockSignals(True)
        self.sweeps.setCurrentIndex(at)
        self.sweeps.blockSignals(False)
        self._picked()
        return True

    def _picked(self, *_: Any) -> None:
        sweep_id = self.sweeps.currentData()
        if sweep_id is None:
            self._show_empty(EMPTY_TEXT)
            return
        try:
            res = self.store.result(int(sweep_id))
        except StoreError as exc:
            self._show_empty(str(exc))
            return
        if not res or res.get("kind") != "sweep" or not res.get("rows"):
            row = self.store.run(int(sweep_id))
            status = row.status if row else "unknown"
            self._show_empty(
                f"Sweep {sweep_id} has no stored result yet (status {status}): a sweep stores "
                "its table when it ends or is stopped."
            )
            return
        if res != self.sweep:  # unchanged: keep the user's zoom and scroll
            self.show_result(res)

    # -- showing -----------------------------------------------------------------------------------
    def _show_empty(self, text: str) -> None:
        self.sweep = None
        self.empty.setText(text)
        self.empty.show()
        self.body.hide()

    def show_result(self, out: dict[str, Any]) -> None:
        """Show one sweep result (as stored) in the lines, the chart and the table."""
        self.sweep = out
        self.empty.hide()
        self.body.show()
        self.status.setText(st.status_line(out))
        self.recommendation.setText(_recommendation_html(st.recommendation_lines(out)))
        others = st.other_lines(out)
        self.others.setText("\n".join(others))
        self.others.setVisible(bool(others))
        self._show_table(out)
        self._show_plot()

    def _show_table(self, out: dict[str, Any]) -> None:
        rows, fronts = out["rows"], out.get("fronts") or {}
        rec = (out.get("recommendation") or {}).get("key")
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = st.row_cells(row, fronts)
            for c, text in enumerate(cells):
                self.table.setItem(r, c, self._cell(row, c, text, row["key"] == rec))
        self.table.resizeColumnsToContents()
        if self.table.columnWidth(0) > TEXT_MAX_W:
            self.table.setColumnWidth(0, TEXT_MAX_W)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self._fit_table(len(rows))

    def _table_height(self, rows: int) -> int:
        """Pixels the table needs for ``rows`` rows with its header and scroll bar."""
        t = self.table
        return (
            t.horizontalHeader().sizeHint().height()
            + rows * t.verticalHeader().defaultSectionSize()
            + t.horizontalScrollBar().sizeHint().height()
            + 2 * t.frameWidth()
            + 2
        )

    def _fit_table(self, rows: int) -> None:
        """The table shows every row when the height allows (at least TABLE_MIN_ROWS, never
        more than half), the chart the rest: at 1024x700 neither is a sliver."""
        self.table.setMinimumHeight(self._table_height(min(rows, TABLE_MIN_ROWS)))
        total = sum(self.split.sizes()) or 400
        want = min(self._table_height(rows), total // 2)
        self.split.setSizes([total - want, want])

    def _cell(
        self, row: dict[str, Any], col: int, text: str, recommended: bool
    ) -> QTableWidgetItem:
        """One read-only cell: the row's note (and for the first, its whole text) as tooltip,
        the verdict coloured as in the PDF, the recommended set in bold."""
        item = QTableWidgetItem(text)
        note = row.get("note") or ""
        item.setToolTip(f"{row['text']}\n{note}" if col == 0 else note)
        if col == 0:
            item.setData(ID_ROLE, row.get("comparison_id"))
        elif col != 3 and col != len(st.COLUMNS) - 1:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if col == 3 and row.get("energy_verdict") in VERDICT_COLOURS:
            item.setBackground(QBrush(QColor(VERDICT_COLOURS[row["energy_verdict"]])))
        if recommended:
            font = QFont(item.font())
            font.setBold(True)
            item.setFont(font)
        return item

    def _panel(self) -> tuple[str, str, str, float]:
        return PANELS[max(0, self.axis.currentIndex())]

    def _show_plot(self, *_: Any) -> None:
        """Energy against the chosen figure: one point per row that has both, the front
        joined in green (by energy), the recommended point ringed."""
        for item in (self.scatter, self.ring, self.front_line, *self._labels):
            self.plot.removeItem(item)
        self._labels = []
        out = self.sweep
        if out is None:
            return
        front, field, label, scale = self._panel()
        self._plotted = [r for r in out["rows"] if _has(r, "energy_median_j") and _has(r, field)]
        pts = [(r["energy_median_j"], r[field] * scale, r["key"], r["text"]) for r in self._plotted]
        brushes = [pg.mkBrush(BASE_C if k == "baseline" else OPT_C) for _x, _y, k, _t in pts]
        self.scatter.setData(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            data=list(range(len(pts))),
            brush=brushes,
            pen=None,
        )
        on_front = sorted((x, y) for x, y, k, _t in pts if k in out["fronts"].get(front, []))
        self.front_line.setData([p[0] for p in on_front], [p[1] for p in on_front])
        ringed = [(x, y) for x, y, k, _t in pts if k == out["recommendation"]["key"]]
        self.ring.setData([p[0] for p in ringed], [p[1] for p in ringed])
        mid = (min(p[0] for p in pts) + max(p[0] for p in pts)) / 2 if pts else 0.0
        self._labels = [_point_label(t, x, y, right=x > mid) for x, y, _k, t in pts]
        for item in (self.front_line, self.scatter, self.ring, *self._labels):
            self.plot.addItem(item)
        self.plot.setLabel("bottom", st.energy_axis_label(out))
        self.plot.setLabel("left", label)
        self.plot.enableAutoRange()

    def recommended_point(self) -> tuple[float, float] | None:
        """Where the ring is drawn (None when the recommended set has no point on this chart)."""
        x, y = self.ring.getData()
        return (float(x[0]), float(y[0])) if x is not None and len(x) else None

    # -- interaction -------------------------------------------------------------------------------
    def _tip(self, x: float, y: float, data: Any) -> str:
        """A point's tooltip: its set and the two figures, in the table's words."""
        if self.sweep is None or not isinstance(data, int) or data >= len(self._plotted):
            return ""
        row = self._plotted[data]
        cells = dict(zip(st.COLUMNS, st.row_cells(row, self.sweep["fronts"]), strict=True))
        lines = [row["text"], f"energy/item: {cells['Energy/item']}"]
        if row.get("energy_change_pct") is not None:
            lines.append(f"change: {cells['Change']} ({cells['Verdict']})")
        lines.append(f"{self._panel()[2]}: {cells[Y_CELL[self._panel()[1]]]}")
        if row.get("comparison_id") is not None:
            lines.append(f"click to open comparison {row['comparison_id']}")
        return "\n".join(lines)

    def _points_clicked(self, _item: Any, points: Any, _ev: Any = None) -> None:
        """The scatter's sigClicked: open the first clicked point that has a comparison (the
        baseline has none: it is shared by every set)."""
        for pt in points:
            data = pt.data()
            if isinstance(data, int) and data < len(self._plotted):
                cid = self._plotted[data].get("comparison_id")
                if cid is not None:
                    self.open_comparison.emit(int(cid))
                    return

    def _row_double_clicked(self, item: QTableWidgetItem) -> None:
        first = self.table.item(item.row(), 0)
        cid = first.data(ID_ROLE) if first is not None else None
        if cid is not None:
            self.open_comparison.emit(int(cid))

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Showing the tab reads the store again: a sweep run from a terminal appears."""
        super().showEvent(event)
        self.refresh()


def _point_label(text: str, x: float, y: float, right: bool) -> pg.TextItem:
    """A point's set, shortened, beside it: the chart reads without hovering. Points in the
    right half carry theirs on the left, so no caption runs off the chart."""
    short = textwrap.shorten(text, LABEL_CHARS, placeholder="...")
    pad = "   "  # clear of the recommendation's ring
    item = pg.TextItem(short + pad if right else pad + short, color="#444")
    item.setAnchor((1, 1) if right else (0, 1))
    font = QFont()
    font.setPointSizeF(8)
    item.setFont(font)
    item.setPos(x, y)
    return item


def _has(row: dict[str, Any], field: str) -> bool:
    return row.get(field) is not None


def _recommendation_html(lines: list[str]) -> str:
    """The recommendation's first line in bold, the why and confidence under it."""
    escaped = [html.escape(line.strip()) for line in lines]
    if not escaped:
        return ""
    return "<br>".join([f"<b>{escaped[0]}</b>", *escaped[1:]])


def _wrapping_label(text: str) -> QLabel:
    """Wraps instead of widening the window at 1024 px."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label
