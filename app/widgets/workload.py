"""Workload panel: mode first (inference, training, RAG, or the user's own script), then model,
dataset (with column pickers), device, sizes, repeats. In Script mode the script's fields show
under the mode and what a script does not use is greyed out, with the reason as its tooltip."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from wattlab.core.models.config import model_kind, task_label
from wattlab.core.run import script
from wattlab.core.spec import RunSpec, build_spec, spec_defaults

from .elided import ElidedLabel
from .script_fields import ScriptFields

DEMO = "Built-in demo"
SCRIPT = "script"
NOT_IN_SCRIPT = "Not used in Script mode: your command loads its own model and data."
DEVICE_IN_SCRIPT = (
    "Not used in Script mode: your command picks its own device; every sensor of this "
    "machine is measured."
)
ROUNDS_IN_SCRIPT = (
    "Run baseline + optimized in Script mode: rounds, each running both command lines (in "
    "alternating order)."
)


def read_columns(path: Path) -> list[str]:
    try:
        if path.suffix.lower() == ".jsonl":
            with open(path, encoding="utf-8") as f:
                return list(json.loads(f.readline()).keys())
        with open(path, encoding="utf-8", newline="") as f:
            delim = "\t" if path.suffix.lower() == ".tsv" else ","
            return next(csv.reader(f, delimiter=delim))
    except (OSError, ValueError, StopIteration, UnicodeDecodeError, AttributeError):
        return []


class SaveModelRow(QWidget):
    """The "Save the trained model to..." box with its folder: a training run (Run once)
    writes the trained model there as a Hugging Face folder that the Model picker can open
    afterwards. Core checks the folder when it is picked, so a folder WattLab would refuse to
    replace is named at once, not after the training."""

    changed = Signal()
    problem = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lines = QVBoxLayout(self)
        lines.setContentsMargins(0, 0, 0, 0)
        lines.setSpacing(2)
        row = QHBoxLayout()
        self.check = QCheckBox("Save the trained model to...")
        self.check.setToolTip(
            "Training (Run once): keep the trained model as a Hugging Face folder, saved after "
            "the measured phase; open it afterwards as the model to measure its inference. "
            "Comparisons do not save."
        )
        self.folder = ElidedLabel("")  # the whole path in its tooltip
        self.folder.setObjectName("saveFolder")
        self.choose = QPushButton("Folder...")
        row.addWidget(self.check, 1)
        row.addWidget(self.choose)
        lines.addLayout(row)
        lines.addWidget(self.folder)
        self.folder.hide()  # until a folder is picked
        self.check.clicked.connect(self._clicked)
        self.check.toggled.connect(lambda _: self.changed.emit())
        self.choose.clicked.connect(self.pick)
        self.model = "demo"  # the workload's model: saving over it is refused

    def _clicked(self, on: bool) -> None:
        """Ticking the box without a folder asks for one; no folder, no tick."""
        if on and not self.path():
            self.pick()
            self.check.setChecked(bool(self.path()))

    def pick(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for the trained model (new or empty)")
        if d:
            self.set_folder(d)

    def set_folder(self, path: str) -> bool:
        """Use ``path`` and tick the box when core accepts it as a destination; otherwise say
        why (one sentence, through ``problem``) and keep the previous folder."""
        from wattlab.core.models.saved import destination_problem

        why = destination_problem(path, self.model)
        if why is not None:
            self.problem.emit(why)
            return False
        self.folder.setText(path)
        self.folder.show()
        self.check.setChecked(True)
        self.changed.emit()
        return True

    def path(self) -> str | None:
        return self.folder.full_text() or None

    def chosen(self) -> str | None:
        """The folder to save to: ticked, enabled (training) and picked; else None."""
        return self.path() if self.isEnabled() and self.check.isChecked() else None


class WorkloadPanel(QGroupBox):
    changed = Signal()
    problem = Signal(str)  # a picked file or folder core refused, in one sentence

    def __init__(self, gpu_names: list[str], parent: QWidget | None = None) -> None:
        super().__init__("Workload", parent)
        form = QFormLayout(self)
        # A row too wide for the column puts its field under its label instead of being cut
        # at the right edge (at 1024x700 the column is about 400 px).
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self._form = form
        self.mode = QComboBox()
        self.mode.addItem("Inference", "infer")
        self.mode.addItem("Training", "train")
        self.mode.addItem("RAG: retrieval + generation", "rag")
        self.mode.addItem("Your script or command", SCRIPT)
        form.addRow("Mode", self.mode)
        self.script = ScriptFields(self)
        for label, widget in self.script.rows():
            form.addRow(label, widget)
        self._build_model_rows(form)
        self._build_rag_rows(form)
        self._build_size_rows(form, gpu_names)
        self._connect()
        # what each greyed-out widget says outside Script mode (its own tooltip, if any)
        self._tips = {w: w.toolTip() for w in self._not_in_script()}
        self._set_column_pickers([])
        self._mode_changed()

    def _build_model_rows(self, form: QFormLayout) -> None:
        self.model = QComboBox()
        self.model.addItem(DEMO, "demo")
        self.open_folder_btn = QPushButton("Open folder...")
        self.open_onnx_btn = QPushButton("Open ONNX file...")
        row = QHBoxLayout()
        row.addWidget(self.open_folder_btn)
        row.addWidget(self.open_onnx_btn)
        form.addRow("Model", self.model)
        self._model_buttons = self._wrap(row)
        form.addRow("", self._model_buttons)
        self.task = QLabel(task_label("demo"))
        self.task.setObjectName("taskLabel")
        self.task.setWordWrap(True)
        form.addRow("Task", self.task)
        self.dataset = QComboBox()
        self.dataset.addItem("Demo dataset", "demo")
        self.open_data_btn = QPushButton("Open CSV/JSONL...")
        form.addRow("Dataset", self.dataset)
        form.addRow("", self.open_data_btn)
        self.text_col = QComboBox()
        self.label_col = QComboBox()
        form.addRow("Text column", self.text_col)
        form.addRow("Label column", self.label_col)

    def _build_rag_rows(self, form: QFormLayout) -> None:
        self.open_corpus_btn = QPushButton("Open corpus folder...")
        self.open_corpus_btn.setToolTip(
            "RAG: a folder of .txt/.md files (or pick a .jsonl with Open CSV/JSONL)"
        )
        form.addRow("", self.open_corpus_btn)
        self.queries = self._spin(1, 100000, 1000)
        self.repeat_rate = QDoubleSpinBox()
        self.repeat_rate.setRange(0.0, 0.9)
        self.repeat_rate.setSingleStep(0.1)
        self.repeat_rate.setValue(0.5)
        self.repeat_rate.setToolTip("share of queries that re-ask an earlier question")
        form.addRow("RAG queries", self.queries)
        form.addRow("RAG repeat rate", self.repeat_rate)

    def _build_size_rows(self, form: QFormLayout, gpu_names: list[str]) -> None:
        self.device = QComboBox()
        self.device.addItem("Auto", "auto")
        self.device.addItem("CPU", "cpu")
        for i, name in enumerate(gpu_names):
            self.device.addItem(f"GPU {i}: {name}", f"cuda:{i}")
        form.addRow("Device", self.device)
        defaults = spec_defaults("demo")  # the CLI's defaults: one factory for both
        self.batch = self._spin(1, 4096, defaults["batch_size"])
        self.epochs = self._spin(1, 1000, defaults["epochs"])
        self.seq_len = self._spin(4, 8192, defaults["seq_len"])
        self.infer_batches = self._spin(0, 100000, 200)
        self.infer_batches.setSpecialValueText("whole eval set")
        # Pairs: core's default (verdicts need at least 3; the A/A noise floor needs more).
        from wattlab.core.run.stats import DEFAULT_REPEATS

        self.repeats = self._spin(1, 20, DEFAULT_REPEATS)
        form.addRow("Batch size", self.batch)
        form.addRow("Epochs", self.epochs)
        self.save_model = SaveModelRow()
        form.addRow("Trained model", self.save_model)
        form.addRow("Sequence length", self.seq_len)
        form.addRow("Inference batches", self.infer_batches)
        form.addRow("Repeats", self.repeats)

    def _connect(self) -> None:
        self.open_folder_btn.clicked.connect(self.open_folder)
        self.open_onnx_btn.clicked.connect(self.open_onnx)
        self.open_data_btn.clicked.connect(self.open_data)
        self.open_corpus_btn.clicked.connect(self._open_corpus)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.device.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.save_model.changed.connect(self.changed.emit)
        self.save_model.problem.connect(self.problem.emit)
        self.script.changed.connect(self.changed.emit)
        for box in (self.dataset, self.text_col, self.label_col):
            box.currentIndexChanged.connect(lambda _: self.changed.emit())
        for spin in (
            self.batch,
            self.epochs,
            self.seq_len,
            self.infer_batches,
            self.repeats,
            self.queries,
            self.repeat_rate,
        ):
            spin.valueChanged.connect(lambda _: self.changed.emit())

    def _not_in_script(self) -> list[QWidget]:
        """Everything a user's own command does not use: it loads its own model and data."""
        return [
            self.model,
            self._model_buttons,
            self.task,
            self.dataset,
            self.open_data_btn,
            self.text_col,
            self.label_col,
            self.open_corpus_btn,
            self.queries,
            self.repeat_rate,
            self.device,
            self.batch,
            self.epochs,
            self.save_model,
            self.seq_len,
            self.infer_batches,
        ]

    def is_script(self) -> bool:
        return self.mode.currentData() == SCRIPT

    def load_script(self, stored: script.StoredScript) -> None:
        """Re-run from history: a stored command (or bench) back into Script mode's fields."""
        self.mode.setCurrentIndex(self.mode.findData(SCRIPT))
        f = self.script
        f.command.setText(stored.command)
        f.arguments.setText("")
        f.folder.setText(stored.folder)
        f.compare.setText(stored.compare or "")
        if stored.rounds is not None:
            self.repeats.setValue(stored.rounds)

    def script_plan(self, compare: bool) -> script.ScriptPlan:
        """The Script workload to run (core's ScriptInputError names the field to fix)."""
        return self.script.plan(compare)

    def _mode_changed(self) -> None:
        """In RAG mode the model is the generator and the dataset the corpus; in Script mode
        the script's fields show and what it does not use is greyed out, saying why."""
        rag = self.mode.currentData() == "rag"
        for w in (self.queries, self.repeat_rate):
            w.setEnabled(rag)
        for w in (self.batch, self.epochs, self.seq_len, self.infer_batches):
            w.setEnabled(not rag)
        self.save_model.setEnabled(self.mode.currentData() == "train")  # only training saves
        self.dataset.setItemText(0, "Demo corpus (gazetteer)" if rag else "Demo dataset")
        for box in (self.text_col, self.label_col):
            box.setEnabled(not rag and box.count() > 1)  # "auto-detect" plus real columns
        for field, plain, in_rag in (
            (self.model, "Model", "Generator"),
            (self.dataset, "Dataset", "Corpus"),
        ):
            label = self._form.labelForField(field)
            if label is not None:
                label.setText(in_rag if rag else plain)
        self.task.setText(task_label(self.model.currentData(), rag))
        self._script_mode(self.is_script())
        self.changed.emit()

    def _script_mode(self, on: bool) -> None:
        """Show the script's rows; grey out (with the reason) or give back the others."""
        for _, widget in self.script.rows():
            self._form.setRowVisible(widget, on)
        for w in self._not_in_script():
            if on:
                w.setEnabled(False)
                w.setToolTip(DEVICE_IN_SCRIPT if w is self.device else NOT_IN_SCRIPT)
            else:
                w.setToolTip(self._tips.get(w, ""))
        if not on:
            self.model.setEnabled(True)
            self._model_buttons.setEnabled(True)
            self.task.setEnabled(True)
            self.dataset.setEnabled(True)
            self.open_data_btn.setEnabled(True)
            self.open_corpus_btn.setEnabled(True)
            self.device.setEnabled(True)
        label = self._form.labelForField(self.repeats)
        if label is not None:
            label.setText("Rounds" if on else "Repeats")
        self.repeats.setToolTip(ROUNDS_IN_SCRIPT if on else "")

    @staticmethod
    def _wrap(layout: QHBoxLayout) -> QWidget:
        w = QWidget()
        layout.setContentsMargins(0, 0, 0, 0)
        w.setLayout(layout)
        return w

    def _spin(self, lo: int, hi: int, val: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(val)
        return s

    def try_add_model(self, path: str) -> bool:
        """Add a picked model only when core's cheap check passes: a broken folder is named
        in one message and never enters the model list (nor Recent models)."""
        from wattlab.core.errors import UserError
        from wattlab.core.run.preflight import check_model

        try:
            check_model(path)
        except UserError as exc:
            self.problem.emit(str(exc))
            return False
        self.add_model(path)
        return True

    def remove_model(self, path: str) -> None:
        """A model that failed its check leaves the list; the demo stays."""
        idx = self.model.findData(path)
        if idx > 0:
            self.model.removeItem(idx)

    def recent_models(self) -> list[str]:
        return [
            str(self.model.itemData(i))
            for i in range(self.model.count())
            if self.model.itemData(i) != "demo"
        ]

    def add_model(self, path: str) -> None:
        idx = self.model.findData(path)
        if idx < 0:
            self.model.addItem(Path(path).name, path)
            idx = self.model.count() - 1
        self.model.setCurrentIndex(idx)

    def set_dataset(self, path: str) -> None:
        idx = self.dataset.findData(path)
        if idx < 0:
            self.dataset.addItem(Path(path).name, path)
            idx = self.dataset.count() - 1
        self.dataset.setCurrentIndex(idx)
        self._set_column_pickers(read_columns(Path(path)))

    def _set_column_pickers(self, cols: list[str]) -> None:
        for box in (self.text_col, self.label_col):
            box.clear()
            box.addItem("auto-detect", None)
            for c in cols:
                box.addItem(c, c)
            box.setEnabled(bool(cols))

    def open_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Hugging Face model folder")
        if d:
            self.try_add_model(d)

    def open_onnx(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "ONNX model", "", "ONNX (*.onnx)")
        if f:
            self.try_add_model(f)

    def open_data(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Dataset", "", "Data (*.csv *.tsv *.jsonl *.txt)")
        if f:
            self.set_dataset(f)

    def _open_corpus(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Corpus folder (.txt/.md files)")
        if d:
            idx = self.dataset.findData(d)
            if idx < 0:
                self.dataset.addItem(f"{Path(d).name}/ (corpus)", d)
                idx = self.dataset.count() - 1
            self.dataset.setCurrentIndex(idx)
            self.mode.setCurrentIndex(self.mode.findData("rag"))

    def _model_changed(self) -> None:
        model = self.model.currentData()
        self.save_model.model = str(model)
        self.task.setText(task_label(model, self.mode.currentData() == "rag"))
        # A newly picked model starts from the same defaults the CLI would give it.
        defaults = spec_defaults(model)
        self.batch.setValue(defaults["batch_size"])
        self.epochs.setValue(defaults["epochs"])
        self.seq_len.setValue(defaults["seq_len"])
        self.changed.emit()

    def model_kind(self) -> str:
        return model_kind(str(self.model.currentData()))

    def spec(self, techniques: tuple = (), save: bool = True) -> RunSpec:
        """The workload as a spec; ``save=False`` leaves out the folder the trained model is
        saved to (a comparison's many runs do not each save a model)."""
        if self.mode.currentData() == "rag":
            return build_spec(
                model=self.model.currentData(),
                dataset=self.dataset.currentData(),
                mode="rag",
                device=self.device.currentData(),
                techniques=techniques,
                rag={
                    "queries": self.queries.value(),
                    "repeat_rate": round(self.repeat_rate.value(), 2),
                },
            )
        return build_spec(
            model=self.model.currentData(),
            dataset=self.dataset.currentData(),
            mode=self.mode.currentData(),
            device=self.device.currentData(),
            batch_size=self.batch.value(),
            epochs=self.epochs.value(),
            seq_len=self.seq_len.value(),
            infer_batches=self.infer_batches.value() or None,
            text_column=self.text_col.currentData(),
            label_column=self.label_col.currentData(),
            techniques=techniques,
            save_model=self.save_model.chosen() if save else None,
        )

    def load_spec(self, spec: dict) -> None:
        """Re-run from history: put a stored spec back into the editors."""
        if spec.get("model") and spec["model"] != "demo":
            self.add_model(spec["model"])
        else:
            self.model.setCurrentIndex(0)
        if spec.get("dataset") and spec["dataset"] != "demo":
            self.set_dataset(spec["dataset"])
        self.mode.setCurrentIndex(max(0, self.mode.findData(spec.get("mode", "infer"))))
        defaults = spec_defaults(spec.get("model") or "demo")
        self.batch.setValue(spec.get("batch_size", defaults["batch_size"]))
        self.epochs.setValue(spec.get("epochs", defaults["epochs"]))
        self.seq_len.setValue(spec.get("seq_len", defaults["seq_len"]))
        self.infer_batches.setValue(spec.get("infer_batches") or 0)
        if spec.get("save_model"):
            self.save_model.folder.setText(str(spec["save_model"]))
            self.save_model.folder.show()
        self.save_model.check.setChecked(bool(spec.get("save_model")))
        rag = spec.get("rag") or {}
        self.queries.setValue(rag.get("queries", 1000))
        self.repeat_rate.setValue(rag.get("repeat_rate", 0.5))
