"""Techniques panel: every registered technique, its parameters as editors with their ranges, and
the reason as a tooltip when it cannot apply to the chosen workload."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.errors import SpecError
from wattlab.core.techniques.base import Param, Target, Technique
from wattlab.core.techniques.catalog import all_techniques
from wattlab.core.techniques.compose import availability, resolve


class ChoiceSet(QWidget):
    """A tuple parameter (e.g. the RAG cache's layers): one checkbox per choice."""

    def __init__(self, choices: tuple[str, ...], default: tuple[str, ...]) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.boxes = {}
        for c in choices:
            b = QCheckBox(c)
            b.setChecked(c in default)
            row.addWidget(b)
            self.boxes[c] = b

    def value(self) -> str:
        return "+".join(c for c, b in self.boxes.items() if b.isChecked())

    def set_value(self, value: str | tuple[str, ...] | list[str]) -> None:
        chosen = set(value.split("+")) if isinstance(value, str) else set(value)
        for c, b in self.boxes.items():
            b.setChecked(c in chosen)


class WheelScrollsTheList(QObject):
    """A parameter editor ignores the mouse wheel unless the user clicked into it: scrolling
    down the technique list used to change every spin box and combo it passed over."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget):
            if not watched.hasFocus():
                event.ignore()  # the tree's viewport gets it and scrolls
                return True
        return False


def editor_for(p: Param) -> QWidget:
    if p.type is tuple and p.choices:
        w: QWidget = ChoiceSet(p.choices, tuple(p.default))
    elif p.choices:
        w = QComboBox()
        w.addItems(list(p.choices))
        w.setCurrentText(str(p.default))
    elif p.type is bool:
        w = QCheckBox()
        w.setChecked(bool(p.default))
    elif p.type is int:
        w = QSpinBox()
        w.setRange(
            int(p.min if p.min is not None else -(10**9)),
            int(p.max if p.max is not None else 10**9),
        )
        w.setValue(int(p.default))
    else:
        w = QDoubleSpinBox()
        w.setDecimals(3)
        w.setSingleStep(0.05)
        w.setRange(p.min if p.min is not None else -1e9, p.max if p.max is not None else 1e9)
        w.setValue(float(p.default))
    w.setToolTip(p.help)
    return w


def _on_edit(w: QWidget, slot: Any) -> None:
    """Call ``slot()`` whenever the user edits ``w`` (any editor kind editor_for builds)."""
    if isinstance(w, ChoiceSet):
        for box in w.boxes.values():
            box.toggled.connect(lambda *_: slot())
    elif isinstance(w, QComboBox):
        w.currentIndexChanged.connect(lambda *_: slot())
    elif isinstance(w, QCheckBox):
        w.toggled.connect(lambda *_: slot())
    elif isinstance(w, QSpinBox | QDoubleSpinBox):
        w.valueChanged.connect(lambda *_: slot())


def editor_value(w: QWidget) -> Any:
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    return w.value()


class TechniquesPanel(QGroupBox):
    changed = Signal()  # a technique or parameter the user changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Techniques (optimized side)", parent)
        lay = QVBoxLayout(self)
        self.recommended_btn = QPushButton("Recommended for this machine")
        self.recommended_btn.clicked.connect(self.use_recommended)
        lay.addWidget(self.recommended_btn)
        self._wheel_guard = WheelScrollsTheList(self)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setColumnCount(2)
        lay.addWidget(self.tree)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setObjectName("techniqueProblem")
        self.problem.setStyleSheet("color: #a40000")
        lay.addWidget(self.problem)
        self.items: dict[str, QTreeWidgetItem] = {}
        self.editors: dict[str, dict[str, QWidget]] = {}
        self.techs: dict[str, Technique] = {}
        for t in all_techniques():
            item = QTreeWidgetItem([t.label])
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(0, Qt.Unchecked)
            item.setToolTip(0, t.summary)
            self.tree.addTopLevelItem(item)
            self.items[t.name] = item
            self.techs[t.name] = t
            self.editors[t.name] = {}
            for p in t.params:
                child = QTreeWidgetItem([p.name])
                item.addChild(child)
                ed = editor_for(p)
                ed.setFocusPolicy(Qt.StrongFocus)  # a wheel over it no longer takes focus
                ed.installEventFilter(self._wheel_guard)
                self.tree.setItemWidget(child, 1, ed)
                self.editors[t.name][p.name] = ed
                if isinstance(ed, QComboBox):
                    ed.currentIndexChanged.connect(lambda _: self.validate())
                _on_edit(ed, self._user_changed)
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        self.tree.itemChanged.connect(lambda *_: self.validate())
        self.tree.itemChanged.connect(lambda *_: self._user_changed())
        self._target = Target("infer", "cpu", "hf")
        self._applying = False
        self.user_chose = False  # True once the user checks or edits anything

    def set_target(self, target: Target) -> None:
        """Grey out what cannot run on this workload, with the reason as the tooltip. A
        technique refused only for its parameters (cast weights in training) gets its defaults
        back instead: greyed out, its parameters could not be changed to what would run."""
        mode_changed = target.mode != self._target.mode
        self._target = target
        self.tree.blockSignals(True)
        for name, item in self.items.items():
            t = self.techs[name]
            ok, why = availability(t, target, self.params_of(name))
            defaults = {p.name: p.default for p in t.params}
            if not ok and availability(t, target, defaults)[0]:
                self._applying = True  # the panel's own change, not the user's
                for key, value in defaults.items():
                    self.set_param(name, key, value)
                self._applying = False
                ok, why = True, None
            item.setDisabled(not ok)
            warn = t.warning(target, self.params_of(name)) if ok else None
            item.setToolTip(0, t.summary if ok and not warn else (why or f"warning: {warn}"))
            if not ok:
                item.setCheckState(0, Qt.Unchecked)
        self.tree.blockSignals(False)
        if mode_changed and not self.user_chose:
            self.use_recommended()  # still the app's own choice: follow the workload
        usable = [it for it in self.items.values() if not it.isDisabled()]
        if usable:  # in RAG mode only the last technique applies: bring it into view
            self.tree.scrollToItem(usable[0], QAbstractItemView.PositionAtTop)
        self.validate()

    def params_of(self, name: str) -> dict[str, Any]:
        return {p: editor_value(w) for p, w in self.editors[name].items()}

    def chosen(self) -> tuple[dict[str, Any], ...]:
        return tuple(
            {"name": n, "params": self.params_of(n)}
            for n, it in self.items.items()
            if it.checkState(0) == Qt.Checked and not it.isDisabled()
        )

    def validate(self) -> str | None:
        """Explain an impossible combination before the run; None when it is fine."""
        try:
            resolve(list(self.chosen()), self._target)
        except SpecError as exc:
            self.problem.setText(str(exc))
            return str(exc)
        self.problem.setText("")
        return None

    def use_recommended(self) -> None:
        """Check exactly what core recommends for this machine and workload (for inference,
        the CLI's --demo choice); until the user picks otherwise it follows the mode."""
        from wattlab.core.techniques.recommend import recommended

        rec = recommended(self._target.mode)
        self.recommended_btn.setToolTip(rec.reason)
        self._applying = True
        try:
            self.apply(rec.techniques())
        finally:
            self._applying = False
        self.user_chose = False

    def _user_changed(self) -> None:
        if not self._applying:
            self.user_chose = True
            self.changed.emit()

    def apply(self, techniques: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> None:
        """Check these techniques with their parameters and uncheck all others."""
        wanted = {t["name"]: t.get("params") or {} for t in techniques}
        for name in self.items:
            self.check(name, name in wanted)
        for name, params in wanted.items():
            for key, value in params.items():
                self.set_param(name, key, value)
        self.validate()

    def check(self, name: str, on: bool = True) -> None:
        self.items[name].setCheckState(0, Qt.Checked if on else Qt.Unchecked)

    def set_param(self, name: str, param: str, value: Any) -> None:
        w = self.editors[name][param]
        if isinstance(w, ChoiceSet):
            w.set_value(value)
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        else:
            w.setValue(value)
