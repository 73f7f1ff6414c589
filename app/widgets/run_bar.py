"""The run controls and the one overall progress, pinned under the left column's scroll area so
they are visible at any window size (at 1024x700 they used to sit below the fold), and labels
that elide instead of widening the window (a long status once pushed it past the screen)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.run.progress import OverallProgress

from .elided import ElidedLabel

BAR_STEPS = 1000
# The buttons' tooltips: (Run baseline + optimized, Run once) for sessions and for scripts.
TIPS = {
    False: (
        "Interleaved baseline/optimized pairs (Ctrl+R)",
        "One run with the chosen techniques (Ctrl+Shift+R)",
    ),
    True: (
        "Your command (baseline) against Compare with, in interleaved rounds, as wattlab bench "
        "compares commands (Ctrl+R)",
        "Measure your command once, as wattlab profile does (Ctrl+Shift+R)",
    ),
}


class RunBar(QFrame):
    """Run both / Run once / Stop / Settings, the overall bar and the phase line under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        grid = QGridLayout()
        self.run_both = QPushButton("Run baseline + optimized")
        self.run_once = QPushButton("Run once")
        self.set_script_mode(False)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Stop: the current run is kept as cancelled (Ctrl+.)")
        self.stop_btn.setEnabled(False)
        self.settings_btn = QPushButton("Settings...")
        grid.addWidget(self.run_both, 0, 0)
        grid.addWidget(self.run_once, 0, 1)
        grid.addWidget(self.stop_btn, 1, 0)
        grid.addWidget(self.settings_btn, 1, 1)
        lay.addLayout(grid)
        self.bar = QProgressBar()
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.bar.setFormat("ready")
        self.bar.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        lay.addWidget(self.bar)
        self.phase = ElidedLabel("Ready.")
        self.phase.setObjectName("phaseLine")
        lay.addWidget(self.phase)

    def set_script_mode(self, script: bool) -> None:
        """The same buttons say what they do with a user's own command."""
        both, once = TIPS[script]
        self.run_both.setToolTip(both)
        self.run_once.setToolTip(once)

    def set_busy(self, busy: bool) -> None:
        self.run_both.setEnabled(not busy)
        self.run_once.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)

    def show_progress(self, plan: OverallProgress) -> None:
        """Draw ``plan`` (read on the window's redraw timer)."""
        self.bar.setValue(int(BAR_STEPS * plan.fraction))
        self.bar.setFormat(plan.bar_text())
        self.phase.setText(plan.phase_text())

    def show_outcome(self, outcome: str, line: str, done: bool) -> None:
        """After the work: a short ``outcome`` in the bar (full only when everything planned
        completed), the longer ``line`` (a headline) elided under it."""
        if done:
            self.bar.setValue(BAR_STEPS)
        self.bar.setFormat(outcome)
        self.phase.setText(line)
