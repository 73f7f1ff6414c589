"""Starts the desktop app. Imports no torch: the window must open fast, and ML runs elsewhere."""

from __future__ import annotations

import os
import sys


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal", "vnc")):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def gpu_names() -> list[str]:
    from wattlab.core.measure.sensors.nvml import probe_nvml

    gpu, status = probe_nvml()
    if gpu is None:
        return []
    names = [g.name for g in gpu.gpus]
    gpu.close()
    return names


def build_window():  # noqa: ANN201 - returns MainWindow (Qt imported lazily)
    from wattlab.core.measure.store import RunStore
    from wattlab.core.settings import Settings

    from .main_window import MainWindow

    settings, problems = Settings.load_checked()
    store = RunStore.open_default(
        None if not settings.data_dir else __import__("pathlib").Path(settings.data_dir)
    )
    win = MainWindow(store, settings, gpu_names())
    if problems:  # one message; the fields named fall back to their defaults
        win.show_error(f"settings.json: {'; '.join(problems)} (defaults used instead)")
    return win


def main(argv: list[str] | None = None) -> int:
    if not has_display():
        print(
            "wattlab: no display found (DISPLAY/WAYLAND_DISPLAY unset); for the headless "
            "demo comparison run `make demo`, or see `wattlab --help`",
            file=sys.stderr,
        )
        return 2
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from wattlab.resources import RESOURCES_DIR

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("WattLab")
    icon = RESOURCES_DIR / "icons" / "wattlab.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    from wattlab.core.measure.store import StoreError

    try:
        win = build_window()
    except StoreError as exc:  # a damaged or foreign store: one message, not a traceback
        from PySide6.QtWidgets import QMessageBox

        print(f"wattlab: {exc}", file=sys.stderr)
        QMessageBox.critical(None, "WattLab cannot open its run store", str(exc))
        return 2
    win.resize(1400, 900)
    win.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
