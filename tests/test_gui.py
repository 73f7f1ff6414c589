"""The desktop app under pytest-qt (offscreen): specs, greyed-out techniques, a real run that
fills the plots and the results, stop, errors, export, history, and a screenshot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import Qt

from tests import tiny_models as tm
from wattlab.core.measure.store import RunStore
from wattlab.core.settings import Settings

pytest.importorskip("pytestqt")

# Every test here is a Qt test; the ones that also start the worker (a run, a comparison) or a
# second interpreter carry @E2E as well.
pytestmark = pytest.mark.gui
E2E = pytest.mark.e2e

FAST = Settings(interval_s=0.05, idle_s=0.1, cooldown_s=0.0, min_measure_s=0.5)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    return {
        "bert": tm.bert_classifier(root / "bert"),
        "data": tm.write_csv(root / "d.csv", tm.sentences(80)),
        "empty": _empty(root / "empty.csv"),
    }


def _empty(p: Path) -> Path:
    p.write_text("")
    return p




def use_tiny(w, assets, mode="infer"):
    w.workload.add_model(str(assets["bert"]))
    w.workload.set_dataset(str(assets["data"]))
    w.workload.mode.setCurrentIndex(w.workload.mode.findData(mode))
    w.workload.batch.setValue(8)
    w.workload.seq_len.setValue(16)
    w.workload.infer_batches.setValue(20)
    w.workload.repeats.setValue(1)
    w.techniques.apply([])  # no technique unless the test picks one (not the recommended)


def test_choices_build_the_right_spec(window, assets):
    use_tiny(window, assets)
    window.workload.text_col.setCurrentIndex(window.workload.text_col.findData("text"))
    window.techniques.check("quantization")
    window.techniques.set_param("quantization", "mode", "static")
    spec = window.workload.spec(window.techniques.chosen())
    assert spec.model == str(assets["bert"]) and spec.dataset == str(assets["data"])
    assert (spec.mode, spec.batch_size, spec.seq_len, spec.infer_batches) == ("infer", 8, 16, 20)
    assert spec.text_column == "text" and spec.label_column is None
    (t,) = spec.techniques
    assert t["name"] == "quantization" and t["params"]["mode"] == "static"
    assert window.workload.task.text().startswith("sequence classifier")


def test_greyed_out_techniques_carry_reasons(window, assets):
    w = window
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("train"))
    q = w.techniques.items["quantization"]
    assert q.isDisabled() and "quantization-aware training is not offered" in q.toolTip(0)
    assert w.techniques.items["onnx-runtime"].isDisabled()
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("infer"))
    assert not q.isDisabled()
    w.workload.add_model(str(assets["bert"] / "model.onnx"))
    p = w.techniques.items["pruning"]
    assert p.isDisabled() and "ONNX file cannot be pruned" in p.toolTip(0)


def test_incompatible_choice_is_explained_before_the_run(window, qtbot):
    w = window
    w.techniques.check("mixed-precision")
    w.techniques.check("quantization")
    assert "cannot be combined" in w.techniques.problem.text()
    qtbot.mouseClick(w.run_both, Qt.LeftButton)
    assert w.error.isVisible() and "cannot be combined" in w.error.text()
    assert not w.controller.busy


@E2E
def test_bad_input_shows_one_message_and_window_stays_usable(window, qtbot, assets):
    w = window
    use_tiny(w, assets)
    w.workload.set_dataset(str(assets["empty"]))
    with qtbot.waitSignal(
        w.controller.busy_changed, timeout=60_000, check_params_cb=lambda b: b is False
    ):
        qtbot.mouseClick(w.run_once, Qt.LeftButton)
    assert w.error.isVisible() and "is empty" in w.error.text()
    assert "Traceback" not in w.error.text()
    assert w.run_once.isEnabled() and w.run_both.isEnabled()


def test_a_diverged_epoch_is_logged_with_dashes_not_an_exception(window):
    # A diverged training sends null losses: formatting them must not raise in the GUI thread.
    window.on_event({"event": "epoch", "epoch": 2, "eval_loss": None, "accuracy": None})
    window.on_event({"event": "epoch", "epoch": 3, "eval_loss": 0.5, "perplexity": None})
    log = window.log.toPlainText()
    assert "epoch 2: eval loss -, accuracy -" in log
    assert "epoch 3: eval loss 0.5000, perplexity -" in log


@E2E
def test_worker_crash_is_reported(window, qtbot, assets, monkeypatch):
    w = window
    use_tiny(w, assets, mode="train")
    w.workload.epochs.setValue(200)

    killed: list[int] = []

    def kill_on_step(ev):
        # The worker as the OS sees it: this process's child running wattlab.core.worker.
        if ev.get("event") == "step" and not killed:
            for p in psutil.Process().children(recursive=True):
                try:
                    if "wattlab.core.worker" in p.cmdline():
                        p.kill()
                        killed.append(p.pid)
                except psutil.NoSuchProcess:
                    pass

    w.controller.event.connect(kill_on_step)
    with qtbot.waitSignal(w.controller.failed, timeout=90_000) as sig:
        qtbot.mouseClick(w.run_once, Qt.LeftButton)
    assert len(killed) == 1  # exactly one worker was running, and it was the one killed
    assert "killed by signal 9" in sig.args[0]
    qtbot.waitUntil(w.run_once.isEnabled, timeout=10_000)  # the window is usable again
    assert w.error.isVisible() and not w.stop_btn.isEnabled()
    assert w.store.runs()[0].status == "failed"  # kept, as failed


@E2E
def test_stop_keeps_the_run_as_cancelled(window, qtbot, assets):
    w = window
    use_tiny(w, assets, mode="train")
    w.workload.epochs.setValue(500)
    with qtbot.waitSignal(
        w.controller.event, timeout=90_000, check_params_cb=lambda e: e.get("event") == "step"
    ):
        qtbot.mouseClick(w.run_once, Qt.LeftButton)
    with qtbot.waitSignal(
        w.controller.busy_changed, timeout=8_000, check_params_cb=lambda b: b is False
    ):
        qtbot.mouseClick(w.stop_btn, Qt.LeftButton)
    runs = w.store.runs()
    assert runs[0].status == "cancelled"


@pytest.fixture(scope="module")
def compared(assets, tmp_path_factory, qapp):
    """One real comparison through the window (tiny model, 1 pair), shared by the tests below.
    Module-scoped (qtbot is per test), so it waits by processing events itself. Its config and
    data dirs are set for the module's life and restored after (never leaked to later tests)."""
    tmp = tmp_path_factory.mktemp("gui-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATTLAB_CONFIG_DIR", str(tmp / "cfg"))
        mp.setenv("WATTLAB_DATA_DIR", str(tmp / "data"))
        w, seen = _compare_in_window(assets, qapp, tmp)
        yield w, seen, tmp
        w.close()


def _compare_in_window(assets, qapp, tmp):
    import time

    from wattlab.app.main_window import MainWindow

    w = MainWindow(RunStore(tmp / "wattlab.db"), FAST, [])
    w.resize(1400, 900)
    w.show()
    use_tiny(w, assets)
    w.techniques.apply([{"name": "onnx-runtime"}])
    seen = {"optimized_overlay": False, "points": 0}

    def sample(_):
        seen["points"] = max(
            seen["points"],
            max(
                (len(c.getData()[0]) for c in w.live.curves.values() if c.getData()[0] is not None),
                default=0,
            ),
        )
        ox = w.live.overlay.getData()[0]
        if w.controller.side == "optimized" and ox is not None and len(ox) > 0:
            seen["optimized_overlay"] = True

    w.controller.event.connect(sample)
    done: list[dict] = []
    w.controller.finished.connect(done.append)
    w.controller.failed.connect(lambda msg: done.append({"failed": msg}))
    w.run_both.click()
    deadline = time.monotonic() + 180
    while (not done or not w.run_both.isEnabled()) and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.01)
    assert done and "failed" not in done[0], done
    return w, seen


@E2E
def test_run_fills_live_plots_and_results(compared):
    w, seen, _ = compared
    assert seen["points"] > 0  # the curves received ring-buffer data during the run
    assert seen["optimized_overlay"]  # the baseline trace overlaid during the optimized run
    cpu = next(c for n, c in w.live.curves.items() if n.startswith("CPU power"))
    x, y = cpu.getData()
    assert len(x) > 0 and all(v >= 0 for v in y)
    assert "(estimated)" in next(n for n in w.live.curves if n.startswith("CPU power"))
    t = w.results.table
    labels = [t.item(r, 0).text() for r in range(t.rowCount())]
    assert "Energy per item" in labels and "Accuracy" in labels
    acc_row = labels.index("Accuracy")
    assert t.item(acc_row, 4).text() == "no change"
    assert w.results.charts.pixmap() is not None and not w.results.charts.pixmap().isNull()
    assert w.tabs.currentWidget() is w.results


@E2E
def test_export_writes_files(compared, tmp_path):
    w, _, _ = compared
    files = {p.name: p for p in w.export_to(tmp_path / "report")}
    assert {"report.pdf", "summary.csv", "emissions.csv", "comparison.json"} <= set(files)
    assert files["report.pdf"].stat().st_size > 10_000


@E2E
def test_history_lists_opens_and_deletes(compared):
    w, _, _ = compared
    h = w.history
    h.refresh()
    top = h.top_level_ids()
    assert len(top) == 1 and h.cell(top[0], "kind") == "comparison"
    assert len(h.children_ids(top[0])) == 2  # its two repeats grouped under it
    h.filter.setText("kind:comparison")
    assert len(h.top_level_ids()) == 1
    h.select(top)
    h.open_btn.click()
    assert w.results.comparison is not None
    h.filter.setText("")
    h.confirm = lambda text: False
    h.select(top)
    h.del_btn.click()
    assert len(h.visible_ids()) == 3  # declined: nothing deleted


@E2E
def test_screenshot_after_a_comparison(compared):
    w, _, tmp = compared
    out = Path(os.environ.get("WATTLAB_SCREENSHOT_DIR", tmp)) / "main_window_results.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    w.tabs.setCurrentWidget(w.live)
    assert w.grab().save(str(out))
    w.tabs.setCurrentWidget(w.results)
    assert w.grab().save(str(out.with_name("main_window_results_tab.png")))
    assert out.stat().st_size > 20_000


@E2E
def test_gui_process_never_imports_torch():
    code = (
        "import sys\nfrom PySide6.QtWidgets import QApplication\napp = QApplication([])\n"
        "from wattlab.app.main import build_window\nw = build_window(); w.show()\n"
        "app.processEvents()\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_no_display_says_so_in_one_line(monkeypatch, capsys):
    from wattlab.app.main import main

    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(k, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no display" in err[0] and "make demo" in err[0]


def test_axis_repaint_survives(qtbot):
    """PySide6 6.12.0 killed the process here (refcount bug under pyqtgraph's axis painting);
    this keeps a release with that bug from coming back unnoticed. Every repaint must really
    paint, and what it paints must be the curve and axis labels that follow the data."""
    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtGui import QImage

    class PaintCounter(QObject):
        n = 0

        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.Paint:
                self.n += 1
            return False

    def pixels(widget, rect=None) -> np.ndarray:
        img = (widget.grab(rect) if rect is not None else widget.grab()).toImage()
        img = img.convertToFormat(QImage.Format.Format_RGB32)
        rows = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
        bgra = rows[:, : img.width() * 4].reshape(img.height(), img.width(), 4)
        return bgra[..., 2::-1].copy()  # RGB, copied out before the QImage is freed

    w = pg.PlotWidget(background="w")
    qtbot.addWidget(w)
    w.resize(600, 400)
    with qtbot.waitExposed(w):  # an unexposed window ignores repaint(): nothing would be drawn
        w.show()
    counter = PaintCounter()
    w.viewport().installEventFilter(counter)
    c = w.plot([], [], pen=pg.mkPen((255, 0, 0), width=3))
    axis = w.getPlotItem().getAxis("bottom")
    axis_rect = w.mapFromScene(axis.sceneBoundingRect()).boundingRect()
    axis_at = {}
    for k in range(1500):
        c.setData(np.arange(100) + k, np.random.default_rng(k).random(100) * k)
        w.viewport().repaint()  # the view's own repaint() does not paint its viewport
        if k in (10, 1499):
            axis_at[k] = pixels(w.viewport(), axis_rect)
    assert counter.n >= 1500  # each repaint() painted, synchronously
    assert len(c.getData()[0]) == 100
    rgb = pixels(w.viewport()).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red.sum() > 200  # the curve is on screen, in its pen's colour
    for img in axis_at.values():
        assert (img.sum(axis=-1) < 3 * 160).sum() > 20  # dark tick labels on the white axis
    assert not np.array_equal(axis_at[10], axis_at[1499])  # the ticks followed the x range


def test_axis_ranges_move_in_steps():
    from wattlab.app.widgets.live import nice_ceil, x_extent

    assert [nice_ceil(x) for x in (0.7, 1.0, 1.3, 3.3, 7.0, 420.0)] == [1, 1, 2, 5, 10, 500]
    assert nice_ceil(float("nan")) == 1.0 and nice_ceil(0) == 1.0
    assert [x_extent(t) for t in (3.0, 10.0, 59.0, 61.0, 601.0)] == [10, 10, 60, 120, 900]


def test_settings_dialog_saves_the_typed_settings(window, qtbot):
    from wattlab.app.widgets.settings_dialog import SettingsDialog

    dlg = SettingsDialog(window.controller.settings, window)
    qtbot.addWidget(dlg)
    dlg.interval.setValue(0.05)
    dlg.region.setCurrentIndex(dlg.region.findData("FR"))
    dlg.use_price.setChecked(True)
    dlg.price.setValue(0.25)
    dlg.pue.setValue(1.3)
    assert window.edit_settings(dlg)
    saved = Settings.load()  # from WATTLAB_CONFIG_DIR, never the user's
    assert (saved.interval_s, saved.region, saved.price_per_kwh, saved.pue) == (
        0.05,
        "FR",
        0.25,
        1.3,
    )
    assert window.controller.carbon().resolved()["g_per_kwh"] == 55
    dlg.interval.setValue(0.001)  # below the sampler's minimum: the editor clamps it
    assert dlg.values().interval_s == 0.01


def test_rag_mode_offers_only_the_cache_and_builds_a_rag_spec(window, qtbot, tmp_path):
    w = window
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("infer"))
    rc = w.techniques.items["rag-cache"]
    assert rc.isDisabled() and "wattlab rag" in rc.toolTip(0)
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("rag"))
    assert not rc.isDisabled()
    p = w.techniques.items["pruning"]
    assert p.isDisabled() and "does not apply to RAG sessions" in p.toolTip(0)
    form = w.workload.layout()  # the form the user reads, through Qt's public API
    assert form.labelForField(w.workload.dataset).text() == "Corpus"
    assert not w.workload.batch.isEnabled() and w.workload.queries.isEnabled()
    w.techniques.check("rag-cache")
    w.techniques.editors["rag-cache"]["layers"].boxes["embed"].setChecked(False)
    w.workload.queries.setValue(30)
    spec = w.workload.spec(w.techniques.chosen())
    assert spec.mode == "rag" and spec.rag == {"queries": 30, "repeat_rate": 0.5}
    (t,) = spec.techniques
    assert t["name"] == "rag-cache" and t["params"]["layers"] == "query+prefix"


@E2E
def test_rag_comparison_runs_through_the_window(window, qtbot, tiny_rag_demo):
    # tiny_rag_demo (conftest): the test-size RAG demo, its models trained once per session
    w = window
    w.workload.mode.setCurrentIndex(w.workload.mode.findData("rag"))
    w.workload.queries.setValue(30)
    w.workload.repeats.setValue(1)
    w.techniques.check("rag-cache")
    with qtbot.waitSignal(w.controller.finished, timeout=240_000) as sig:
        qtbot.mouseClick(w.run_both, Qt.LeftButton)
    comp = sig.args[0]["result"]
    assert comp["rag"]["optimized"]["query_layer"]["hits"] > 0
    t = w.results.table
    labels = [t.item(r, 0).text() for r in range(t.rowCount())]
    assert "Energy per query" in labels and "Time to first token p50" in labels


def test_a_bad_settings_file_is_one_message_and_the_app_starts(qtbot, monkeypatch, tmp_path):
    from wattlab.app.main import build_window
    from wattlab.core.settings import config_path

    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_bytes(b'{"interval_s": -1, "pue": 0.5, "region": "FR"}')
    w = build_window()
    qtbot.addWidget(w)
    text = w.error.text()
    assert text.startswith("settings.json: interval_s:") and "pue:" in text
    assert "defaults used instead" in text and "Traceback" not in text
    used = w.controller.settings
    assert used.interval_s == 0.1 and used.pue == 1.0 and used.region == "FR"  # per field
