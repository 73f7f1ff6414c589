"""Footprint: the cumulative energy, CO2 and cost of every stored run, by group and over time,
with the carbon intensity used and plain equivalents (km by car, phone charges, kettles).

The sums are core's (core/run/footprint.py); this view only shows them. Reading every stored
result takes a moment on a large store, so ``refresh`` scans on a background thread and the
view updates when the ``updated`` signal arrives: the GUI thread never waits for the store.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.errors import UserError
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.store import RunStore, StoreError
from wattlab.core.run import footprint as fpc
from wattlab.core.run.footprint import Footprint

from .elided import ElidedLabel

COLUMNS = ["Group", "Runs", "Energy", "CO2e", "Cost", "Unknown"]
GROUP_NAMES = {"label": "label / comparison", "workload": "workload (mode + model)", "tag": "tag"}
BAR_C = "#4c72b0"


class _Relay(QObject):
    done = Signal(object)  # Footprint, or an error message (str)


class FootprintView(QWidget):
    """``refresh()`` after a run finishes (or the store changes); ``set_carbon`` after the
    carbon settings change. ``updated`` carries each new Footprint."""

    updated = Signal(object)
    failed = Signal(str)

    def __init__(
        self,
        store: RunStore,
        carbon: CarbonSettings | None = None,
        parent: QWidget | None = None,
        limit: int = 5000,
        start: bool = True,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.carbon = carbon if carbon is not None else _saved_carbon()
        self.limit = limit
        self.footprint: Footprint | None = None
        self._scanning = False
        self._again = False
        self._relay = _Relay()
        self._relay.done.connect(self._arrived)
        self._build()
        if start:
            self.refresh()

    # -- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Group by:"))
        self.group_by = QComboBox()
        for key in fpc.GROUPINGS:
            self.group_by.addItem(GROUP_NAMES[key], key)
        row.addWidget(self.group_by)
        row.addWidget(QLabel("Period:"))
        self.period = QComboBox()
        for key in fpc.PERIODS:
            self.period.addItem(key, key)
        self.period.setCurrentIndex(fpc.PERIODS.index("week"))
        row.addWidget(self.period)
        self.cumulative = QCheckBox("cumulative")
        self.cumulative.setChecked(True)
        row.addWidget(self.cumulative)
        self.state = ElidedLabel("")
        self.state.setStyleSheet("color:#666")
        row.addWidget(self.state, 1)
        self.refresh_btn = QPushButton("Refresh")
        row.addWidget(self.refresh_btn)
        lay.addLayout(row)

        self.summary = _wrapping_label("Reading the run store...")
        self.summary.setStyleSheet("font-size: 11pt; font-weight: 600")
        self.carbon_line = _wrapping_label("")
        self.carbon_line.setStyleSheet("color:#444")
        self.equivalents = _wrapping_label("")
        lay.addWidget(self.summary)
        lay.addWidget(self.carbon_line)
        lay.addWidget(self.equivalents)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        unknown = QTableWidgetItem(COLUMNS[-1])
        unknown.setToolTip("runs without an energy figure: left out of the sums, never 0 J")
        self.table.setHorizontalHeaderItem(len(COLUMNS) - 1, unknown)
        self.table.setMinimumHeight(80)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setBackground("w")
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.setMinimumSize(160, 120)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setSizes([220, 260])
        lay.addWidget(split, 1)

        self.group_by.currentIndexChanged.connect(self._show_groups)
        self.period.currentIndexChanged.connect(self._show_plot)
        self.cumulative.toggled.connect(self._show_plot)
        self.refresh_btn.clicked.connect(self.refresh)

    # -- reading the store, off the GUI thread ---------------------------------------------------
    def set_carbon(self, carbon: CarbonSettings) -> None:
        self.carbon = carbon
        self.refresh()

    def refresh(self) -> None:
        """Rescan the store in the background; a call during a scan queues one more."""
        if self._scanning:
            self._again = True
            return
        self._scanning = True
        self.state.setText("updating...")
        store, carbon, limit, relay = self.store, self.carbon, self.limit, self._relay
        threading.Thread(
            target=_scan, args=(store, carbon, limit, relay), name="footprint", daemon=True
        ).start()

    @property
    def busy(self) -> bool:
        return self._scanning

    def _arrived(self, found: object) -> None:
        self._scanning = False
        if isinstance(found, Footprint):
            self.show_footprint(found)
            self.state.setText(f"updated {time.strftime('%H:%M:%S')}")
            self.updated.emit(found)
        else:
            self.summary.setText(f"The run store could not be read: {found}")
            self.state.setText("")
            self.failed.emit(str(found))
        if self._again:
            self._again = False
            self.refresh()

    # -- showing ---------------------------------------------------------------------------------
    def show_footprint(self, fp: Footprint) -> None:
        self.footprint = fp
        self.summary.setText(fpc.total_text(fp))
        self.summary.setToolTip(
            "Gross energy of every measured run (idle baseline excluded). A total carries the "
            "weakest label of its runs; CO2 and cost inherit it. A comparison counts through "
            "its runs, once each."
        )
        self.carbon_line.setText(fpc.carbon_text(fp.carbon))
        self._show_equivalents(fp)
        self._show_groups()
        self._show_plot()

    def _show_equivalents(self, fp: Footprint) -> None:
        eqs = fp.equivalents
        if not eqs:
            self.equivalents.setText("")
            self.equivalents.setToolTip("")
            return
        label = f" [{fp.total.label}]" if fp.total.label else ""
        self.equivalents.setText("About " + " · ".join(fpc.equivalent_text(e) for e in eqs) + label)
        self.equivalents.setToolTip("Sources:\n" + "\n".join(f"{e.what}: {e.source}" for e in eqs))

    def _show_groups(self) -> None:
        fp = self.footprint
        if fp is None:
            return
        by = self.group_by.currentData()
        groups = fp.groups(by)
        if by == "tag" and not groups:
            self.table.setRowCount(1)
            cells = ["no run has a tag yet", "", "", "", "", ""]
            for c, text in enumerate(cells):
                self.table.setItem(0, c, QTableWidgetItem(text))
            return
        self.table.setRowCount(len(groups))
        for r, g in enumerate(groups):
            a = g.amount
            cells = [
                g.name,
                str(a.runs),
                fpc.energy_text(a),
                fpc.grams(a.co2_g),
                fpc.money(a.cost, fp.carbon),
                str(a.unknown) if a.unknown else "",
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c > 0:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        for c in range(1, len(COLUMNS)):
            self.table.resizeColumnToContents(c)

    def _show_plot(self) -> None:
        fp = self.footprint
        self.plot.clear()
        if fp is None:
            return
        unit = self.period.currentData()
        periods = fp.periods(unit)
        xs, per, cum = fpc.period_series(periods)
        cumulative = self.cumulative.isChecked()
        ys = cum if cumulative else per
        name, scale = fpc.energy_scale(max((y for y in ys if y is not None), default=None))
        label = f" [{fp.total.label}]" if fp.total.label else ""
        what = "cumulative energy" if cumulative else f"energy per {unit}"
        self.plot.setLabel("left", f"{what} ({name}){label}")
        pts = [(x, y / scale) for x, y in zip(xs, ys, strict=True) if y is not None]
        if not pts:
            return
        px, py = [p[0] for p in pts], [p[1] for p in pts]
        if cumulative:
            self.plot.plot(px, py, pen=pg.mkPen(BAR_C, width=2), symbol="o", symbolSize=5)
        else:
            span = 86400.0 * (7 if unit == "week" else 1)
            # a bar is centred on its x: half a period on, so it sits on its own day or week
            mid = [x + span / 2 for x in px]
            self.plot.addItem(pg.BarGraphItem(x=mid, height=py, width=0.8 * span, brush=BAR_C))
        self.plot.enableAutoRange()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self.footprint is None and not self._scanning:
            self.refresh()


def _scan(store: RunStore, carbon: CarbonSettings, limit: int, relay: _Relay) -> None:
    """The background part of ``refresh``: resolve the carbon settings, sum the store."""
    try:
        try:
            resolved: dict[str, Any] | None = carbon.resolved()
        except UserError:
            resolved = None  # an unknown region: energy still adds up, CO2 and cost unknown
        found: object = fpc.from_store(store, resolved, limit)
    except StoreError as exc:
        found = str(exc)
    except Exception as exc:  # noqa: BLE001 - shown in the view, never a dead thread
        found = f"{type(exc).__name__}: {exc}"
    relay.done.emit(found)


def _saved_carbon() -> CarbonSettings:
    from wattlab.core.settings import Settings

    s = Settings.load()
    return CarbonSettings(s.region, s.intensity_g_per_kwh, s.pue, s.price_per_kwh, s.currency)


def _wrapping_label(text: str) -> QLabel:
    """Wraps instead of widening the window at 1024 px."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label
