from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test ever writes the user's real run store or settings."""
    d = tmp_path / "wattlab-data"
    monkeypatch.setenv("WATTLAB_DATA_DIR", str(d))
    return d
