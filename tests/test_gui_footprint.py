"""The quality strip and the footprint view: what they say, that their slow parts run off the
GUI thread, and that neither widens a 1024x700 window."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtWidgets import QMainWindow, QVBoxLayout, QWidget

from wattlab.app.widgets.footprint import FootprintView
from wattlab.app.widgets.quality_strip import QualityStrip
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.run.quality import BackgroundLoad, SensorState

pytestmark = pytest.mark.gui

NO_RAPL = "/sys/class/powercap does not exist (no powercap driver)"
STATES = [
    SensorState("CPU", False, "estimated", "estimate model", NO_RAPL, "no RAPL"),
    SensorState("RAM", False, "estimated", "estimate model", NO_RAPL, "no RAPL"),
    SensorState("GPU", False, None, None, "NVIDIA driver is not loaded", "no NVML"),
]


class _Meter:
    """A load meter that answers at once, counting the threads that call it."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.closed = False

    def sample(self) -> BackgroundLoad:
        self.threads.add(threading.current_thread().name)
        return BackgroundLoad(0.12, 3.0)

    def close(self) -> None:
        self.closed = True


def _disturbed_run() -> dict:
    return {
        "run_id": 7,
        "status": "completed",
        "total": {"gross_j": 10.0, "label": "estimated"},
        "contention": {"disturbed": True, "other_cpu_share": 0.3},
        "warnings": ["disturbed run: other processes used 30% of the CPUs during the phase"],
    }


def test_strip_shows_badge_load_and_sensors(qtbot):
    strip = QualityStrip(probe=lambda: STATES, meter=_Meter(), start=False)
    qtbot.addWidget(strip)
    strip.show_sensors(STATES)
    strip.show_load(BackgroundLoad(0.12, 3.0))
    badge = strip.show_result(_disturbed_run())
    assert badge.kind == "disturbed"
    assert strip.text() == (
        "run 7: disturbed | other processes: CPU 12% - busy | "
        "CPU+RAM: estimated (no RAPL) · GPU: none (no NVML)"
    )
    assert NO_RAPL in strip.sensor_label.toolTip()
    assert "NVIDIA driver is not loaded" in strip.sensor_label.toolTip()
    assert strip.badge_label.toolTip().startswith("disturbed run: other processes used 30%")


def test_strip_badges_a_comparison_and_clears(qtbot):
    strip = QualityStrip(probe=lambda: STATES, meter=_Meter(), start=False)
    qtbot.addWidget(strip)
    comp = {
        "comparison_id": 4,
        "status": "completed",
        "pairs_completed": 2,
        "repeats": 2,
        "verdicts": [{"metric": "energy_per_item_j", "verdict": "too few repeats", "pairs": 2}],
        "per_run": [],
    }
    strip.show_result(comp)
    assert strip.badge_label.text() == "comparison 4: too few repeats"
    strip.set_run_badge(None)
    assert strip.badge_label.text() == "no run yet"
    strip.show_load(None)  # the first window is still open: nothing changes
    assert strip.load_label.full_text() == "other processes: CPU -"


def test_strip_probes_and_samples_off_the_gui_thread(qtbot):
    meter = _Meter()
    probed: list[str] = []

    def probe() -> list[SensorState]:
        probed.append(threading.current_thread().name)
        return STATES

    strip = QualityStrip(probe=probe, meter=meter, interval_s=0.05)
    qtbot.addWidget(strip)
    with qtbot.waitSignal(strip.load_changed, timeout=5000):
        pass
    qtbot.waitUntil(lambda: bool(strip.sensors), timeout=5000)
    assert "CPU+RAM: estimated" in strip.sensor_label.full_text()
    assert "other processes: CPU 12%" in strip.load_label.full_text()
    main = threading.main_thread().name
    assert probed == ["quality-strip"] and meter.threads == {"quality-strip"} != {main}
    with qtbot.waitSignal(strip.sensors_changed, timeout=5000):
        strip.refresh_sensors()
    assert probed == ["quality-strip", "quality-strip"]
    strip.stop()
    assert meter.closed and strip._thread is None


def _window(widget: QWidget, bottom: QWidget | None = None) -> QMainWindow:
    win = QMainWindow()
    central = QWidget()
    lay = QVBoxLayout(central)
    lay.addWidget(widget, 1)
    if bottom is not None:
        lay.addWidget(bottom)
    win.setCentralWidget(central)
    win.resize(1024, 700)
    return win


def test_strip_is_one_line_and_never_widens_the_window(qtbot):
    strip = QualityStrip(probe=lambda: STATES, meter=_Meter(), start=False)
    long_reason = "x" * 400
    states = [SensorState(f"GPU{k}", False, None, None, long_reason, long_reason) for k in range(6)]
    strip.show_sensors(states)
    win = _window(QWidget(), strip)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.width() == 1024
    assert strip.minimumSizeHint().width() < 400
    line = strip.fontMetrics().height()
    assert strip.height() < 2.5 * line  # one line (plus the badge's padding)
    assert strip.sensor_label.full_text().startswith("GPU0: none")


def _store(path) -> RunStore:
    store = RunStore(path)
    for label, j in (("bert", 7200.0), ("bert", 3600.0), ("gpt", None)):
        rid = store.create_run("session", {"mode": "infer", "model": "demo"}, label)
        res = {"status": "completed"}
        if j is not None:
            res["total"] = {"gross_j": j, "net_j": None, "label": "estimated"}
        store.finish_run(rid, "completed", res)
    return store


def test_footprint_view_shows_totals_groups_and_carbon(qtbot, tmp_path):
    store = _store(tmp_path / "w.db")
    view = FootprintView(store, CarbonSettings(region="FR", price_per_kwh=0.25), start=False)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.updated, timeout=10000) as got:
        view.refresh()
    fp = got.args[0]
    assert fp.total.energy_j == pytest.approx(10800.0)
    summary = view.summary.text()
    assert summary.startswith("Energy 10,800 J (3.00 Wh) [estimated] · CO2e 0.165 g [estimated]")
    assert "1 run without an energy figure not counted" in summary
    assert "55 gCO2e/kWh" in view.carbon_line.text() and "France" in view.carbon_line.text()
    assert "smartphone charges" in view.equivalents.text()
    assert "EPA" in view.equivalents.toolTip()
    cells = [[view.table.item(r, c).text() for c in range(3)] for r in range(view.table.rowCount())]
    assert cells == [["bert", "2", "10,800 J (3.00 Wh) [estimated]"], ["gpt", "0", "-"]]
    view.group_by.setCurrentIndex(view.group_by.findData("tag"))
    assert view.table.item(0, 0).text() in ("no run has a tag yet", "(no tag)")
    view.period.setCurrentIndex(view.period.findData("day"))
    view.cumulative.setChecked(False)  # bars per day: draws without error
    store.close()


def test_footprint_view_refreshes_off_the_gui_thread_and_fits_1024(qtbot, tmp_path):
    store = _store(tmp_path / "w.db")
    seen: list[str] = []

    class Watched:
        """The store, noting which thread lists its runs."""

        result = staticmethod(store.result)

        def runs(self, limit: int = 100):
            seen.append(threading.current_thread().name)
            return store.runs(limit)

    view = FootprintView(Watched(), CarbonSettings())  # type: ignore[arg-type]
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.footprint is not None, timeout=10000)
    assert seen == ["footprint"]
    view.refresh()
    view.refresh()  # during a scan: queued once, not a second thread at once
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)
    assert len(seen) == 3 and set(seen) == {"footprint"}
    win = _window(view)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert (win.width(), win.height()) == (1024, 700)
    store.close()


def test_footprint_view_says_when_the_store_cannot_be_read(qtbot, tmp_path):
    from wattlab.core.measure.store import StoreError

    class Broken:
        def runs(self, limit=100):
            raise StoreError("run store x is damaged")

    view = FootprintView(Broken(), CarbonSettings(), start=False)  # type: ignore[arg-type]
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.failed, timeout=10000):
        view.refresh()
    assert view.summary.text() == "The run store could not be read: run store x is damaged"
