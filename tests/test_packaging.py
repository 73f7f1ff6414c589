"""Every folder of Python code under api/, core/, app/ and resources/ is a package listed in
pyproject.toml, so a wheel ships it (setuptools copies only the listed packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check is the same everywhere

ROOT = Path(__file__).resolve().parents[1]
# api/ is the top-level `wattlab` package itself (the Python API).
TOPS = {
    "api": "wattlab",
    "core": "wattlab.core",
    "app": "wattlab.app",
    "resources": "wattlab.resources",
}


def code_folders(root: Path = ROOT) -> dict[str, Path]:
    """Dotted package name -> folder, for every folder holding a .py file (with or without an
    __init__.py: a folder someone forgot to make a package is exactly what this must catch)."""
    found: dict[str, Path] = {}
    for top, name in TOPS.items():
        for py in (root / top).rglob("*.py"):
            rel = py.parent.relative_to(root / top).parts
            if "__pycache__" in rel or any(p.startswith(".") for p in rel):
                continue
            found[".".join((name, *rel))] = py.parent
    return found


def test_the_walk_sees_folders_without_an_init(tmp_path):
    """The check below would be vacuous if the walk only found folders with __init__.py."""
    (tmp_path / "core" / "stray").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "stray" / "mod.py").write_text("")
    (tmp_path / "core" / "__pycache__").mkdir()
    (tmp_path / "core" / "__pycache__" / "x.py").write_text("")
    assert set(code_folders(tmp_path)) == {"wattlab.core", "wattlab.core.stray"}


def test_every_code_folder_is_a_listed_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = code_folders()
    assert {"wattlab.core", "wattlab.core.worker", "wattlab.app.widgets"} <= set(found)
    assert sorted(set(found) - listed) == [], "folders of code missing from [tool.setuptools]"
    no_init = sorted(n for n, d in found.items() if not (d / "__init__.py").is_file())
    assert no_init == [], "folders of code without an __init__.py"
    assert sorted(listed - set(found)) == [], "listed packages with no code folder"
    assert set(cfg["package-dir"]) == set(TOPS.values())
