from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test ever writes the user's real run store, settings or Qt settings."""
    d = tmp_path / "wattlab-data"
    monkeypatch.setenv("WATTLAB_DATA_DIR", str(d))
    monkeypatch.setenv("WATTLAB_CONFIG_DIR", str(tmp_path / "wattlab-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return d
