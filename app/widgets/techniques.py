"""Techniques panel: every registered technique, its parameters as editors with their ranges, and
the reason as a tooltip when it cannot apply to the chosen workload."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
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


def editor_value(w: QWidget) -> Any:
    if isinstance(w, QComboBox):
        return w.currentText()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    return w.value()


class TechniquesPanel(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Techniques (optimized side)", parent)
        lay = QVBoxLayout(self)
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
                self.tree.setItemWidget(child, 1, ed)
                self.editors[t.name][p.name] = ed
                if isinstance(ed, QComboBox):
                    ed.currentIndexChanged.connect(lambda _: self.validate())
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        self.tree.itemChanged.connect(lambda *_: self.validate())
        self._target = Target("infer", "cpu", "hf")

    def set_target(self, target: Target) -> None:
        """Grey out what cannot run on this workload, with the reason as the tooltip."""
        self._target = target
        self.tree.blockSignals(True)
        for name, item in self.items.items():
            t = self.techs[name]
            ok, why = availability(t, target, self.params_of(name))
            item.setDisabled(not ok)
            warn = t.warning(target, self.params_of(name)) if ok else None
            item.setToolTip(0, t.summary if ok and not warn else (why or f"warning: {warn}"))
            if not ok:
                item.setCheckState(0, Qt.Unchecked)
        self.tree.blockSignals(False)
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

    def check(self, name: str, on: bool = True) -> None:
        self.items[name].setCheckState(0, Qt.Checked if on else Qt.Unchecked)

    def set_param(self, name: str, param: str, value: Any) -> None:
        w = self.editors[name][param]
        if isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        else:
            w.setValue(value)
