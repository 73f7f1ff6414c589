"""While a main window is open, Python's garbage collector runs only in the GUI thread (a
collection in the controller's worker thread that frees Qt objects can deadlock PySide)."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui


def test_collection_is_left_to_the_gui_thread_while_a_window_is_open(qtbot, tmp_path):
    from wattlab.app.main_window import MainWindow
    from wattlab.core.measure.store import RunStore
    from wattlab.core.settings import Settings

    assert gc.isenabled()
    first = MainWindow(RunStore(tmp_path / "a.db"), Settings(), [])
    second = MainWindow(RunStore(tmp_path / "b.db"), Settings(), [])
    assert not gc.isenabled()  # automatic collection off: the GUI thread's timer collects
    for _ in range(2000):
        loop: list = []
        loop.append(loop)  # a cycle only the collector frees: the generation-0 count rises
    count_before = gc.get_count()[0]
    qtbot.wait(1300)  # one tick of the collector's timer
    assert gc.get_count()[0] < count_before
    first.close()
    assert not gc.isenabled()  # the other window still holds it
    second.close()
    assert gc.isenabled()
