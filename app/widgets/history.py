"""History: the Runs table (app/widgets/runs.py) under the name the main window imports."""

from __future__ import annotations

from .runs import PowerOverlay, RunsView

HistoryView = RunsView

__all__ = ["HistoryView", "PowerOverlay", "RunsView"]
