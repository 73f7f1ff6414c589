"""The Runs table: every stored run and comparison, sortable, filterable, annotated.

What each row shows, how the filter reads and how repeats group under their comparison is
decided in core/run/runs_table.py (Qt-free, tested); this file only displays it and turns the
buttons into signals the main window acts on. A refresh is one store query; typing in the filter
re-filters the rows already read, without a query.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.store import RunStore, StoreError
from wattlab.core.report.command import CommandError, command_for
from wattlab.core.run import runs_table as rt

SORT_ROLE = Qt.ItemDataRole.UserRole
ID_ROLE = Qt.ItemDataRole.UserRole + 1
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
# Widest start of the columns that hold free text (a tooltip has the whole text): wide enough to
# read, narrow enough that the figures stay in view in a 1024-pixel window.
TEXT_WIDTHS = {"name": 140, "techniques": 200, "label": 160, "notes": 160, "model": 120}
MAX_WIDTH = 180
# Kinds Re-run repeats in the app: a session, a comparison, a command (Script mode), a bench
RERUNNABLE = ("session", "comparison", "profile", "bench")


class _Item(QTreeWidgetItem):
    """A row that sorts by each column's value (numbers as numbers), unknown values last in
    either direction."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        tree = self.treeWidget()
        col = tree.sortColumn() if tree is not None else 0
        a, b = self.data(col, SORT_ROLE), other.data(col, SORT_ROLE)
        if a is None or b is None:
            if a is None and b is None:
                return False
            desc = tree is not None and tree.header().sortIndicatorOrder() == Qt.DescendingOrder
            return a is None if desc else b is None
        return a < b


class RunsView(QWidget):
    """The runs table with its filter, edit panel and actions. Signals carry run ids (and
    specs for a re-run); the main window does the opening, comparing, running and plotting."""

    open_requested = Signal(int)
    compare_requested = Signal(int, int)  # baseline id, optimized id
    rerun_requested = Signal(dict)  # a session's stored spec
    rerun_comparison_requested = Signal(dict, dict, int)  # baseline spec, optimized spec, repeats
    rerun_command_requested = Signal(str, dict)  # a profile or bench row: its kind and spec
    overlay_requested = Signal(list)  # session run ids (a comparison stands for its repeats)

    def __init__(
        self, store: RunStore, parent: QWidget | None = None, limit: int = rt.DEFAULT_LIMIT
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.limit = limit
        self.rows: list[rt.RunsRow] = []  # as read by the last refresh, grouped
        self.overlay_in_dialog = True  # False when the main window plots overlay_requested
        self._overlay: PowerOverlay | None = None
        self._items: dict[int, _Item] = {}
        self._editing: int | None = None  # the run whose name, tags and notes are in the editors
        self._build()
        self.confirm = lambda text: (
            QMessageBox.question(self, "Delete", text) == QMessageBox.StandardButton.Yes
        )  # replaced in tests
        self.refresh()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter: any text, or mode:train tag:paper delta<0 ...")
        self.filter.setToolTip(
            "Words match any column. column:text matches one column (name, kind, status, "
            "model, dataset, mode, techniques, tags, label, notes, ...); numeric columns also "
            "take <, <=, >, >=, = (id, energy/item as epi, delta, accuracy, energy, duration)."
        )
        self.filter.setClearButtonEnabled(True)
        self.group = QCheckBox("Group repeats")
        self.group.setChecked(True)
        self.group.setToolTip("show each comparison's runs under it")
        self.count = QLabel()
        top.addWidget(self.filter, 1)
        top.addWidget(self.group)
        top.addWidget(self.count)
        lay.addLayout(top)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(rt.COLUMNS))
        self.tree.setHeaderLabels([c.title for c in rt.COLUMNS])
        for i, c in enumerate(rt.COLUMNS):
            if c.tip:
                self.tree.headerItem().setToolTip(i, c.tip)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setExpandsOnDoubleClick(False)  # double-click opens the run
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.tree.header().setStretchLastSection(False)
        self.tree.setMinimumSize(200, 120)

        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("your name for this run")
        self.tags_edit = QLineEdit()
        self.tags_edit.setPlaceholderText("comma-separated, e.g. paper, bf16")
        self.notes_edit = QPlainTextEdit()
        self.notes_edit.setPlaceholderText("notes")
        self.notes_edit.setMaximumHeight(60)
        self.save_btn = QPushButton("Save")
        self.save_btn.setToolTip("store the name, tags and notes of the selected run")
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        name_row = QHBoxLayout()
        name_row.addWidget(self.name_edit, 2)
        name_row.addWidget(QLabel("Tags"))
        name_row.addWidget(self.tags_edit, 2)
        name_row.addWidget(self.save_btn)
        form.addRow("Name", name_row)
        form.addRow("Notes", self.notes_edit)
        panel = QWidget()
        pl = QVBoxLayout(panel)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.details)
        pl.addLayout(form)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(panel)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        lay.addWidget(split, 1)

        row = QHBoxLayout()
        self.open_btn = QPushButton("Open")
        self.overlay_btn = QPushButton("Overlay")
        self.overlay_btn.setToolTip("power over time of the selected runs, on one chart")
        self.cmp_btn = QPushButton("Compare two")
        self.cmp_btn.setToolTip("two selected sessions: the older as baseline")
        self.rerun_btn = QPushButton("Re-run")
        self.copy_btn = QPushButton("Copy command")
        self.copy_btn.setToolTip("copy the wattlab command that repeats the selected run")
        self.del_btn = QPushButton("Delete...")
        self.buttons = (
            self.open_btn,
            self.overlay_btn,
            self.cmp_btn,
            self.rerun_btn,
            self.copy_btn,
            self.del_btn,
        )
        for b in self.buttons:
            b.setMinimumWidth(0)
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)

        self.filter.textChanged.connect(self._show)
        self.group.toggled.connect(self._show)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemDoubleClicked.connect(self._double_clicked)
        self.open_btn.clicked.connect(self._open)
        self.overlay_btn.clicked.connect(self._overlay_selected)
        self.cmp_btn.clicked.connect(self._compare)
        self.rerun_btn.clicked.connect(self._rerun)
        self.copy_btn.clicked.connect(self.copy_command)
        self.del_btn.clicked.connect(self._delete)
        self.save_btn.clicked.connect(self.save_annotation)

    # -- contents ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the newest runs again (one store query) and show them, keeping the selection,
        the expanded comparisons and the sort."""
        try:
            self.rows = rt.load_rows(self.store, self.limit)
        except StoreError as exc:
            self.rows = []
            self.say(str(exc))
        self._show()
        if self.store.damage:
            self.say(self.store.damage)

    def _show(self) -> None:
        """Fill the tree with the rows the filter keeps (no store query)."""
        selected = set(self.selected_ids())
        expanded = {rid for rid, it in self._items.items() if it.isExpanded()}
        rows = self.rows if self.group.isChecked() else rt.flatten(self.rows)
        shown = rt.filter_rows(rows, self.filter.text())
        self.tree.setSortingEnabled(False)
        self.tree.setUpdatesEnabled(False)
        self.tree.blockSignals(True)  # one selection update at the end, not one per row
        try:
            self.tree.clear()
            self._items = {}
            self.tree.addTopLevelItems([self._item(r) for r in shown])
            for r in shown:
                if r.children and (r.run_id in expanded or r.matched_by_children):
                    self._items[r.run_id].setExpanded(True)
            for rid in selected & set(self._items):
                self._items[rid].setSelected(True)
        finally:
            self.tree.blockSignals(False)
            self.tree.setSortingEnabled(True)
            self.tree.setUpdatesEnabled(True)
        self._fit_columns(shown)
        total = sum(1 + len(r.children) for r in self.rows)
        n = sum(1 + len(r.children) for r in shown)
        self.count.setText(f"{n} of {total}" if n != total else f"{total} runs")
        self._selection_changed()

    def _item(self, row: rt.RunsRow) -> _Item:
        it = _Item()
        for col, key in enumerate(rt.KEYS):
            cell = row.cells[key]
            it.setText(col, cell.text)
            it.setData(col, SORT_ROLE, cell.sort)
            if cell.tip:
                it.setToolTip(col, cell.tip)
            if rt.COLUMNS[col].numeric:
                it.setTextAlignment(col, RIGHT)
        it.setData(0, ID_ROLE, row.run_id)
        if row.kind == "comparison":
            bold = QFont()
            bold.setBold(True)
            it.setFont(0, bold)
        self._items[row.run_id] = it
        it.addChildren([self._item(c) for c in row.children])
        return it

    def _fit_columns(self, shown: list[rt.RunsRow]) -> None:
        """Each column as wide as its widest text, repeats included (Qt's own fitting skips
        collapsed rows), capped so the free-text columns do not push the figures off screen."""
        fm = self.tree.fontMetrics()
        rows = [r for top in shown for r in (top, *top.children)]
        pad = 16
        for col, c in enumerate(rt.COLUMNS):
            texts = {r.cells[c.key].text for r in rows} | {c.title}
            width = max(fm.horizontalAdvance(t) for t in texts) + pad
            if col == 0:  # the tree's branch marks and the repeats' indentation
                width += 2 * self.tree.indentation()
            self.tree.setColumnWidth(col, min(width, TEXT_WIDTHS.get(c.key, MAX_WIDTH)))

    # -- selection -----------------------------------------------------------------------------
    def selected_ids(self) -> list[int]:
        """The selected runs' ids, in the order shown."""
        if not self._items:
            return []
        order = {id(it): k for k, it in enumerate(self._ordered_items())}
        items = sorted(self.tree.selectedItems(), key=lambda it: order.get(id(it), 0))
        return [int(it.data(0, ID_ROLE)) for it in items]

    def _ordered_items(self) -> list[QTreeWidgetItem]:
        out = []
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            out.append(top)
            out += [top.child(k) for k in range(top.childCount())]
        return out

    def visible_ids(self) -> list[int]:
        """The ids of the rows shown, in display order, children after their comparison (also
        those of a collapsed comparison)."""
        return [int(it.data(0, ID_ROLE)) for it in self._ordered_items()]

    def top_level_ids(self) -> list[int]:
        return [
            int(self.tree.topLevelItem(i).data(0, ID_ROLE))
            for i in range(self.tree.topLevelItemCount())
        ]

    def children_ids(self, run_id: int) -> list[int]:
        it = self._items.get(run_id)
        return [int(it.child(k).data(0, ID_ROLE)) for k in range(it.childCount())] if it else []

    def cell(self, run_id: int, key: str) -> str:
        """The text shown for ``run_id`` in column ``key`` (a runs_table key)."""
        return self._items[run_id].text(rt.KEYS.index(key))

    def select(self, ids: list[int]) -> None:
        """Select exactly ``ids`` (those shown)."""
        self.tree.clearSelection()
        for rid in ids:
            if rid in self._items:
                self._items[rid].setSelected(True)

    def _row(self, run_id: int) -> rt.RunsRow | None:
        return rt.find(self.rows, run_id)

    def _selection_changed(self) -> None:
        ids = self.selected_ids()
        rows = [r for r in map(self._row, ids) if r is not None]
        one = rows[0] if len(rows) == 1 else None
        sessions = [r for r in rows if r.kind == "session"]
        self.open_btn.setEnabled(len(rows) >= 1)
        self.overlay_btn.setEnabled(bool(rows))
        self.cmp_btn.setEnabled(len(rows) == 2 and len(sessions) == 2)
        self.rerun_btn.setEnabled(one is not None and one.kind in RERUNNABLE)
        self.copy_btn.setEnabled(one is not None)
        self.del_btn.setEnabled(bool(rows))
        for w in (self.name_edit, self.tags_edit, self.notes_edit, self.save_btn):
            w.setEnabled(one is not None)
        self._load_editors(one)
        self.details.setText(self._describe(one, len(rows)))

    def _load_editors(self, row: rt.RunsRow | None) -> None:
        """Put ``row``'s name, tags and notes in the editors; not again for the run already
        there, so a refresh (a run finishing) never wipes what is being typed."""
        rid = row.run_id if row is not None else None
        if rid == self._editing and rid is not None:
            return
        self._editing = rid
        note = row.annotation if row is not None else None
        self.name_edit.setText((note.name or "") if note else "")
        self.tags_edit.setText(", ".join(note.tags) if note else "")
        self.notes_edit.setPlainText((note.notes or "") if note else "")

    @staticmethod
    def _describe(row: rt.RunsRow | None, n: int) -> str:
        if row is None:
            return f"{n} runs selected" if n else "Select a run to name, tag or annotate it."
        tip = row.cells["status"].tip
        head = f"Run {row.run_id}: {row.text('kind')}, {row.status}"
        return f"{head}. {tip}" if tip else head

    def say(self, text: str) -> None:
        """A one-line outcome under the table (copied, saved, why nothing happened)."""
        self.details.setText(text)

    # -- actions ---------------------------------------------------------------------------------
    def _double_clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        self.open_requested.emit(int(item.data(0, ID_ROLE)))

    def _open(self) -> None:
        ids = self.selected_ids()
        if ids:
            self.open_requested.emit(ids[0])

    def _compare(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 2:
            self.compare_requested.emit(min(ids), max(ids))

    def _overlay_selected(self) -> None:
        ids = rt.session_ids(self.selected_ids(), self.rows)
        if not ids:
            return
        self.overlay_requested.emit(ids)
        if self.overlay_in_dialog:
            self.show_overlay(ids)

    def show_overlay(self, ids: list[int]) -> PowerOverlay:
        """The selected runs' power over time on one chart, in a window of its own."""
        rows = [r for r in map(self._row, ids) if r is not None]
        if self._overlay is None:
            self._overlay = PowerOverlay(self)
        self._overlay.plot([rt.power_trace(self.store, r) for r in rows])
        self._overlay.show()
        self._overlay.raise_()
        return self._overlay

    def _rerun(self) -> None:
        ids = self.selected_ids()
        row = self._row(ids[0]) if len(ids) == 1 else None
        if row is None:
            return
        if row.kind == "session":
            self.rerun_requested.emit(dict(row.spec))
        elif row.kind == "comparison":
            base, opt = row.spec.get("baseline"), row.spec.get("optimized")
            repeats = row.spec.get("repeats")
            if isinstance(base, dict) and isinstance(opt, dict) and isinstance(repeats, int):
                self.rerun_comparison_requested.emit(dict(base), dict(opt), repeats)
            else:
                self.say(f"comparison {row.run_id} has no stored specs to run again")
        elif row.kind in ("profile", "bench"):
            self.rerun_command_requested.emit(row.kind, dict(row.spec))
        else:
            self.say(f"a {row.kind} run is repeated from the command line: use Copy command")

    def copy_command(self) -> str | None:
        """Copy the wattlab command that repeats the selected run; returns it (None when the
        run has none, and the reason is shown)."""
        ids = self.selected_ids()
        if len(ids) != 1:
            return None
        row = self.store.run(ids[0])
        if row is None:
            self.say(f"run {ids[0]} is no longer in the store")
            return None
        try:
            cmd = command_for(row.kind, row.spec, self.store.result(row.id))
        except (CommandError, StoreError) as exc:
            self.say(f"no command for run {row.id}: {exc}")
            return None
        QGuiApplication.clipboard().setText(cmd)
        self.say(f"Copied: {cmd}")
        return cmd

    def save_annotation(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        try:
            self.store.annotate(
                ids[0],
                self.name_edit.text(),
                rt.parse_tags(self.tags_edit.text()),
                self.notes_edit.toPlainText(),
            )
        except StoreError as exc:
            self.say(str(exc))
            return
        self._editing = None  # show what was stored (tags cleaned)
        self.refresh()
        self.say(f"Saved the name, tags and notes of run {ids[0]}.")

    def _delete(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        try:
            members = self.store.comparison_members()
        except StoreError as exc:
            self.say(str(exc))
            return
        labels = {cid: self._label(cid) for cid in members}
        if not self.confirm(rt.delete_warning(ids, members, labels)):
            return
        try:
            self.store.delete_runs(ids)
        except StoreError as exc:
            self.say(str(exc))
        self.refresh()

    def _label(self, run_id: int) -> str | None:
        row = self._row(run_id)
        if row is not None:
            return row.annotation.name or (row.text("label") if row.text("label") != "-" else None)
        stored = self.store.run(run_id)
        return stored.label if stored else None


class PowerOverlay(QDialog):
    """Total power over time of several runs on one chart, each aligned at the start of its
    measured phase, each labelled with how its energy was obtained."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Power overlay")
        self.resize(720, 420)
        lay = QVBoxLayout(self)
        self.plot_widget = pg.PlotWidget()
        self.plot_widget.setBackground("w")
        self.plot_widget.showGrid(x=False, y=True, alpha=0.15)
        self.plot_widget.setLabel("left", "W")
        self.plot_widget.setLabel("bottom", "s from start of measured phase")
        for side in ("left", "bottom"):
            self.plot_widget.getAxis(side).enableAutoSIPrefix(False)
        self.plot_widget.setDownsampling(auto=True, mode="peak")
        self.plot_widget.setClipToView(True)
        self.legend = self.plot_widget.addLegend(offset=(5, 5))
        self.note = QLabel()
        self.note.setWordWrap(True)
        lay.addWidget(self.plot_widget, 1)
        lay.addWidget(self.note)
        self.curves: list[pg.PlotDataItem] = []

    def plot(self, traces: list[rt.Trace]) -> None:
        self.plot_widget.clear()
        self.legend.clear()
        self.curves = []
        empty = []
        for k, tr in enumerate(traces):
            if not tr.t.size:
                empty.append(f"#{tr.run_id}")
                continue
            name = tr.title + (" (from first sample)" if tr.aligned_at != "measured phase" else "")
            pen = pg.mkPen(PALETTE[k % len(PALETTE)], width=1.2)
            self.curves.append(self.plot_widget.plot(tr.t, tr.w, pen=pen, name=name))
        self.plot_widget.autoRange()
        self.note.setText(
            f"No samples stored for {', '.join(empty)}." if empty else "Total power (W)."
        )
