"""Data files shipped with WattLab (power models, workloads, icons)."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
