"""Settings dialog: what changes a measurement, saved as the typed settings file the CLI reads."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from wattlab.core.measure.carbon import table
from wattlab.core.measure.sampling import MIN_INTERVAL_S
from wattlab.core.settings import Settings


def _spin(lo: float, hi: float, val: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(val)
    return s


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("WattLab settings")
        form = QFormLayout(self)
        s = settings
        self.interval = _spin(MIN_INTERVAL_S, 10.0, s.interval_s, 0.01, 3)
        self.idle = _spin(0.0, 120.0, s.idle_s, 0.5, 1)
        self.cooldown = _spin(0.0, 600.0, s.cooldown_s, 1.0, 1)
        self.min_measure = _spin(0.0, 600.0, s.min_measure_s, 0.5, 1)
        self.min_measure.setToolTip(
            "Inference repeats its batches until the measured phase lasts this long, on a GPU "
            "or when one pass would span fewer than ten sensor updates (0: one pass)"
        )
        self.region = QComboBox()
        for code, reg in sorted(table()["regions"].items()):
            self.region.addItem(f"{reg['name']} ({reg['g_per_kwh']} g/kWh)", code)
        self.region.setCurrentIndex(max(0, self.region.findData(s.region)))
        self.use_intensity = QCheckBox("override (gCO2e/kWh)")
        self.intensity = _spin(0.0, 2000.0, s.intensity_g_per_kwh or 0.0, 10.0, 0)
        self.use_intensity.setChecked(s.intensity_g_per_kwh is not None)
        self.intensity.setEnabled(self.use_intensity.isChecked())
        self.use_intensity.toggled.connect(self.intensity.setEnabled)
        self.pue = _spin(1.0, 3.0, s.pue, 0.05)
        self.use_price = QCheckBox("price per kWh")
        self.price = _spin(0.0, 10.0, s.price_per_kwh or 0.0, 0.01, 3)
        self.use_price.setChecked(s.price_per_kwh is not None)
        self.price.setEnabled(self.use_price.isChecked())
        self.use_price.toggled.connect(self.price.setEnabled)
        self.currency = QLineEdit(s.currency)
        self.nodes = QLineEdit(s.nodes)
        self.nodes.setPlaceholderText("none; e.g. gpu1:9464,gpu2:9464 (wattlab exporter)")
        self.nodes.setToolTip(
            "Other nodes' exporters to scrape during every run: their energy over the measured "
            "phase is stored with the run, and their power shows in the live view"
        )
        self.data_dir = QLineEdit(s.data_dir or "")
        self.data_dir.setPlaceholderText("default: the user data dir")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.data_dir)
        row.addWidget(browse)
        holder = QWidget()
        row.setContentsMargins(0, 0, 0, 0)
        holder.setLayout(row)
        form.addRow("Sampling interval (s)", self.interval)
        form.addRow("Idle baseline (s)", self.idle)
        form.addRow("Cool-down between runs (s)", self.cooldown)
        form.addRow("Minimum measured duration (s)", self.min_measure)
        form.addRow("Carbon region", self.region)
        form.addRow(self.use_intensity, self.intensity)
        form.addRow("PUE", self.pue)
        form.addRow(self.use_price, self.price)
        form.addRow("Currency", self.currency)
        form.addRow("Other nodes", self.nodes)
        form.addRow("Data folder (restart to apply)", holder)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Data folder")
        if d:
            self.data_dir.setText(d)

    def values(self) -> Settings:
        return Settings(
            interval_s=self.interval.value(),
            idle_s=self.idle.value(),
            cooldown_s=self.cooldown.value(),
            min_measure_s=self.min_measure.value(),
            region=self.region.currentData(),
            intensity_g_per_kwh=self.intensity.value() if self.use_intensity.isChecked() else None,
            pue=self.pue.value(),
            price_per_kwh=self.price.value() if self.use_price.isChecked() else None,
            currency=self.currency.text().strip() or "EUR",
            data_dir=self.data_dir.text().strip() or None,
            nodes=self.nodes.text().strip(),
        )

    def accept(self) -> None:
        """Refuse a node list that cannot be scraped, in one message, before it is saved."""
        from wattlab.core.errors import SpecError
        from wattlab.core.measure.nodes import node_urls

        text = self.nodes.text().strip()
        if text:
            try:
                node_urls(text)
            except SpecError as exc:
                QMessageBox.warning(self, "Other nodes", str(exc))
                return
        super().accept()
