"""The main window's actions on results that exist: export what Results shows, open a stored
run (a double-click in the Runs tab, a point in the Sweep tab), compare two stored runs, run
one again (Re-run), and the Help menu. A mixin of MainWindow (it uses its results view,
controller, store, workload and tabs), kept apart so each module stays small."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox


class StoredResults:
    # -- running a stored run again (the Runs tab's Re-run) --------------------------------------
    def _load_techniques(self, spec: dict) -> None:
        self.techniques.apply(spec.get("techniques") or [])

    def rerun(self, spec: dict) -> None:
        self.workload.load_spec(spec)
        self._load_techniques(spec)
        self.start_once()

    def rerun_comparison(self, base: dict, opt: dict, repeats: int) -> None:
        """Re-run a stored comparison: its baseline workload, its optimized techniques."""
        self.workload.load_spec(base)
        self.workload.repeats.setValue(int(repeats))
        self._load_techniques(opt)
        self.start_compare()

    # -- results, export and the runs table ------------------------------------------------------
    def export(self) -> None:
        """One "Export report..." for what Results shows; the dialog remembers its folder."""
        if self.results.shown() is None:
            return
        qs = QSettings("WattLab", "WattLab")
        start = str(qs.value("export_dir", "") or "")
        d = QFileDialog.getExistingDirectory(self, "Export the report to", start)
        if d:
            qs.setValue("export_dir", d)
            self.export_to(Path(d))

    def export_to(self, folder: Path) -> list[Path]:
        shown = self.results.shown()
        if shown is None:
            return []
        try:
            files = self.controller.export(shown, folder)
        except OSError as exc:
            self.show_error(f"could not write the reports: {exc}")
            return []
        self.log_line("wrote " + ", ".join(str(f) for f in files))
        return files

    def open_stored(self, run_id: int) -> None:
        row = self.store.run(run_id)
        res = self.store.result(run_id)
        if row is None or res is None:
            self.show_error(
                f"run {run_id} has no stored result (status {row.status if row else 'unknown'})"
            )
            return
        if row.kind == "sweep":  # a sweep row of the Runs tab: its own view shows it
            self.sweep.show_sweep(run_id)
            self.tabs.setCurrentWidget(self.sweep)
            return
        kind = row.kind if row.kind in ("comparison", "bench") else "run"
        self.on_finished({"kind": kind, "result": res, "stored": True})

    def compare_stored(self, a: int, b: int) -> None:
        """Any two stored session runs: a as baseline, b as optimized (one pair, no repeats)."""
        from wattlab.core.errors import UserError
        from wattlab.core.run.comparison import compare_stored

        try:
            comp = compare_stored(
                self.store,
                a,
                b,
                self.controller.measure_settings(),
                self.controller.carbon().resolved(),
            )
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.on_finished({"kind": "comparison", "result": comp, "stored": True})
        self.history.refresh()  # compare_stored stored a new comparison row

    # -- help ------------------------------------------------------------------------------------
    def show_help(self) -> None:
        from .about import help_text

        QMessageBox.information(self, "WattLab help", help_text())

    def show_about(self) -> None:
        from .about import about_text

        QMessageBox.about(self, "About WattLab", about_text())
