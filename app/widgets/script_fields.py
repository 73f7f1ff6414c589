"""The Script workload's fields: the script or command line (with Open script...), its
arguments, the working folder (with Folder...) and, for Run baseline + optimized, the command
line it is compared with. What they run is decided by core (``core.run.script``): a ``.py``
file runs with this app's Python, words split as a shell splits them, no shell runs."""

from __future__ import annotations

import shlex

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from wattlab.core.errors import UserError
from wattlab.core.run import script

from .elided import ElidedLabel

COMMAND_TIP = (
    "Your script (a .py file runs with this app's Python, where wattlab is installed, so its "
    "wattlab.track markers reach the app) or any command line, e.g. python -m mypkg.train. "
    "Run once measures it; Run baseline + optimized compares it with Compare with. No shell "
    "runs: use sh -c '...' for pipes and variables."
)
COMPARE_TIP = (
    "Run baseline + optimized: this command line is compared with the one above (the "
    "baseline), in interleaved rounds, as wattlab bench does; it runs in the same folder."
)


def _row(*widgets: QWidget) -> QWidget:
    """Widgets side by side, the first one stretching."""
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for k, w in enumerate(widgets):
        lay.addWidget(w, 1 if k == 0 else 0)
    return box


class ScriptFields(QObject):
    """The fields, as (label, widget) rows for the workload panel's form (``rows``)."""

    changed = Signal()

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        self.command = QLineEdit()
        self.command.setPlaceholderText("train.py or a command line")
        self.command.setToolTip(COMMAND_TIP)
        self.open_btn = QPushButton("Open script...")
        self.arguments = QLineEdit()
        self.arguments.setPlaceholderText("e.g. --epochs 1 --lr 3e-5")
        self.arguments.setToolTip("Added after the script or command, split as a shell would.")
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("empty: the script's folder")
        self.folder.setToolTip(
            "Where the command runs; empty: the .py file's folder (else the app's own)."
        )
        self.folder_btn = QPushButton("Folder...")
        self.compare = QLineEdit()
        self.compare.setPlaceholderText("e.g. train.py --bf16")
        self.compare.setToolTip(COMPARE_TIP)
        self.preview = ElidedLabel("")
        self.preview.setObjectName("scriptPreview")
        self.preview.setStyleSheet("color:#555")
        self._rows = [
            ("Script or command", _row(self.command, self.open_btn)),
            ("Arguments", self.arguments),
            ("Working folder", _row(self.folder, self.folder_btn)),
            ("Compare with", self.compare),
            ("", self.preview),
        ]
        self.open_btn.clicked.connect(lambda *_: self.open_script())
        self.folder_btn.clicked.connect(lambda *_: self.pick_folder())
        for edit in (self.command, self.arguments, self.folder, self.compare):
            edit.textChanged.connect(self._edited)
        self._edited()

    def rows(self) -> list[tuple[str, QWidget]]:
        return list(self._rows)

    def open_script(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self._parent, "Your script", "", "Python (*.py);;Any file (*)"
        )
        if path:
            self.set_script(path)

    def set_script(self, path: str) -> None:
        """A picked file becomes the command (quoted as a shell would need it)."""
        self.command.setText(shlex.quote(path))

    def pick_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self._parent, "Working folder for the command")
        if d:
            self.folder.setText(d)

    def plan(self, compare: bool) -> script.ScriptPlan:
        """What to run, every check made by core (ScriptInputError names the field)."""
        other = self.compare.text() if compare else None
        return script.build_plan(
            self.command.text(), self.arguments.text(), self.folder.text(), other
        )

    def _edited(self) -> None:
        """Show what will run (the interpreter's whole path in the tooltip)."""
        try:
            argv = script.command_argv(self.command.text(), self.arguments.text())
        except UserError:
            self.preview.setText("Runs: -")
        else:
            self.preview.setText(f"Runs: {script.shown(argv)}")
            self.preview.setToolTip(shlex.join(argv))
        self.changed.emit()
