"""The main window: workload and techniques on the left, live plots / results / history / log on
the right. Everything it does goes through the Controller; it holds no measurement logic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.store import RunStore
from wattlab.core.report.text import epoch_text
from wattlab.core.settings import Settings
from wattlab.core.techniques.base import Target

from .controller import Controller
from .widgets.history import HistoryView
from .widgets.live import LivePlots
from .widgets.results import ResultsView
from .widgets.techniques import TechniquesPanel
from .widgets.workload import WorkloadPanel

REDRAW_MS = 100


class MainWindow(QMainWindow):
    def __init__(self, store: RunStore, settings: Settings, gpu_names: list[str]) -> None:
        super().__init__()
        self.setWindowTitle("WattLab")
        self.store = store
        self.controller = Controller(store, settings)
        self.gpu_names = gpu_names
        scroll = self._build_controls(gpu_names)
        right = self._build_tabs(store)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        self.setCentralWidget(split)

        self._connect()
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self._started: float | None = None
        self._phase = ""
        self._progress_frac = 0.0
        self.update_target()
        self._restore()

    def _build_controls(self, gpu_names: list[str]) -> QScrollArea:
        """Left column: workload, techniques, run buttons, progress."""
        left = QWidget()
        ll = QVBoxLayout(left)
        self.workload = WorkloadPanel(gpu_names)
        self.techniques = TechniquesPanel()
        ll.addWidget(self.workload)
        ll.addWidget(self.techniques, 1)
        self.run_both = QPushButton("Run baseline + optimized")
        self.run_once = QPushButton("Run once")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.settings_btn = QPushButton("Settings...")
        row = QHBoxLayout()
        for b in (self.run_both, self.run_once, self.stop_btn, self.settings_btn):
            row.addWidget(b)
        ll.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        ll.addWidget(self.progress)
        ll.addWidget(self.status)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(380)

        return scroll

    def _build_tabs(self, store: RunStore) -> QWidget:
        """Right column: the error banner over the Live, Results, History and Log tabs."""
        right = QWidget()
        rl = QVBoxLayout(right)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setObjectName("errorBanner")
        self.error.setStyleSheet("background:#fde2e2;color:#7a0000;padding:6px;border-radius:4px")
        self.error.hide()
        rl.addWidget(self.error)
        self.tabs = QTabWidget()
        self.live = LivePlots()
        self.results = ResultsView()
        self.history = HistoryView(store)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.results, "Results")
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.log, "Log")
        rl.addWidget(self.tabs)
        return right

    def _connect(self) -> None:
        c = self.controller
        c.event.connect(self.on_event)
        c.progress.connect(self.on_progress)
        c.side_changed.connect(self.on_side)
        c.finished.connect(self.on_finished)
        c.failed.connect(self.on_failed)
        c.busy_changed.connect(self.on_busy)
        self.run_both.clicked.connect(self.start_compare)
        self.run_once.clicked.connect(self.start_once)
        self.stop_btn.clicked.connect(self.stop)
        self.settings_btn.clicked.connect(self.edit_settings)
        self.workload.changed.connect(self.update_target)
        self.results.export_pdf.connect(lambda: self.export(pdf=True))
        self.results.export_csv.connect(lambda: self.export(pdf=False))
        self.history.open_requested.connect(self.open_stored)
        self.history.compare_requested.connect(self.compare_stored)
        self.history.rerun_requested.connect(self.rerun)

    # -- helpers ---------------------------------------------------------------------------------
    def log_line(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()
        self.log_line(f"error: {text}")

    def update_target(self) -> None:
        dev = self.workload.device.currentData()
        device = "cuda" if (dev != "cpu" and self.gpu_names) else "cpu"
        self.techniques.set_target(
            Target(self.workload.mode.currentData(), device, self.workload.model_kind())
        )

    def _restore(self) -> None:
        qs = QSettings("WattLab", "WattLab")
        geo = qs.value("geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        for path in qs.value("recent_models", []) or []:
            if Path(path).exists():
                self.workload.add_model(path)
        self.workload.model.setCurrentIndex(0)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        qs = QSettings("WattLab", "WattLab")
        qs.setValue("geometry", self.saveGeometry())
        models = [self.workload.model.itemData(i) for i in range(self.workload.model.count())]
        qs.setValue("recent_models", [m for m in models if m != "demo"][-8:])
        if self.controller.busy:
            self.controller.stop()
        super().closeEvent(event)

    # -- commands --------------------------------------------------------------------------------
    def start_compare(self) -> None:
        problem = self.techniques.validate()
        techs = self.techniques.chosen()
        if problem:
            self.show_error(problem)
            return
        if not techs:
            self.show_error("choose at least one technique for the optimized side")
            return
        base = self.workload.spec()
        opt = self.workload.spec(techs)
        self._begin()
        self.controller.start_compare(base, opt, self.workload.repeats.value())

    def start_once(self) -> None:
        problem = self.techniques.validate()
        if problem:
            self.show_error(problem)
            return
        self._begin()
        self.controller.start_run(self.workload.spec(self.techniques.chosen()))

    def stop(self) -> None:
        self.status.setText("Stopping: the run is kept as cancelled...")
        self.controller.stop()

    def edit_settings(self, dialog=None) -> bool:  # noqa: ANN001 - tests pass a prepared one
        from .widgets.settings_dialog import SettingsDialog

        dlg = dialog or SettingsDialog(self.controller.settings, self)
        if dialog is None and dlg.exec() != SettingsDialog.Accepted:
            return False
        new = dlg.values()
        try:
            path = new.save()
        except OSError as exc:
            self.show_error(f"could not save the settings: {exc}")
            return False
        self.controller.settings = new
        self.log_line(f"settings saved to {path}")
        return True

    def rerun(self, spec: dict) -> None:
        self.workload.load_spec(spec)
        for t in spec.get("techniques") or []:
            self.techniques.check(t["name"])
            for k, v in (t.get("params") or {}).items():
                self.techniques.set_param(t["name"], k, v)
        self.start_once()

    def _begin(self) -> None:
        self.error.hide()
        self._started = time.monotonic()
        self.progress.setValue(0)
        self.live.reset(keep_overlay=False)
        self.tabs.setCurrentWidget(self.live)

    # -- controller signals ----------------------------------------------------------------------
    def on_busy(self, busy: bool) -> None:
        for b in (self.run_both, self.run_once):
            b.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)
        if not busy:
            self.history.refresh()
            if self.progress.value() < 100 and not self.error.isVisible():
                self.status.setText("Stopped.")

    def on_progress(self, msg: str) -> None:
        self.log_line(msg)
        self.live.side.set(msg, "")

    def on_side(self, side: str) -> None:
        self.live.reset(keep_overlay=side == "optimized")

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "phase":
            self._phase = ev["name"]
            self.log_line(f"phase {self._phase}")
        elif kind == "step":
            done, total = ev.get("batch"), ev.get("batches")
            if done and total:
                self._progress_frac = done / total
                self.progress.setValue(int(100 * self._progress_frac))
            self.live.add_step(time.monotonic(), int(ev.get("items", 0)))
        elif kind == "epoch":
            self.log_line(epoch_text(ev))  # a diverged epoch's null loss shows "-"
        elif kind in ("log", "error"):
            self.log_line(ev.get("message", ""))

    def on_finished(self, payload: dict) -> None:
        res = payload["result"]
        self.progress.setValue(100)
        if payload["kind"] == "comparison":
            png = payload.get("chart_png")
            if png is None and "chart_png" not in payload:  # from history: drawn on request
                png = self.controller.chart_png(res)
            self.results.show_comparison(res, png)
            self.status.setText(res["headline"])
        else:
            self.results.show_run(res)
            self.status.setText(f"Run {res['run_id']} {res['status']}.")
        self.tabs.setCurrentWidget(self.results)
        self.history.refresh()

    def on_failed(self, msg: str) -> None:
        self.show_error(msg)
        self.status.setText("Failed: see the message above.")

    def redraw(self) -> None:
        if not self.controller.busy:
            return
        if self.tabs.currentWidget() is self.live:  # hidden plots need no redraw
            self.live.update_from(self.controller.ring(), self.controller.energy_so_far())
        if self._started is not None:
            el = time.monotonic() - self._started
            eta = ""
            if 0.05 < self._progress_frac < 1:
                eta = f", phase ETA {el / self._progress_frac - el:.0f} s"
            self.status.setText(f"{self._phase or 'starting'}: {el:.0f} s elapsed{eta}")

    # -- results and history ---------------------------------------------------------------------
    def export(self, pdf: bool) -> None:
        comp = self.results.comparison
        if comp is None:
            return
        d = QFileDialog.getExistingDirectory(self, "Export reports to")
        if d:
            self.export_to(Path(d), pdf)

    def export_to(self, folder: Path, pdf: bool) -> list[Path]:
        try:
            files = self.controller.export(self.results.comparison, folder, pdf=pdf, csv=not pdf)
        except OSError as exc:
            self.show_error(f"could not write the reports: {exc}")
            return []
        self.log_line("wrote " + ", ".join(str(f) for f in files))
        return files

    def open_stored(self, run_id: int) -> None:
        row = self.store.run(run_id)
        res = self.store.result(run_id)
        if row is None or res is None:
            self.show_error(
                f"run {run_id} has no stored result (status {row.status if row else 'unknown'})"
            )
            return
        self.on_finished(
            {"kind": "comparison" if row.kind == "comparison" else "run", "result": res}
        )

    def compare_stored(self, a: int, b: int) -> None:
        """Any two stored session runs: a as baseline, b as optimized (one pair, no repeats)."""
        from wattlab.core.errors import UserError
        from wattlab.core.run.comparison import compare_stored

        try:
            comp = compare_stored(
                self.store,
                a,
                b,
                self.controller.measure_settings(),
                self.controller.carbon().resolved(),
            )
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.on_finished({"kind": "comparison", "result": comp})
