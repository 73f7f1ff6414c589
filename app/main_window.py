"""The main window: workload and techniques on the left with the run controls pinned under them,
Live / Results / Runs / Footprint / Sweep / Log on the right, the measurement-quality strip at the
bottom. Everything it does goes through the Controller or core; it holds no measurement logic."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.measure.store import RunStore
from wattlab.core.report.text import epoch_text
from wattlab.core.run.progress import OverallProgress
from wattlab.core.settings import Settings
from wattlab.core.techniques.base import Target

from . import gui_gc
from .controller import Controller
from .stored_results import StoredResults
from .widgets.live import LivePlots
from .widgets.results import ResultsView
from .widgets.run_bar import RunBar
from .widgets.runs import RunsView
from .widgets.techniques import TechniquesPanel
from .widgets.workload import WorkloadPanel
from .words import field_message, in_app_words

REDRAW_MS = 100
SCRIPT_TECHNIQUES = (
    "Not used in Script mode: techniques change WattLab's own workloads. To measure a change "
    "in your script, put the changed command line in Compare with and use Run baseline + "
    "optimized."
)
LEFT_MIN_W = 340  # the left column at 1024 px wide leaves the tabs about 680 px


class MainWindow(StoredResults, QMainWindow):
    def __init__(self, store: RunStore, settings: Settings, gpu_names: list[str]) -> None:
        super().__init__()
        gui_gc.hold()  # Python's GC in the GUI thread only while the window is open
        self._gc_held = True
        self.setWindowTitle("WattLab")
        self.store = store
        self.controller = Controller(store, settings)
        self.gpu_names = gpu_names
        left = self._build_controls(gpu_names)
        right = self._build_tabs(store)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        self.setCentralWidget(split)
        self._build_strip()
        self._build_menus()
        self._connect()
        self.plan: OverallProgress | None = None
        self._stamped = False  # events carry their own time (a script's markers)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        # Replaced in tests: a modal question would block them.
        self.confirm_close = lambda: (
            QMessageBox.question(
                self,
                "A run is in progress",
                "A run is in progress. Stop it (it is kept as cancelled) and quit?",
            )
            == QMessageBox.Yes
        )
        self.update_target()
        self._restore()
        self.techniques.use_recommended()  # the first click works, with the CLI's --demo choice

    # -- building --------------------------------------------------------------------------------
    def _build_controls(self, gpu_names: list[str]) -> QWidget:
        """Left column: workload and techniques scroll; the run bar under them never does."""
        inner = QWidget()
        il = QVBoxLayout(inner)
        self.workload = WorkloadPanel(gpu_names)
        self.techniques = TechniquesPanel()
        il.addWidget(self.workload)
        il.addWidget(self.techniques, 1)
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.run_bar = RunBar()
        self.run_both = self.run_bar.run_both
        self.run_once = self.run_bar.run_once
        self.stop_btn = self.run_bar.stop_btn
        self.settings_btn = self.run_bar.settings_btn
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(scroll, 1)
        ll.addWidget(self.run_bar, 0)
        left.setMinimumWidth(LEFT_MIN_W)
        return left

    def _build_tabs(self, store: RunStore) -> QWidget:
        """Right column: the error banner over the Live, Results, Runs, Footprint, Sweep and Log
        tabs."""
        right = QWidget()
        rl = QVBoxLayout(right)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setObjectName("errorBanner")
        self.error.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.error.setStyleSheet("background:#fde2e2;color:#7a0000;padding:6px;border-radius:4px")
        self.error.hide()
        rl.addWidget(self.error)
        self.tabs = QTabWidget()
        self.live = LivePlots()
        self.results = ResultsView()
        self.history = RunsView(store)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.results, "Results")
        self.tabs.addTab(self.history, "Runs")
        self._add_footprint(store)
        self._add_sweep(store)
        self.tabs.addTab(self.log, "Log")
        rl.addWidget(self.tabs)
        return right

    def _add_footprint(self, store: RunStore) -> None:
        from .widgets.footprint import FootprintView

        self.footprint = FootprintView(store, self.controller.carbon())
        self.tabs.addTab(self.footprint, "Footprint")

    def _add_sweep(self, store: RunStore) -> None:
        """Stored sweeps (started from the CLI); a clicked candidate opens in Results."""
        from .widgets.sweep import SweepView

        self.sweep = SweepView(store)
        self.tabs.addTab(self.sweep, "Sweep")

    def _build_strip(self) -> None:
        from .widgets.quality_strip import QualityStrip

        self.strip = QualityStrip()
        self.statusBar().addWidget(self.strip, 1)
        self.statusBar().setSizeGripEnabled(True)

    def _action(self, menu: Any, text: str, slot: Any, keys: Any = None) -> QAction:
        act = QAction(text, self)
        if keys is not None:
            act.setShortcut(QKeySequence(keys))
        act.triggered.connect(lambda *_: slot())
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        """File / Run / View / Help, with the shortcuts the buttons' tooltips name."""
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open model folder...", self.workload.open_folder, QKeySequence.Open)
        self._action(f, "Open ONNX file...", self.workload.open_onnx)
        self._action(f, "Open dataset (CSV/JSONL)...", self.workload.open_data)
        f.addSeparator()
        self.export_action = self._action(f, "Export report...", self.export, "Ctrl+E")
        self.export_action.setEnabled(False)
        self._action(f, "Settings...", self.edit_settings, QKeySequence.Preferences)
        f.addSeparator()
        self._action(f, "Quit", self.close, QKeySequence.Quit)
        r = bar.addMenu("&Run")
        self.run_both_action = self._action(
            r, "Run baseline + optimized", self.start_compare, "Ctrl+R"
        )
        self.run_once_action = self._action(r, "Run once", self.start_once, "Ctrl+Shift+R")
        self.stop_action = self._action(r, "Stop", self.stop, "Ctrl+.")
        self.stop_action.setEnabled(False)
        r.addSeparator()
        self._action(r, "Use recommended techniques", self.techniques.use_recommended)
        v = bar.addMenu("&View")
        for k in range(self.tabs.count()):
            self._action(
                v, self.tabs.tabText(k), lambda k=k: self.tabs.setCurrentIndex(k), f"Ctrl+{k + 1}"
            )
        h = bar.addMenu("&Help")
        self._action(h, "WattLab help", self.show_help, QKeySequence.HelpContents)
        self._action(h, "About WattLab", self.show_about)

    def _connect(self) -> None:
        c = self.controller
        c.event.connect(self.on_event)
        c.preparing.connect(self.on_preparing)
        c.run_started.connect(self.on_run_started)
        c.finished.connect(self.on_finished)
        c.failed.connect(self.on_failed)
        c.model_refused.connect(self.workload.remove_model)
        c.busy_changed.connect(self.on_busy)
        self.run_both.clicked.connect(lambda *_: self.start_compare())
        self.run_once.clicked.connect(lambda *_: self.start_once())
        self.stop_btn.clicked.connect(lambda *_: self.stop())
        # clicked(bool) must not reach edit_settings(dialog): it skipped the dialog
        self.settings_btn.clicked.connect(lambda *_: self.edit_settings())
        self.workload.changed.connect(self.update_target)
        self.workload.changed.connect(self.clear_error)
        self.workload.problem.connect(self.show_error)
        self.techniques.changed.connect(self.clear_error)
        self.results.export_requested.connect(self.export)
        self.history.open_requested.connect(self.open_stored)
        self.history.compare_requested.connect(self.compare_stored)
        self.history.rerun_requested.connect(self.rerun)
        self.history.rerun_comparison_requested.connect(self.rerun_comparison)
        self.history.rerun_command_requested.connect(self.rerun_command)
        self.sweep.open_comparison.connect(self.open_stored)

    # -- helpers ---------------------------------------------------------------------------------
    def log_line(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    def show_error(self, text: str) -> None:
        """One message in the app's words (controls, not CLI flags), also kept in the Log."""
        shown = in_app_words(text)
        self.error.setText(shown)
        self.error.show()
        self.log_line(f"error: {shown}")

    def clear_error(self) -> None:
        """The user changed an input: the message about the old one no longer applies."""
        if not self.controller.busy:
            self.error.hide()

    def update_target(self) -> None:
        """Techniques follow the workload; a user's own script takes none (greyed, saying
        why: two command lines are compared instead)."""
        script = self.workload.is_script()
        self.techniques.setEnabled(not script)
        self.techniques.setToolTip(SCRIPT_TECHNIQUES if script else "")
        self.run_bar.set_script_mode(script)
        if script:
            return
        dev = self.workload.device.currentData()
        device = "cuda" if (dev != "cpu" and self.gpu_names) else "cpu"
        self.techniques.set_target(
            Target(self.workload.mode.currentData(), device, self.workload.model_kind())
        )

    def _restore(self) -> None:
        """Window geometry and the recent models that still pass core's check."""
        from wattlab.core.errors import UserError
        from wattlab.core.run.preflight import check_model

        qs = QSettings("WattLab", "WattLab")
        geo = qs.value("geometry")
        self.geometry_restored = geo is not None and bool(self.restoreGeometry(geo))
        for path in qs.value("recent_models", []) or []:
            try:
                check_model(str(path))
            except UserError:
                continue  # broken since last time: it leaves Recent models
            self.workload.add_model(str(path))
        self.workload.model.setCurrentIndex(0)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if self.controller.busy:
            if not self.confirm_close():
                event.ignore()
                return
            self.controller.stop()
            self.controller.wait(15.0)  # the run is kept as cancelled, its worker gone
        self.strip.stop()
        if self._gc_held:
            self._gc_held = False
            gui_gc.release()
        qs = QSettings("WattLab", "WattLab")
        qs.setValue("geometry", self.saveGeometry())
        qs.setValue("recent_models", self.workload.recent_models()[-8:])
        super().closeEvent(event)

    # -- commands --------------------------------------------------------------------------------
    def start_compare(self) -> None:
        if self.controller.busy:
            return
        if self.workload.is_script():
            self._start_script(compare=True)
            return
        problem = self.techniques.validate()
        techs = self.techniques.chosen()
        if problem:
            self.show_error(problem)
            return
        if not techs:
            self.show_error(
                "choose at least one technique for the optimized side "
                "(or click Recommended for this machine)"
            )
            return
        base = self.workload.spec(save=False)  # a comparison's runs do not save models
        opt = self.workload.spec(techs, save=False)
        repeats = self.workload.repeats.value()
        self._begin(2 * repeats)
        self.controller.start_compare(base, opt, repeats)

    def start_once(self) -> None:
        if self.controller.busy:
            return
        if self.workload.is_script():
            self._start_script(compare=False)
            return
        problem = self.techniques.validate()
        if problem:
            self.show_error(problem)
            return
        self._begin(1)
        self.controller.start_run(self.workload.spec(self.techniques.chosen()))

    def _start_script(self, compare: bool) -> None:
        """The user's own command: once (``wattlab profile``) or against Compare with
        (``wattlab bench``, the first command the baseline); refused with one message naming
        the field before anything runs or is stored."""
        from wattlab.core.run.script import ScriptInputError

        try:
            plan = self.workload.script_plan(compare)
        except ScriptInputError as exc:
            self.show_error(field_message(exc.field, str(exc)))
            return
        rounds = self.workload.repeats.value()
        self._begin(2 * rounds if compare else 1, stamped=True)
        if compare:
            self.controller.start_script_compare(plan, rounds)
        else:
            self.controller.start_script(plan)

    def stop(self) -> None:
        if not self.controller.busy:
            return
        self.run_bar.phase.setText("Stopping: the current run is kept as cancelled...")
        self.controller.stop()

    def edit_settings(self, dialog=None) -> bool:  # noqa: ANN001 - tests pass a prepared one
        from .widgets.settings_dialog import SettingsDialog

        dlg = dialog if dialog is not None else SettingsDialog(self.controller.settings, self)
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
        self.footprint.set_carbon(self.controller.carbon())  # region or price may have changed
        return True

    def _event_time(self, ev: dict) -> float:
        """When an event happened, on the sampler's clock: a script's markers carry their own
        stamp (they arrive in bursts); a session's events are placed when received."""
        now = time.monotonic()
        mono = ev.get("mono")
        if self._stamped and isinstance(mono, (int, float)) and 0 < mono <= now:
            return float(mono)
        return now

    def rerun_command(self, kind: str, spec: dict) -> None:
        """Re-run a stored command (Run once) or two-command bench (Run baseline + optimized)
        from the Runs tab: its fields go back into Script mode, then it starts."""
        from wattlab.core.run.script import ScriptInputError, from_stored

        try:
            stored = from_stored(kind, spec)
        except ScriptInputError as exc:
            self.show_error(str(exc))
            return
        self.workload.load_script(stored)
        if stored.compare is None:
            self.start_once()
        else:
            self.start_compare()

    def _begin(self, runs_total: int, stamped: bool = False) -> None:
        self._stamped = stamped
        self.error.hide()
        self.plan = OverallProgress(runs_total, self.controller.settings.cooldown_s)
        self.live.begin_session(self.workload.mode.currentData())
        self.tabs.setCurrentWidget(self.live)
        self.run_bar.show_progress(self.plan)

    # -- controller signals ----------------------------------------------------------------------
    def on_busy(self, busy: bool) -> None:
        self.run_bar.set_busy(busy)
        self.run_both_action.setEnabled(not busy)
        self.run_once_action.setEnabled(not busy)
        self.stop_action.setEnabled(busy)
        if not busy:
            self.log_output()  # its last lines, before the timer would see it idle
            self.live.finish("cancelled")  # no-op after finished/failed; a Stop during a
            # one-time preparation emits neither
            if self.plan is not None:
                self.plan.end()
            self.history.refresh()
            self.footprint.refresh()
            self.sweep.refresh()

    def on_preparing(self, what: str) -> None:
        self.log_line(f"one-time preparation: {what}")
        if self.plan is not None:
            self.plan.prepare(what)
        self.live.begin_run("single", f"preparation: {what}")

    def on_run_started(self, side: str, title: str) -> None:
        self.log_line(f"started: {title}")
        if self.plan is not None:
            self.plan.start_run(title)
        self.live.begin_run(side, title)

    def on_event(self, ev: dict) -> None:
        if self.plan is not None:
            self.plan.on_event(ev)
        self.live.on_event(ev, self._event_time(ev))
        kind = ev.get("event")
        if kind == "phase":
            self.log_line(f"phase {ev.get('name', '')}")
        elif kind == "epoch":
            self.log_line(epoch_text(ev))  # a diverged epoch's null loss shows "-"
        elif kind in ("log", "error"):
            self.log_line(in_app_words(str(ev.get("message", ""))))

    def on_finished(self, payload: dict) -> None:
        """Show a result: one that just ran (the run bar and Live say how it ended) or one
        opened from the Runs tab (they keep what they showed)."""
        res = payload["result"]
        if payload["kind"] == "bench":
            self.results.show_bench(res)
            status, what, line = res["status"], f"bench {res['run_id']}", res["headline"]
        elif payload["kind"] == "comparison":
            runs = self._runs_of(res)
            missing = {rid for rid, r in runs.items() if r is None}
            self.results.show_comparison(
                res, missing, runs=runs, chart_png=payload.get("chart_png")
            )
            status, what, line = res.get("status", "completed"), "comparison", res["headline"]
        else:
            samples = payload.get("samples")  # read in the controller's thread after a run
            if samples is None:
                samples = self.store.samples(res["run_id"])
            self.results.show_run(res, samples)
            status, what = res["status"], f"run {res['run_id']}"
            line = f"Run {res['run_id']} {status}: see Results."
        if not payload.get("stored"):
            self.run_bar.show_outcome(f"{what} {status}", line, done=status == "completed")
            self.live.finish(status)
        self.strip.show_result(res)
        self.export_action.setEnabled(True)
        self.tabs.setCurrentWidget(self.results)

    def _runs_of(self, comp: dict) -> dict[int, dict | None]:
        """The comparison's runs as stored now; None for one deleted from the Runs tab."""
        ids = {int(pr["run_id"]) for pr in comp.get("per_run") or [] if "run_id" in pr}
        return {rid: self.store.result(rid) for rid in sorted(ids)}

    def on_failed(self, msg: str) -> None:
        self.show_error(msg)
        self.live.finish("failed")
        self.run_bar.show_outcome("failed", "Failed: see the message above.", done=False)

    def log_output(self) -> None:
        """A script's own output, batched: the lines since the last timer tick."""
        for line in self.controller.take_output():
            self.log_line(f"output: {line}")

    def redraw(self) -> None:
        self.log_output()
        if not self.controller.busy:
            return
        # LivePlots skips drawing while hidden but keeps the comparison's energy total going
        self.live.update_from(self.controller.ring(), self.controller.energy_so_far())
        self.live.show_nodes(self.controller.nodes_live())
        self.redraw_progress()

    def redraw_progress(self) -> None:
        if self.plan is not None:
            self.run_bar.show_progress(self.plan)
