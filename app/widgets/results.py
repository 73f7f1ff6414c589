"""Results view: a comparison's table (deltas with their 95% interval, coloured by verdict),
each of its runs, interactive charts, the report's chart page, and an export button; or a single
run's figures and charts. Table and charts share a vertical splitter, so the view fits a
1024x700 window.

What may be said about a result (no verdict on incomplete pairs or on an untrained head, which
runs count, which are gone) is decided in core.report.result_view; this module lays it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.report import command_view as cv
from wattlab.core.report import result_view as rv
from wattlab.core.report.rag_text import rag_comparison_lines
from wattlab.core.results import RunResult

from ..words import in_app_words
from .result_plots import ResultPlots

COLUMNS = ["Metric", "Baseline", "Optimized", "Delta [95% CI]", "Verdict", "Source", "Note"]
DELTA, VERDICT = 3, 4
COMPARISON_ONLY = (2, 3, 4)  # Optimized, Delta, Verdict: hidden for a single run
NOTE = 6
NOTE_WIDTH = 360  # a caveat is a sentence: its start shows, its tooltip holds the rest
# The table tabs: which ones a kind of result shows (the first listed is brought to front).
SUMMARY, EACH_RUN, PHASES, COMMANDS, BENCH_RUNS = range(5)
CANCELLED_BG = "#f6e0c0"


def _label(text: str = "", style: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setStyleSheet(style)
    return lab


def _table(columns: Sequence[str]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    t.setMinimumHeight(80)
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 8)
    return t


class ResultsView(QWidget):
    """Public API for the main window: ``show_comparison``, ``show_run``, ``shown()`` (what
    an export writes), the ``comparison`` and ``run_result`` being shown (one of them is
    None), and ``export_requested`` (the Export button, for a comparison and a run alike)."""

    export_requested = Signal()  # export what is shown: shown() is the comparison or the run

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.headline = _label(
            "No comparison yet: run baseline + optimized.", "font-size: 11pt; font-weight: 600"
        )
        lay.addWidget(self.headline)
        self.status_line = _label(style="color: #8a4b00; font-weight: 600")
        self.status_line.hide()
        lay.addWidget(self.status_line)
        self.details = _label()  # technique-specific figures (the RAG cache's), plain weight
        self.details.hide()
        lay.addWidget(self.details)
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self._build_tables())
        self.splitter.addWidget(self._build_charts())
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([1, 1])  # half each; then the user's drag
        lay.addWidget(self.splitter, 1)
        lay.addLayout(self._build_buttons())
        self.comparison: dict[str, Any] | None = None
        self.run_result: dict[str, Any] | None = None
        self._set_report_charts(None)

    def _build_tables(self) -> QTabWidget:
        self.table = _table(COLUMNS)
        self.runs_table = _table(rv.RUN_COLUMNS)
        self.phases_table = _table(cv.PHASE_COLUMNS)  # a script's marked phases
        self.bench_table = _table(cv.BENCH_COLUMNS)  # a bench: one row per command
        for k, name in enumerate(cv.BENCH_FIRST):  # the comparison first: in view at 1024 px
            header = self.bench_table.horizontalHeader()
            header.moveSection(header.visualIndex(cv.BENCH_COLUMNS.index(name)), 2 + k)
        self.bench_runs_table = _table(cv.BENCH_RUN_COLUMNS)
        self.table_tabs = QTabWidget()
        self.table_tabs.addTab(self.table, "Summary")
        self.table_tabs.addTab(self.runs_table, "Each run")
        self.table_tabs.addTab(self.phases_table, "Phases")
        self.table_tabs.addTab(self.bench_table, "Commands")
        self.table_tabs.addTab(self.bench_runs_table, "Each run")
        self.table.setColumnHidden(NOTE, True)
        self._show_tabs(SUMMARY, EACH_RUN)
        return self.table_tabs

    def _show_tabs(self, *tabs: int) -> None:
        """Only the tabs this kind of result has; the first one in front."""
        for k in range(self.table_tabs.count()):
            self.table_tabs.setTabVisible(k, k in tabs)
        self.table_tabs.setCurrentIndex(tabs[0])

    def _build_charts(self) -> QWidget:
        """Interactive charts and the report's page in tabs, under a message line that says
        (whichever tab is open) when charts drawn from deleted runs are unavailable."""
        self.plots = ResultPlots()
        pane = self._charts_pane = QWidget()
        outer = QVBoxLayout(pane)
        outer.setContentsMargins(0, 0, 0, 0)
        self.charts_message = _label(style="color: #8a4b00")
        self.charts_message.hide()
        outer.addWidget(self.charts_message)
        report = QWidget()
        col = QVBoxLayout(report)
        self.charts = QLabel()  # the report's chart page (matplotlib PNG), as in the PDF
        self.charts.setAlignment(Qt.AlignCenter)
        scroll = QScrollArea()
        scroll.setWidget(self.charts)
        scroll.setWidgetResizable(True)
        col.addWidget(scroll, 1)
        self.chart_tabs = QTabWidget()
        self.chart_tabs.addTab(self.plots, "Charts")
        self.chart_tabs.addTab(report, "Report charts")
        outer.addWidget(self.chart_tabs, 1)
        return pane

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.export_btn = QPushButton("Export report...")
        self.export_btn.setEnabled(False)
        self.export_btn.clicked.connect(self.export_requested.emit)
        row.addWidget(self.export_btn)
        row.addStretch(1)
        return row

    # -- a comparison ------------------------------------------------------------------------------
    def show_comparison(
        self,
        comp: dict[str, Any],
        missing_run_ids: Iterable[int] | None = None,
        *,
        runs: Mapping[int, dict[str, Any] | None] | None = None,
        chart_png: bytes | None = None,
    ) -> None:
        """Show ``comp``; every chart and table is redrawn from it, none is kept from the
        previous result. ``missing_run_ids``: its runs deleted from the store since. ``runs``:
        the stored results of its runs by id (a missing id or None: deleted), when looked up:
        they give run statuses and model notes (an untrained head) the comparison dict lacks.
        ``chart_png``: the report's chart page, shown in its own tab when given."""
        self.comparison, self.run_result = comp, None
        caveat = rv.untrained_head_caveat(comp, runs)
        missing = rv.missing_runs(comp, missing_run_ids, runs)
        self.headline.setText(str(comp.get("headline") or ""))
        self._set_status(rv.cancelled_text(comp))
        self._set_details(rag_comparison_lines(comp))
        self._set_columns(COLUMNS[1], comparison=True)
        self._fill(rv.comparison_rows(comp, caveat))
        self._fill_runs(rv.per_run_rows(comp, runs, missing))
        self._show_tabs(SUMMARY, EACH_RUN)
        self._charts_pane.show()
        self.plots.show_comparison(comp, runs)
        self._set_charts_message(rv.deleted_text(missing))
        self._set_report_charts(chart_png)
        self.export_btn.setEnabled(True)

    # -- a single run ------------------------------------------------------------------------------
    def show_run(
        self,
        res: dict[str, Any],
        samples: Sequence[Any] | None = None,
        phases: Sequence[tuple[float, str]] | None = None,
    ) -> None:
        """Show one run: its figures under a column titled for what it is, the Source column,
        and its charts. ``samples``: its stored samples (``store.samples(run_id)``) for power
        over time; ``phases``: (t, name) marks, by default the result's own ``phase_marks``.
        A measured command or tracked block shows the whole command's figures, what its
        markers added, and its marked phases in their own tab."""
        self.comparison, self.run_result = None, res
        self._set_status(None)
        self._set_columns(rv.run_title(res), comparison=False)
        self._fill_runs([])
        if cv.is_command_run(res):
            self.headline.setText(cv.command_headline(res))
            self._set_details(cv.command_details(res))
            self._fill(cv.command_rows(res))
            phase_rows = cv.marked_phase_rows(res)
            self._fill_plain(self.phases_table, phase_rows)
            self._show_tabs(SUMMARY, *([PHASES] if phase_rows else []))
        else:
            run = RunResult.from_dict(res)
            self.headline.setText(f"Run {run.run_id}: {run.status}")
            self._set_details([])
            self._fill(rv.run_table_rows(res, rv.untrained_head_caveat(res)))
            self._show_tabs(SUMMARY)
        self._charts_pane.show()
        self.plots.show_run(res, samples, phases)
        self._set_charts_message(None)
        self._set_report_charts(None)  # a report's chart page exists for comparisons only
        self.export_btn.setEnabled(True)

    # -- a bench of commands -----------------------------------------------------------------------
    def show_bench(self, out: dict[str, Any]) -> None:
        """A bench (the Script workload's two command lines, or ``wattlab bench``): its table
        as the CLI prints it, every run, the commands and notes above; no charts (each run
        opens from the Runs tab with its own)."""
        self.comparison, self.run_result = None, out
        self.headline.setText(str(out.get("headline") or ""))
        status = out.get("status")
        self._set_status(None if status == "completed" else f"Bench {status}: what completed")
        self._set_details([in_app_words(line) for line in cv.bench_details(out)])
        rows = cv.bench_rows(out)
        self._fill_plain(self.bench_table, [r.cells for r in rows])
        for r, row in enumerate(rows):
            if row.colour:
                self.bench_table.item(r, cv.BENCH_VERDICT).setBackground(QColor(row.colour))
        self._fill_plain(self.bench_runs_table, cv.bench_run_rows(out))
        self._show_tabs(COMMANDS, BENCH_RUNS)
        self._charts_pane.hide()
        self._set_report_charts(None)
        self.export_btn.setEnabled(True)

    def shown(self) -> dict[str, Any] | None:
        """The comparison or the run on screen (what Export writes); None before any."""
        return self.comparison if self.comparison is not None else self.run_result

    # -- shared ------------------------------------------------------------------------------------
    def _set_status(self, text: str | None) -> None:
        self.status_line.setText(text or "")
        self.status_line.setVisible(bool(text))

    def _set_details(self, lines: list[str]) -> None:
        self.details.setText("\n".join(lines))
        self.details.setVisible(bool(lines))

    def _set_columns(self, first: str, comparison: bool) -> None:
        """The figures column's title, and the comparison-only columns shown or hidden."""
        self.table.horizontalHeaderItem(1).setText(first)
        for c in COMPARISON_ONLY:
            self.table.setColumnHidden(c, not comparison)

    def _fill(self, rows: list[rv.Row]) -> None:
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row.cells):
                item = QTableWidgetItem(text)
                if row.colour and c in (DELTA, VERDICT):
                    item.setBackground(QColor(row.colour))
                tip = row.delta_tip if c == DELTA else row.note
                if tip:
                    item.setToolTip(tip)
                self.table.setItem(r, c, item)
        self.table.setColumnHidden(NOTE, not any(row.note for row in rows))
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(NOTE, min(self.table.columnWidth(NOTE), NOTE_WIDTH))

    def _fill_runs(self, rows: list[rv.RunRow]) -> None:
        self.runs_table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row.cells):
                item = QTableWidgetItem(text)
                if row.cancelled or row.deleted:
                    font = QFont(item.font())
                    font.setItalic(True)
                    item.setFont(font)
                    item.setBackground(QColor(CANCELLED_BG))
                self.runs_table.setItem(r, c, item)
        self.runs_table.resizeColumnsToContents()

    @staticmethod
    def _fill_plain(table: QTableWidget, rows: list[list[str]]) -> None:
        """Rows of text cells; a long cell's whole text is its tooltip."""
        table.setRowCount(len(rows))
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def _set_charts_message(self, text: str | None) -> None:
        self.charts_message.setText(text or "")
        self.charts_message.setVisible(bool(text))

    def _set_report_charts(self, png: bytes | None) -> None:
        """The report's page in its tab when given; otherwise no tab and no image: never a
        previous result's page."""
        pm = QPixmap()
        if png:
            pm.loadFromData(png)
        self.charts.setPixmap(pm)
        self.chart_tabs.setTabVisible(1, not pm.isNull())
        if pm.isNull():
            self.chart_tabs.setCurrentIndex(0)
