"""User settings: a typed object saved as JSON in the user's config dir.

Qt's QSettings keeps only window geometry and recent files; everything that changes a
measurement lives here so the CLI and the GUI read the same values. ``WATTLAB_CONFIG_DIR``
moves the file (tests point it at a temp dir and never touch the user's).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wattlab.core import paths
from wattlab.core.fileio import write_json_atomic


def config_path() -> Path:
    return paths.config_dir() / "settings.json"


@dataclass
class Settings:
    interval_s: float = 0.1
    idle_s: float = 2.0
    cooldown_s: float = 3.0
    min_measure_s: float = 2.0
    region: str = "WORLD"
    intensity_g_per_kwh: float | None = None
    pue: float = 1.0
    price_per_kwh: float | None = None
    currency: str = "EUR"
    data_dir: str | None = None

    @classmethod
    def load(cls) -> Settings:
        p = config_path()
        try:
            raw = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        ok: dict[str, Any] = {}
        for f in fields(cls):
            v = raw.get(f.name, ...)
            if v is ...:
                continue
            # A hand-edited file with a wrong type must not crash a run later: keep the default.
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            if "float" in str(f.type) and numeric:
                ok[f.name] = float(v)
            elif "str" in str(f.type) and isinstance(v, str):
                ok[f.name] = v
            elif "None" in str(f.type) and v is None:
                ok[f.name] = None
        return cls(**ok)

    def save(self) -> Path:
        p = config_path()
        write_json_atomic(p, asdict(self))
        return p
