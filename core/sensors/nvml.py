"""NVIDIA GPUs through NVML (the official ``nvidia-ml-py`` bindings, imported as ``pynvml``).

Energy comes from the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and
later) because it is accumulated by the driver at its own rate and so is exact regardless of our
sampling interval; only GPUs without it fall back to integrating power samples, and the result
is labelled ``integrated`` so nobody mistakes it for a counter.

A field NVML says is unsupported is remembered and never asked again (each failing call costs
time on every tick). A GPU that starts failing with anything else is marked lost: its values
become ``None`` and the other GPUs go on being sampled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .base import EnergyChannel, Reading, SensorStatus
from .proctree import ProcessTree

# NVML return codes (nvml.h); pynvml exposes the same numbers as NVML_ERROR_* constants.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_GPU_IS_LOST = 15

# NVML refreshes the energy counter and power reading roughly every 100 ms on recent GPUs
# (Zeus and NVIDIA's docs agree on that order); windows shorter than a few updates are flagged.
_COUNTER_UPDATE_S = 0.1


def _err_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def import_pynvml() -> ModuleType:
    import pynvml  # provided by nvidia-ml-py

    return pynvml


def visible_indices(env_value: str | None, uuids: list[str]) -> list[int]:
    """NVML indices of the GPUs that CUDA_VISIBLE_DEVICES leaves visible.

    Follows CUDA's rules: a comma list of indices or (prefixes of) UUIDs; parsing stops at the
    first entry that matches nothing; an empty value hides every GPU. Indices are read in NVML's
    PCI-bus order, which equals CUDA's order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    if env_value is None:
        return list(range(len(uuids)))
    out: list[int] = []
    for raw in env_value.split(","):
        entry = raw.strip()
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            idx = int(entry)
            if idx < 0 or idx >= len(uuids):
                break
            out.append(idx)
            continue
        matches = [i for i, u in enumerate(uuids) if u.startswith(entry)]
        if len(matches) != 1:
            break
        out.append(matches[0])
    seen: set[int] = set()
    return [i for i in out if not (i in seen or seen.add(i))]


@dataclass
class _Gpu:
    nvml_index: int
    label: str  # gpu0, gpu1... in the order CUDA sees them
    handle: Any
    name: str
    has_counter: bool
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False


class NvmlSensor:
    """Samples every visible GPU. Construct through :func:`probe_nvml`."""

    name = "nvml"

    def __init__(self, nvml: ModuleType, gpus: list[_Gpu], tree: ProcessTree | None) -> None:
        self._nvml = nvml
        self.gpus = gpus
        self._tree = tree

    def channels(self) -> list[EnergyChannel]:
        out = []
        for g in self.gpus:
            if g.has_counter:
                out.append(
                    EnergyChannel(
                        source=g.label,
                        key=f"{g.label}.energy_mj",
                        kind="counter",
                        label="measured",
                        method="NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption)",
                        scale_j=1e-3,
                        update_period_s=_COUNTER_UPDATE_S,
                    )
                )
            else:
                out.append(
                    EnergyChannel(
                        source=g.label,
                        key=f"{g.label}.power_w",
                        kind="power",
                        label="integrated",
                        method="trapezoid over NVML power samples (nvmlDeviceGetPowerUsage)",
                        update_period_s=_COUNTER_UPDATE_S,
                    )
                )
        return out

    def _field(self, gpu: _Gpu, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if gpu.lost or name in gpu.unsupported:
            return None
        try:
            return fn(gpu.handle, *args)
        except self._nvml.NVMLError as exc:
            if _err_code(exc) in (_NOT_SUPPORTED, _NO_PERMISSION):
                gpu.unsupported.add(name)
            else:
                gpu.lost = True
            return None

    def read(self) -> Reading:
        nv = self._nvml
        out: Reading = {}
        tree_pids = self._tree.pids if self._tree is not None else set()
        for g in self.gpus:
            p = g.label
            mw = self._field(g, "power", nv.nvmlDeviceGetPowerUsage)
            out[f"{p}.power_w"] = mw / 1000.0 if mw is not None else None
            if g.has_counter:
                mj = self._field(g, "energy", nv.nvmlDeviceGetTotalEnergyConsumption)
                out[f"{p}.energy_mj"] = float(mj) if mj is not None else None
            mem = self._field(g, "memory", nv.nvmlDeviceGetMemoryInfo)
            out[f"{p}.mem_used_bytes"] = float(mem.used) if mem is not None else None
            out[f"{p}.mem_total_bytes"] = float(mem.total) if mem is not None else None
            util = self._field(g, "util", nv.nvmlDeviceGetUtilizationRates)
            out[f"{p}.util_pct"] = float(util.gpu) if util is not None else None
            clk = self._field(g, "sm_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)
            out[f"{p}.sm_clock_mhz"] = float(clk) if clk is not None else None
            temp = self._field(g, "temp", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
            out[f"{p}.temp_c"] = float(temp) if temp is not None else None
            out[f"{p}.proc_mem_bytes"] = self._tree_memory(g, tree_pids)
            out[f"{p}.lost"] = 1.0 if g.lost else 0.0
        return out

    def _tree_memory(self, g: _Gpu, pids: set[int]) -> float | None:
        if not pids:
            return None
        procs = self._field(g, "procs", self._nvml.nvmlDeviceGetComputeRunningProcesses)
        if procs is None:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid in pids]
        # NVML reports None per process where it cannot see other containers' usage.
        known = [u for u in used if u is not None]
        if used and not known:
            return None
        return float(sum(known))

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down must never mask the run's result
            pass


def _decode(s: Any) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def probe_nvml(
    tree: ProcessTree | None = None,
    nvml: ModuleType | None = None,
    env: dict[str, str] | None = None,
) -> tuple[NvmlSensor | None, SensorStatus]:
    """Find the visible GPUs, or say precisely why there are none."""
    env = os.environ if env is None else env
    if nvml is None:
        try:
            nvml = import_pynvml()
        except ImportError:
            return None, SensorStatus("nvml", False, "nvidia-ml-py (pynvml) is not installed")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        code = _err_code(exc)
        if code == _LIBRARY_NOT_FOUND:
            why = "NVML library (libnvidia-ml.so) not found: no NVIDIA driver on this machine"
        elif code == _DRIVER_NOT_LOADED:
            why = "NVIDIA driver is not loaded"
        elif code == _NO_PERMISSION:
            why = "permission denied opening the NVIDIA device"
        else:
            why = f"NVML failed to initialise: {exc}"
        return None, SensorStatus("nvml", False, why)
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_decode(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    except nvml.NVMLError as exc:
        return None, SensorStatus("nvml", False, f"NVML could not list GPUs: {exc}")
    if count == 0:
        return None, SensorStatus("nvml", False, "NVML found no NVIDIA GPU")
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    indices = visible_indices(cvd, uuids)
    if not indices:
        return None, SensorStatus(
            "nvml", False, f"CUDA_VISIBLE_DEVICES={cvd!r} hides all {count} GPU(s)"
        )
    gpus: list[_Gpu] = []
    for cuda_idx, i in enumerate(indices):
        h = handles[i]
        try:
            name = _decode(nvml.nvmlDeviceGetName(h))
        except nvml.NVMLError:
            name = "unknown NVIDIA GPU"
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            has_counter = True
        except nvml.NVMLError:
            has_counter = False
        gpus.append(
            _Gpu(nvml_index=i, label=f"gpu{cuda_idx}", handle=h, name=name, has_counter=has_counter)
        )
    try:
        driver = _decode(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        driver = None
    details: dict[str, object] = {
        "driver": driver,
        "gpus": [
            {
                "label": g.label,
                "nvml_index": g.nvml_index,
                "name": g.name,
                "uuid": uuids[g.nvml_index],
                "energy_counter": g.has_counter,
            }
            for g in gpus
        ],
    }
    if cvd is not None and len(uuids) > 1 and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        details["warning"] = (
            "CUDA_VISIBLE_DEVICES indices were read in PCI-bus order; set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers GPUs the same way"
        )
    return NvmlSensor(nvml, gpus, tree), SensorStatus("nvml", True, None, details)
