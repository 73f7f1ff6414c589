"""What a report must say about where its numbers came from: hardware, software, settings."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import psutil

from wattlab.core.hardware import cpu_capabilities
from wattlab.core.measure.sensors.estimate import cpu_model_name

PACKAGES = (
    "wattlab",
    "torch",
    "transformers",
    "onnxruntime",
    "onnx",
    "nvidia-ml-py",
    "psutil",
    "numpy",
)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def build(sensor_statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    gpus: list[dict[str, Any]] = []
    driver = None
    for s in sensor_statuses or []:
        if s.get("name") == "nvml" and s.get("available"):
            gpus = list(s["details"].get("gpus", []))
            driver = s["details"].get("driver")
    return {
        "hardware": {
            "cpu_model": cpu_model_name(),
            "cpu_flags": cpu_capabilities(),
            "logical_cpus": psutil.cpu_count(logical=True),
            "physical_cpus": psutil.cpu_count(logical=False),
            "memory_bytes": psutil.virtual_memory().total,
            "gpus": gpus,
            "nvidia_driver": driver,
        },
        "software": {
            "python": platform.python_version(),
            "os": platform.platform(),
            **{p: _version(p) for p in PACKAGES},
        },
        "sensors": sensor_statuses or [],
    }
