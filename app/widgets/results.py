"""Results view: the comparison table with deltas coloured by verdict, the report's charts, and
export buttons. Shows a single run's summary when there is no comparison."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.report import VERDICT_COLOURS  # noqa: E402 - one table for app and PDF
from wattlab.core.report.text import verdict_cells
from wattlab.core.results import Comparison, RunResult

COLUMNS = ["Metric", "Baseline", "Optimized", "Delta", "Verdict", "Source"]


class ResultsView(QWidget):
    export_pdf = Signal()
    export_csv = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        self.headline = QLabel("No comparison yet: run baseline + optimized.")
        self.headline.setWordWrap(True)
        self.headline.setStyleSheet("font-size: 12pt; font-weight: 600")
        lay.addWidget(self.headline)
        self.details = QLabel()  # technique-specific figures (the RAG cache's), plain weight
        self.details.setWordWrap(True)
        self.details.hide()
        lay.addWidget(self.details)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        lay.addWidget(self.table, 3)
        self.charts = QLabel()
        self.charts.setAlignment(Qt.AlignCenter)
        scroll = QScrollArea()
        scroll.setWidget(self.charts)
        scroll.setWidgetResizable(True)
        lay.addWidget(scroll, 4)
        row = QHBoxLayout()
        self.pdf_btn = QPushButton("Export PDF...")
        self.csv_btn = QPushButton("Export CSV...")
        for b in (self.pdf_btn, self.csv_btn):
            b.setEnabled(False)
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.pdf_btn.clicked.connect(self.export_pdf.emit)
        self.csv_btn.clicked.connect(self.export_csv.emit)
        self.comparison: dict[str, Any] | None = None

    def show_comparison(self, comp: dict[str, Any], chart_png: bytes | None = None) -> None:
        self.comparison = comp
        from wattlab.core.report.rag_text import rag_comparison_lines

        self.headline.setText(comp["headline"])
        extra = rag_comparison_lines(comp)
        self.details.setText("\n".join(extra))
        self.details.setVisible(bool(extra))
        vs = Comparison.from_dict(comp).verdicts
        self.table.setRowCount(len(vs))
        for r, v in enumerate(vs):
            cells = verdict_cells(v)
            colour = VERDICT_COLOURS.get(v.verdict)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if colour and c in (3, 4):
                    item.setBackground(QColor(colour))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        if chart_png:
            pm = QPixmap()
            pm.loadFromData(chart_png)
            self.charts.setPixmap(pm)
        for b in (self.pdf_btn, self.csv_btn):
            b.setEnabled(True)

    def show_run(self, res: dict[str, Any]) -> None:
        """One run, no comparison: its main figures in the table's first two columns."""
        from wattlab.core.report import text as units

        self.comparison = None
        self.details.hide()
        run = RunResult.from_dict(res)
        rows = units.run_rows(run)
        self.headline.setText(f"Run {run.run_id}: {run.status}")
        self.table.setRowCount(len(rows))
        for r, (a, b) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(a))
            self.table.setItem(r, 1, QTableWidgetItem(b))
            for c in range(2, len(COLUMNS)):
                self.table.setItem(r, c, QTableWidgetItem(""))
        self.table.resizeColumnsToContents()
        self.charts.clear()
        for b in (self.pdf_btn, self.csv_btn):
            b.setEnabled(False)
