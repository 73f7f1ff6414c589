"""The main window's promises, one test each (issue: the app a researcher keeps open): Settings
opens, the wheel scrolls the technique list, the run controls stay on screen at 1024x700, a
technique is preselected from core's recommendation, one overall progress, no stale header,
messages in the app's words, broken folders leave Recent models, closing during a run asks.

No test here starts a worker: the controller's signals are emitted by hand, as its thread would.
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QDoubleSpinBox, QSpinBox

from tests import tiny_models as tm
from wattlab.core.measure.store import RunStore
from wattlab.core.settings import Settings

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

FAST = Settings(interval_s=0.05, idle_s=0.1, cooldown_s=0.0, min_measure_s=0.5)




class Busy:
    """Makes the controller busy (a live background thread) without a run."""

    def __init__(self, window) -> None:
        self.release = threading.Event()
        self.window = window

    def __enter__(self):
        t = threading.Thread(target=self.release.wait, daemon=True)
        self.window.controller._thread = t
        t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.window.controller._thread.join()


# -- Settings -------------------------------------------------------------------------------------
def test_the_settings_button_opens_the_dialog(window, qtbot, monkeypatch):
    from wattlab.app.widgets.settings_dialog import SettingsDialog

    opened = []

    def fake_exec(dlg):
        opened.append(dlg)
        dlg.pue.setValue(1.4)
        return SettingsDialog.Accepted

    monkeypatch.setattr(SettingsDialog, "exec", fake_exec)
    qtbot.mouseClick(window.settings_btn, Qt.LeftButton)
    assert len(opened) == 1  # clicked(False) used to skip the dialog and re-save silently
    assert window.controller.settings.pue == pytest.approx(1.4)
    assert Settings.load().pue == pytest.approx(1.4)


def test_cancelling_the_settings_dialog_changes_nothing(window, qtbot, monkeypatch):
    from wattlab.app.widgets.settings_dialog import SettingsDialog

    monkeypatch.setattr(SettingsDialog, "exec", lambda dlg: SettingsDialog.Rejected)
    before = window.controller.settings
    qtbot.mouseClick(window.settings_btn, Qt.LeftButton)
    assert window.controller.settings is before
    from wattlab.core.settings import config_path

    assert not config_path().exists()


# -- the technique list ---------------------------------------------------------------------------
def _wheel(widget, steps: int = -3) -> None:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(
        pos,
        widget.mapToGlobal(pos),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.NoButton,
        Qt.NoModifier,
        Qt.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, ev)


def test_the_wheel_over_the_technique_list_scrolls_instead_of_changing_values(window):
    panel = window.techniques
    spins = [
        w
        for eds in panel.editors.values()
        for w in eds.values()
        if isinstance(w, QSpinBox | QDoubleSpinBox)
    ]
    assert spins
    before = [s.value() for s in spins]
    for s in spins:
        _wheel(s)
    assert [s.value() for s in spins] == before
    spins[0].hasFocus = lambda: True  # a user who clicked into the field can still wheel it
    _wheel(spins[0], steps=1)
    assert spins[0].value() != before[0]


# -- layout ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1024, 700), (1920, 1080)])
def test_run_controls_are_on_screen_and_a_long_status_does_not_widen_the_window(
    window, qtbot, size
):
    window.resize(*size)
    QApplication.processEvents()
    window.run_bar.phase.setText("a very long status " * 200)
    window.show_error("a very long error message " * 200)
    QApplication.processEvents()
    assert window.width() <= size[0] and window.height() <= size[1]
    assert window.minimumSizeHint().width() <= 1024
    inside = window.rect()
    for button in (window.run_both, window.run_once, window.stop_btn, window.settings_btn):
        top_left = button.mapTo(window, QPoint(0, 0))
        assert button.isVisible()
        assert inside.contains(top_left) and inside.contains(
            top_left + QPoint(button.width() - 1, button.height() - 1)
        ), f"{button.text()} is outside the {size} window"


# -- defaults -------------------------------------------------------------------------------------
def test_the_recommended_techniques_are_preselected(window):
    from wattlab.core.techniques.recommend import recommended

    chosen = window.techniques.chosen()
    expected = recommended().techniques()
    assert [t["name"] for t in chosen] == [t["name"] for t in expected]
    for key, value in expected[0]["params"].items():
        assert chosen[0]["params"][key] == value  # cast, as the CLI's --demo, not autocast
    assert window.techniques.validate() is None


def test_recommended_button_restores_the_choice(window, qtbot):
    for name in window.techniques.items:
        window.techniques.check(name, False)
    assert window.techniques.chosen() == ()
    qtbot.mouseClick(window.techniques.recommended_btn, Qt.LeftButton)
    assert window.techniques.chosen()


# -- progress and header --------------------------------------------------------------------------
def test_one_overall_bar_for_the_whole_comparison(window):
    c = window.controller
    window._begin(4)
    c.preparing.emit("training the demo model once (cached afterwards)")
    window.redraw_progress()
    assert window.run_bar.bar.format().startswith("one-time preparation: training the demo")
    values = []
    for k, side in enumerate(["baseline", "optimized", "optimized", "baseline"]):
        c.run_started.emit(side, f"{side} run {k // 2 + 1}/2")
        for phase in ("load", "infer"):
            c.event.emit({"event": "phase", "name": phase})
            for b in range(1, 6):
                c.event.emit({"event": "step", "batch": b, "batches": 5, "items": 8 * b})
                window.redraw_progress()
                values.append(window.run_bar.bar.value())
    assert values == sorted(values)  # never refills
    assert window.run_bar.bar.format().startswith("run 4 of 4")


def test_the_header_is_not_stale_after_a_run(window):
    c = window.controller
    window._begin(1)
    c.run_started.emit("single", "run with mixed precision bf16")
    window.live.power.set("2.0 W", "estimated")
    c.finished.emit({"kind": "run", "result": _stored_run(window.store)})
    text = window.live.side.text()
    assert "run 1/1" not in text and "optimized" not in text
    assert "2.0 W" not in window.live.power.text()


def _stored_run(store: RunStore) -> dict:
    rid = store.create_run("session", {"model": "demo", "mode": "infer"}, "single")
    result = {"run_id": rid, "status": "completed", "spec": {"model": "demo", "mode": "infer"}}
    store.finish_run(rid, "completed", result)
    return result


# -- messages -------------------------------------------------------------------------------------
def test_messages_name_the_window_controls_not_cli_flags(window):
    window.controller.failed.emit(
        "dataset: 3 rows have no text (empty text): fill or remove those rows, or choose the "
        "text column with --text-column"
    )
    shown = window.error.text()
    assert "--text-column" not in shown and "the Text column picker" in shown


def test_the_error_banner_clears_when_the_input_changes(window):
    window.show_error("something was wrong with the old input")
    assert window.error.isVisibleTo(window)
    window.workload.batch.setValue(window.workload.batch.value() + 1)
    assert not window.error.isVisibleTo(window)


def test_a_broken_folder_is_refused_and_never_enters_recent_models(window, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    assert not window.workload.try_add_model(str(broken))
    assert str(broken) not in window.workload.recent_models()
    assert "config.json" in window.error.text()


def test_a_folder_broken_since_last_time_leaves_recent_models(qtbot, tmp_path):
    from wattlab.app.main_window import MainWindow

    good = tm.bert_classifier(tmp_path / "good")
    gone = tmp_path / "gone"
    qs = QSettings("WattLab", "WattLab")
    qs.setValue("recent_models", [str(good), str(gone)])
    qs.sync()
    try:
        w = MainWindow(RunStore(tmp_path / "w.db"), FAST, [])
        qtbot.addWidget(w)
        assert w.workload.recent_models() == [str(good)]
    finally:
        qs.remove("recent_models")


def test_a_model_refused_at_run_time_leaves_the_list(window, tmp_path):
    good = tm.bert_classifier(tmp_path / "m")
    window.workload.add_model(str(good))
    window.controller.model_refused.emit(str(good))
    assert str(good) not in window.workload.recent_models()


def test_closing_during_a_run_asks_first(window):
    asked = []
    window.confirm_close = lambda: asked.append(True) or False
    with Busy(window):
        assert not window.close()
        assert asked == [True] and window.isVisible()
    assert window.close()  # not busy: no question
    assert asked == [True]


def test_a_missing_qt_platform_library_names_the_debian_package(monkeypatch, capsys):
    from wattlab.app import main as app_main

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(app_main, "missing_platform_library", lambda: "libxcb-cursor.so.0")
    assert app_main.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "libxcb-cursor0" in err[0] and "apt install" in err[0]


def test_the_platform_probe_reads_the_loader_error(monkeypatch):
    import ctypes

    from wattlab.app import main as app_main

    def refuse(*a, **kw):
        raise OSError("libxcb-icccm.so.4: cannot open shared object file: No such file")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    assert app_main.missing_platform_library() == "libxcb-icccm.so.4"


# -- menus ----------------------------------------------------------------------------------------
def test_menus_carry_the_shortcuts_the_buttons_name(window):
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Run", "View", "Help"]
    shortcuts = {
        act.text(): act.shortcut().toString()
        for menu in menus.values()
        for act in menu.actions()
        if not act.isSeparator()
    }
    assert shortcuts["Run baseline + optimized"] == "Ctrl+R"
    assert shortcuts["Stop"] == "Ctrl+."
    assert shortcuts["Export report..."] == "Ctrl+E"


def test_about_names_the_versions(window):
    from wattlab.app.about import about_text, help_text

    text = about_text()
    assert "PySide6" in text and "torch" in text and "wattlab" in text
    assert "When something goes wrong" in help_text()


def test_the_recommendation_follows_the_mode_until_the_user_picks(window):
    from wattlab.core.techniques.recommend import recommended

    mode = window.workload.mode
    mode.setCurrentIndex(mode.findData("train"))
    chosen = window.techniques.chosen()
    assert [t["name"] for t in chosen] == [t["name"] for t in recommended("train").techniques()]
    assert chosen and chosen[0]["params"].get("mode") == "autocast"  # cast cannot train
    window.techniques.apply([{"name": "pruning"}])  # the user's own choice stays
    mode.setCurrentIndex(mode.findData("infer"))
    assert [t["name"] for t in window.techniques.chosen()] == ["pruning"]


def test_a_technique_refused_only_for_its_parameters_gets_its_defaults_back(window):
    window.techniques.apply([{"name": "mixed-precision", "params": {"mode": "cast"}}])
    mode = window.workload.mode
    mode.setCurrentIndex(mode.findData("train"))
    item = window.techniques.items["mixed-precision"]
    assert not item.isDisabled()  # greyed out, its mode could not have been changed back
    assert window.techniques.params_of("mixed-precision")["mode"] == "autocast"
