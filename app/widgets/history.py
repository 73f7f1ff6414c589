"""History: past runs and comparisons from the store; filter, open, compare two, delete, re-run."""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.store import RunStore
from wattlab.core.report import text as units

COLUMNS = ["id", "kind", "status", "started", "energy", "label"]


class HistoryView(QWidget):
    open_requested = Signal(int)
    compare_requested = Signal(int, int)
    rerun_requested = Signal(dict)

    def __init__(self, store: RunStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        lay = QVBoxLayout(self)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter by label, kind or status")
        lay.addWidget(self.filter)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.open_btn = QPushButton("Open")
        self.cmp_btn = QPushButton("Compare two")
        self.rerun_btn = QPushButton("Re-run")
        self.del_btn = QPushButton("Delete...")
        for b in (self.open_btn, self.cmp_btn, self.rerun_btn, self.del_btn):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.filter.textChanged.connect(self.refresh)
        self.open_btn.clicked.connect(self._open)
        self.cmp_btn.clicked.connect(self._compare)
        self.rerun_btn.clicked.connect(self._rerun)
        self.del_btn.clicked.connect(self._delete)
        self.confirm = lambda text: (
            QMessageBox.question(self, "Delete", text) == QMessageBox.Yes
        )  # replaced in tests
        self.refresh()

    def refresh(self) -> None:
        f = self.filter.text().lower().strip()
        rows = [
            r
            for r in self.store.runs(500)
            if not f or f in f"{r.label} {r.kind} {r.status}".lower()
        ]
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            res = self.store.result(r.id) or {}
            tot = res.get("total") or {}
            energy = (
                f"{units.joules(tot['gross_j'])} {tot.get('label') or ''}"
                if "gross_j" in tot
                else "-"
            )
            cells = [
                str(r.id),
                r.kind,
                r.status,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
                energy,
                r.label or "",
            ]
            for c, text in enumerate(cells):
                self.table.setItem(i, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [int(self.table.item(r, 0).text()) for r in rows]

    def _open(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.open_requested.emit(ids[0])

    def _compare(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 2:
            self.compare_requested.emit(min(ids), max(ids))

    def _rerun(self) -> None:
        ids = self.selected_ids()
        if ids:
            row = self.store.run(ids[0])
            if row is not None and row.kind == "session":
                self.rerun_requested.emit(row.spec)

    def _delete(self) -> None:
        ids = self.selected_ids()
        if ids and self.confirm(
            f"Delete {len(ids)} run(s) and their samples? This cannot be undone."
        ):
            for i in ids:
                self.store.delete_run(i)
            self.refresh()
