"""Other nodes in the app: the setting (checked before it is saved), a scraper on every run the
controller starts, their power side by side in the live view, their energy in the run's table.
No worker process: the scraper reads two in-process exporters with simulated sensors."""

from __future__ import annotations

import time

import pytest

from tests.fakes.fake_power import ConstantPowerSensor, fake_gpu_set, sensor_set
from wattlab.core.measure.exporter import NodeExporter
from wattlab.core.report.nodes_text import live_nodes_text

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui


def test_live_text_puts_the_nodes_side_by_side_with_their_labels():
    live = [
        ("http://gpu1:9464/metrics", 312.04, "measured"),
        ("http://gpu2:9464/metrics", None, None),
    ]
    assert live_nodes_text(live) == "Other nodes: gpu1:9464 312.0 W (measured) · gpu2:9464 -"
    assert live_nodes_text([]) == ""


@pytest.fixture
def exporters():
    started = [
        NodeExporter(fake_gpu_set(watts=100.0), interval_s=0.02),
        NodeExporter(sensor_set(ConstantPowerSensor("cpu", 40.0, "measured")), interval_s=0.02),
    ]
    urls = [f"127.0.0.1:{x.start('127.0.0.1', 0)}" for x in started]
    yield urls
    for x in started:
        x.stop()


def test_a_run_started_by_the_app_scrapes_the_nodes_and_the_live_view_shows_them(
    window, exporters, qtbot
):
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    window.controller.settings.nodes = ",".join(exporters)
    runner = SessionRunner(RunSpec(), window.store)
    window.controller._hook(runner)  # noqa: SLF001 - what every run the controller starts gets
    meter = runner.node_meter
    assert meter is not None and len(meter.urls) == 2
    meter.period_s = 0.2
    meter.start()
    time.sleep(0.7)
    window.live.show_nodes(window.controller.nodes_live())
    meter.finish()
    text = window.live.nodes.text()
    assert window.live.nodes.isVisible()
    assert text.startswith("Other nodes: 127.0.0.1:") and " W (measured)" in text
    assert text.count(" W ") == 2  # both nodes, side by side
    window.live.show_nodes([])
    assert not window.live.nodes.isVisible()


def test_no_setting_no_scraper(window):
    from wattlab.core.run.client import SessionRunner
    from wattlab.core.spec import RunSpec

    runner = SessionRunner(RunSpec(), window.store)
    window.controller._hook(runner)  # noqa: SLF001
    assert runner.node_meter is None and window.controller.nodes_live() == []


def test_the_settings_dialog_refuses_a_node_list_that_cannot_be_scraped(qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from wattlab.app.widgets.settings_dialog import SettingsDialog
    from wattlab.core.settings import Settings

    said: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: said.append(text))
    d = SettingsDialog(Settings())
    qtbot.addWidget(d)
    d.nodes.setText("gpu1:notaport")
    d.accept()
    assert said and "port" in said[0] and d.result() == 0
    d.nodes.setText("gpu1:9464, gpu2:9464")
    d.accept()
    assert d.result() == 1 and d.values().nodes == "gpu1:9464, gpu2:9464"


def test_the_run_table_has_the_other_nodes_energy_with_its_label():
    from wattlab.core.report.result_view import run_table_rows

    nodes = {
        "total_j": 20.0,
        "label": "measured",
        "per_node": [{"node": "a:9464", "energy_j": 20.0, "label": "measured"}],
    }
    (row,) = [r for r in run_table_rows({"nodes": nodes}) if r.metric == "nodes_j"]
    assert row.cells[1] == "20 J [measured]" and row.cells[5] == "measured"
    assert "a:9464: 20 J (measured)" in row.cells[6]
