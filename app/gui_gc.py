"""Python's garbage collector runs only in the GUI thread while a window is open.

The controller's work runs in a background thread (comparisons, the chart PNG, the store). If
Python's cyclic collector happens to run in that thread and frees a Qt object made in the GUI
thread, PySide defers its deletion to the GUI thread and the two can deadlock on Qt's object
mutex (seen in CI: the GUI thread destroying a QMenu, the worker thread inside matplotlib). The
fix is pyqtgraph's own: automatic collection off, a GUI-thread timer collects instead. It is held
for as long as any main window is open, then automatic collection is restored.
"""

from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

COLLECT_EVERY_S = 1.0
_state: dict[str, object] = {"holders": 0, "collector": None}


def hold() -> None:
    """A window opened: collect in the GUI thread only (the first holder starts the timer)."""
    if _state["holders"] == 0:
        _state["collector"] = GarbageCollector(interval=COLLECT_EVERY_S)
    _state["holders"] = int(_state["holders"]) + 1  # type: ignore[call-overload]


def release() -> None:
    """A window closed: the last one stops the timer and turns automatic collection back on."""
    holders = int(_state["holders"]) - 1  # type: ignore[call-overload]
    _state["holders"] = max(0, holders)
    if holders <= 0 and _state["collector"] is not None:
        _state["collector"].timer.stop()  # type: ignore[attr-defined]
        _state["collector"] = None
        gc.enable()
