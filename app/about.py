"""Help and About texts: the README's sections, and the versions a bug report needs (read from
core's report manifest, the same list a PDF's methods page names)."""

from __future__ import annotations

from html import escape
from pathlib import Path

HELP_SECTIONS = (
    ("The desktop app", "what each tab shows, the run controls, the quality strip"),
    ("Measuring a model", "models, datasets, modes and what a run reports"),
    ("Techniques", "what each technique does and where it applies"),
    ("Baseline vs optimized", "pairs, verdicts, the A/A noise floor"),
    ("Where the numbers come from", "measured, integrated, estimated, attributed"),
    ("When something goes wrong", "errors, stopped runs, damaged stores"),
)


def readme_path() -> Path | None:
    """The README next to a source checkout; an installed wheel may not carry it."""
    p = Path(__file__).resolve().parents[1] / "README.md"
    return p if p.is_file() else None


def help_text() -> str:
    where = readme_path()
    lines = [f"<b>{escape(title)}</b>: {escape(what)}" for title, what in HELP_SECTIONS]
    src = f"README: {escape(str(where))}" if where else "README.md in the WattLab source"
    return (
        "The README's sections cover the app and the CLI:<br><br>"
        + "<br>".join(lines)
        + f"<br><br>{src}<br>Keys: Ctrl+R run both, Ctrl+Shift+R run once, Ctrl+. stop, "
        "Ctrl+E export, Ctrl+1..5 tabs."
    )


def about_text() -> str:
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    from wattlab.core.report.manifest import build

    software = build()["software"]
    rows = [(name, version or "not installed") for name, version in software.items()]
    rows += [("PySide6", pyside_version), ("Qt", qVersion())]
    body = "<br>".join(f"{escape(k)}: {escape(str(v))}" for k, v in rows)
    return (
        "<b>WattLab</b>: what your model really costs in energy, measured on your hardware, "
        "every figure labelled with its source.<br><br>" + body
    )
