"""The measurement-quality strip: one line at the bottom of the main window saying how far the
next figure can be trusted - the last run's badge, other processes' load right now, and which
sensors are live (and why not the rest, in the tooltips).

Everything it shows is computed in core (core/run/quality.py); this widget only places it. The
sensor probe (NVML's start-up) and the load sampling run on a background thread, never on the
GUI thread, and reach the widget through queued Qt signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QSizePolicy, QWidget

from wattlab.core.run.quality import (
    BackgroundLoad,
    Badge,
    LoadMeter,
    SensorState,
    badge_for,
    is_comparison,
    probe_sensor_status,
    sensors_text,
    sensors_tooltip,
)

from .elided import ElidedLabel

LOAD_INTERVAL_S = 3.0
# Badge colours: green for clean, amber for a figure to read with care, grey for no figure.
BADGE_STYLE = {
    "clean": "background:#dff3e3;color:#1d5e2c",
    "disturbed": "background:#fff0c2;color:#6b4a00",
    "too short": "background:#fff0c2;color:#6b4a00",
    "too few repeats": "background:#fff0c2;color:#6b4a00",
    "cancelled": "background:#e6e6e6;color:#333333",
    "no energy": "background:#e6e6e6;color:#333333",
    "interrupted": "background:#fde2e2;color:#7a0000",
    "failed": "background:#fde2e2;color:#7a0000",
}


class _Relay(QObject):
    """Carries the background thread's findings to the GUI thread (queued connections)."""

    sensors = Signal(object)
    load = Signal(object)


class QualityStrip(QWidget):
    """``set_run_badge``/``show_result`` after a run; ``refresh_sensors`` after a settings
    change; ``stop`` when the window closes (also done on application quit)."""

    sensors_changed = Signal(object)  # list[SensorState], once probed
    load_changed = Signal(object)  # BackgroundLoad | None

    def __init__(
        self,
        parent: QWidget | None = None,
        probe: Callable[[], list[SensorState]] = probe_sensor_status,
        meter: LoadMeter | None = None,
        interval_s: float = LOAD_INTERVAL_S,
        start: bool = True,
    ) -> None:
        super().__init__(parent)
        self._probe = probe
        self._meter = meter
        self._interval = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._want_sensors = threading.Event()
        self._thread: threading.Thread | None = None
        self.sensors: list[SensorState] = []
        self.load: BackgroundLoad | None = None
        self.badge: Badge | None = None
        self._build()
        self._relay = _Relay()
        self._relay.sensors.connect(self.show_sensors)
        self._relay.load.connect(self.show_load)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop)
        # Deleted without stop(): the thread ends at its next wake-up instead of running on.
        stop, wake = self._stop, self._wake
        self.destroyed.connect(lambda *_: (stop.set(), wake.set()))
        if start:
            self.start()

    def _build(self) -> None:
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 1, 6, 1)
        lay.setSpacing(8)
        self.badge_label = QLabel("no run yet")
        self.badge_label.setObjectName("qualityBadge")
        self.badge_label.setSizePolicy(QSizePolicy.Maximum, QSizePolicy.Fixed)
        self.badge_label.setToolTip("The last run's measurement quality appears here.")
        self.load_label = ElidedLabel("other processes: CPU -")
        self.sensor_label = ElidedLabel("sensors: probing...")
        lay.addWidget(self.badge_label)
        lay.addWidget(_separator())
        lay.addWidget(self.load_label, 2)
        lay.addWidget(_separator())
        lay.addWidget(self.sensor_label, 5)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self._style_badge("cancelled")

    # -- the background thread -------------------------------------------------------------------
    def start(self) -> None:
        """Probe the sensors once, then sample other processes' load every few seconds."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._want_sensors.set()
        self._thread = threading.Thread(target=self._loop, name="quality-strip", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=0.5)  # a hung NVML probe must not hold the window
            self._thread = None

    def refresh_sensors(self) -> None:
        """Probe again (after the user fixed a permission, or changed settings)."""
        self._want_sensors.set()
        self._wake.set()
        if self._thread is None:
            self.start()

    def _loop(self) -> None:
        meter = self._meter or LoadMeter()
        try:
            while not self._stop.is_set():
                if self._want_sensors.is_set():
                    self._want_sensors.clear()
                    self._emit(self._relay.sensors, _safely(self._probe))
                self._emit(self._relay.load, _safely(meter.sample))
                self._wake.wait(self._interval)
                self._wake.clear()
        finally:
            meter.close()

    def _emit(self, signal: Any, value: Any) -> None:
        if value is not _FAILED and not self._stop.is_set():
            signal.emit(value)

    # -- what it shows ---------------------------------------------------------------------------
    def show_sensors(self, states: Sequence[SensorState]) -> None:
        self.sensors = list(states)
        if not self.sensors:
            self.sensor_label.setText("sensors: unknown")
            return
        self.sensor_label.setText(sensors_text(self.sensors))
        self.sensor_label.setToolTip(
            "How each part's energy is obtained:\n" + sensors_tooltip(self.sensors)
        )
        self.sensors_changed.emit(self.sensors)

    def show_load(self, load: BackgroundLoad | None) -> None:
        if load is None:  # the first window is still open: keep what is shown
            return
        self.load = load
        self.load_label.setText(load.text() + (" - busy" if load.busy else ""))
        self.load_label.setStyleSheet("color:#8a5a00" if load.busy else "")
        self.load_label.setToolTip(
            f"CPU time used by processes outside WattLab over the last {load.window_s:.0f} s, "
            "as a share of all CPUs. Above 10% a measured run is flagged as disturbed: close "
            "other work before measuring."
        )
        self.load_changed.emit(load)

    def set_run_badge(self, badge: Badge | None, what: str = "last run") -> None:
        self.badge = badge
        if badge is None:
            self.badge_label.setText("no run yet")
            self.badge_label.setToolTip("")
            self._style_badge("cancelled")
            return
        self.badge_label.setText(f"{what}: {badge.text}")
        self.badge_label.setToolTip(badge.reason)
        self._style_badge(badge.kind)

    def show_result(self, result: dict[str, Any]) -> Badge:
        """The badge of a finished run or comparison (the dict the controller delivered)."""
        badge = badge_for(result)
        if is_comparison(result):
            cid = result.get("comparison_id")
            what = f"comparison {cid}" if cid else "comparison"
        else:
            rid = result.get("run_id")
            kind = "bench" if result.get("kind") == "bench" else "run"
            what = f"{kind} {rid}" if rid is not None else "last run"
        self.set_run_badge(badge, what)
        return badge

    def text(self) -> str:
        """The whole line, as a user reads it (for tests and accessibility)."""
        return " | ".join(
            [self.badge_label.text(), self.load_label.full_text(), self.sensor_label.full_text()]
        )

    def _style_badge(self, kind: str) -> None:
        style = BADGE_STYLE.get(kind, BADGE_STYLE["cancelled"])
        self.badge_label.setStyleSheet(f"{style};padding:0px 6px;border-radius:3px")


_FAILED = object()


def _safely(fn: Callable[[], Any]) -> Any:
    """A probe that fails shows nothing new; it must never end the thread."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - e.g. /proc unreadable in a sandbox
        return _FAILED


def _separator() -> QLabel:
    sep = QLabel("·")
    sep.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
    return sep
