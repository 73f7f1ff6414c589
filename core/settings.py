"""User settings: a typed object saved as JSON in the user's config dir.

Qt's QSettings keeps only window geometry and recent files; everything that changes a
measurement lives here so the CLI and the GUI read the same values. ``WATTLAB_CONFIG_DIR``
moves the file (tests point it at a temp dir and never touch the user's).

A hand-edited file must never stop a command or the app from starting: whatever cannot be read
(bad bytes, bad JSON, a wrong type, a number out of range) falls back to the default, field by
field, and ``load_checked`` says what was ignored so the caller can report it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from wattlab.core import paths
from wattlab.core.errors import SpecError
from wattlab.core.fileio import read_json, write_json_atomic


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
    # Other nodes' exporters (`wattlab exporter`) to scrape during every run, comma-separated
    # (the app's --nodes); empty: none.
    nodes: str = ""

    @classmethod
    def load(cls) -> Settings:
        """The saved settings, defaults for whatever is unusable (see ``load_checked``)."""
        return cls.load_checked()[0]

    @classmethod
    def load_checked(cls) -> tuple[Settings, list[str]]:
        """The saved settings and one sentence per thing that was ignored in the file."""
        raw, problem = _read_object(config_path())
        if problem is not None:
            return cls(), [problem]
        ok: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            if f.name not in raw:
                continue
            value, why = _field_value(f.name, str(f.type), raw[f.name])
            if why is None:
                ok[f.name] = value
            else:
                problems.append(f"{f.name}: {why}")
        return cls(**ok), problems

    def save(self) -> Path:
        p = config_path()
        write_json_atomic(p, asdict(self))
        return p


def _read_object(p: Path) -> tuple[dict[str, Any], str | None]:
    """The file's JSON object, or ({}, why it cannot be used). A missing file is no problem."""
    if not p.exists():
        return {}, None
    try:
        raw = read_json(p, "the file", SpecError)
    except SpecError as exc:
        return {}, str(exc)
    if not isinstance(raw, dict):
        return {}, "does not hold a JSON object"
    return raw, None


def _field_value(name: str, type_text: str, v: Any) -> tuple[Any, str | None]:
    """``v`` as the field's value, or (None, why it is refused): the field's type, and for
    numbers the same range the matching CLI flag has (spec.RANGES)."""
    from wattlab.core.spec import RANGES

    if v is None:
        return (None, None) if "None" in type_text else (None, "must not be null")
    if "float" in type_text:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"must be a number, got {_shown(v)}"
        try:
            number = float(v)
        except OverflowError:  # an integer too large for a float
            number = float("inf")
        rng = RANGES.get(name)
        why = rng.problem(number) if rng is not None else None
        return (number, None) if why is None else (None, why)
    if "str" in type_text:
        if not isinstance(v, str):
            return None, f"must be text, got {_shown(v)}"
        if name == "region":
            return _region(v)
        if name == "nodes" and v.strip():
            from wattlab.core.measure.nodes import node_urls

            try:
                node_urls(v)
            except SpecError as exc:
                return None, str(exc)
        return v, None
    return None, "has an unknown type"


def _region(code: str) -> tuple[Any, str | None]:
    """A carbon region the table knows (checked here, so a typo is named with settings.json
    rather than failing a comparison later)."""
    from wattlab.core.measure.carbon import table

    if code.upper() in table()["regions"]:
        return code, None
    return None, f"unknown carbon region {_shown(code)} (see `wattlab compare --help` for --region)"


def _shown(v: Any) -> str:
    """A short, safe rendering of a refused value (a nested one is named by its type only)."""
    if isinstance(v, (str, int, float, bool)):
        return repr(v)[:40]
    return f"a JSON {'array' if isinstance(v, list) else 'object'}"
