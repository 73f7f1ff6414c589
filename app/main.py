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


# sonames Qt's xcb plugin needs that minimal Debian/Ubuntu images lack -> their packages
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
# the set Qt's own documentation lists for xcb, installed at once so one hint is enough
XCB_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
    "libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxkbcommon-x11-0 libegl1"
)


def uses_xcb() -> bool:
    """Qt will pick its xcb plugin: Linux, an X display, no platform chosen otherwise."""
    chosen = os.environ.get("QT_QPA_PLATFORM", "")
    return (
        sys.platform.startswith("linux")
        and chosen in ("", "xcb")
        and bool(os.environ.get("DISPLAY"))
        and not os.environ.get("WAYLAND_DISPLAY")
    )


def missing_platform_library() -> str | None:
    """The shared library Qt's xcb plugin cannot find, or None. Without this check Qt aborts
    with "could not load the Qt platform plugin" and a core dump, naming no package."""
    import ctypes
    from pathlib import Path

    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return None
    try:
        ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY)
    except OSError as exc:
        return str(exc).split(":", 1)[0].strip() or str(exc)
    return None


def platform_hint(missing: str) -> str:
    package = DEBIAN_PACKAGES.get(missing)
    named = f" (Debian/Ubuntu package {package})" if package else ""
    return (
        f"wattlab: the desktop app cannot start: Qt's X11 platform plugin needs {missing}"
        f"{named}, which is not installed. On Debian/Ubuntu: sudo apt install {XCB_PACKAGES}. "
        "The headless CLI works without it: `wattlab --help`"
    )


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


def fit_to_screen(win) -> None:  # noqa: ANN001 - a MainWindow (Qt imported lazily)
    """1400x900 where the screen allows it, never more than the screen's free area: on a
    1024x700 screen the run controls must be on screen without moving the window. A geometry
    restored from the last session wins when it still fits."""
    screen = win.screen().availableGeometry() if win.screen() else None
    w, h = 1400, 900
    if screen is not None:
        w, h = min(w, screen.width()), min(h, screen.height())
        fits = win.width() <= screen.width() and win.height() <= screen.height()
        if getattr(win, "geometry_restored", False) and fits:
            return
    win.resize(w, h)


def main(argv: list[str] | None = None) -> int:
    if not has_display():
        print(
            "wattlab: no display found (DISPLAY/WAYLAND_DISPLAY unset); for the headless "
            "demo comparison run `make demo`, or see `wattlab --help`",
            file=sys.stderr,
        )
        return 2
    missing = missing_platform_library() if uses_xcb() else None
    if missing:
        print(platform_hint(missing), file=sys.stderr)
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
    fit_to_screen(win)
    win.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
