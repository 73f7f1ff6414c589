"""NVIDIA GPUs through NVML (the official ``nvidia-ml-py`` bindings, imported as ``pynvml``).

Energy comes from the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and
later) because it is accumulated by the driver at its own rate and so is exact regardless of our
sampling interval; only GPUs without it fall back to integrating power samples, and the result
is labelled ``integrated`` so nobody mistakes it for a counter.

Errors, as real drivers produce them:
- Only GPU_IS_LOST and the equivalent reset/uninitialised states mark a GPU lost.
- The energy counter is read first, on its own: no other field's failure touches it. A failed
  read leaves a gap that the accumulator closes with the delta across it when the counter reads
  again; if it never does, the power reading (kept as the counter's fallback) is integrated.
- Any other field that fails (``nvmlDeviceGetComputeRunningProcesses`` gives FUNCTION_NOT_FOUND
  on drivers older than R510 with today's bindings) is disabled alone and never asked again.

Power: on Ampere and newer ``nvmlDeviceGetPowerUsage`` is a one-second average, so the
instant-power field (``NVML_FI_DEV_POWER_INSTANT``) is used where the driver has it, for peaks
and for integration; where it is missing on such a GPU, integration says so.

MIG: ``CUDA_VISIBLE_DEVICES=MIG-...`` maps to the parent GPU. NVML has no energy per instance,
so that GPU's figures are the whole device, shared by its instances, and labelled so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, SensorStatus
from wattlab.core.measure.sensors.proctree import ProcessTree

# NVML return codes (nvml.h); pynvml exposes the same numbers as NVML_ERROR_* constants.
_UNINITIALIZED = 1
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_GPU_NOT_FOUND = 28
LOST_CODES = frozenset(
    {_UNINITIALIZED, _DRIVER_NOT_LOADED, _GPU_IS_LOST, _RESET_REQUIRED, _GPU_NOT_FOUND}
)
_FI_DEV_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT (nvml.h), milliwatts
_MIG_ENABLED = 1

# NVML refreshes the energy counter and power reading roughly every 100 ms on recent GPUs
# (Zeus and NVIDIA's docs agree on that order); windows shorter than ten updates are flagged.
_COUNTER_UPDATE_S = 0.1
# Fields a transient error must not disable: the counter and the power it falls back to.
_RETRIED_FIELDS = frozenset({"energy", "power", "power_instant"})


def _err_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def import_pynvml() -> ModuleType:
    import pynvml  # provided by nvidia-ml-py

    return pynvml


def normalise_uuid(uuid: str) -> str:
    """``GPU-abc...``/``MIG-abc...``/``abc...`` (torch prints UUIDs bare) -> ``abc...``."""
    u = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix) :]
    return u


def visible_indices(
    env_value: str | None, uuids: list[str], mig_parents: dict[str, int] | None = None
) -> list[int]:
    """NVML indices of the GPUs that CUDA_VISIBLE_DEVICES leaves visible.

    Follows CUDA's rules: a comma list of indices or (prefixes of) UUIDs; parsing stops at the
    first entry that matches nothing; an empty value hides every GPU. ``MIG-...`` entries map to
    the GPU that holds the instance. Indices are read in NVML's PCI-bus order, which equals
    CUDA's order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
    """
    if env_value is None:
        return list(range(len(uuids)))
    mig_parents = mig_parents or {}
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
        if entry.upper().startswith("MIG-"):
            parents = {p for u, p in mig_parents.items() if u.startswith(entry)}
            if len(parents) != 1:
                break
            out.append(parents.pop())
            continue
        matches = [i for i, u in enumerate(uuids) if u.startswith(entry)]
        if len(matches) != 1:
            break
        out.append(matches[0])
    return list(dict.fromkeys(out))  # first occurrence of each, in order


@dataclass
class _Gpu:
    nvml_index: int
    label: str  # gpu0, gpu1... in the order CUDA sees them
    handle: Any
    name: str
    has_counter: bool
    uuid: str = ""
    mig_uuids: list[str] = field(default_factory=list)
    has_instant_power: bool = False
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False

    def owns(self, uuid: str) -> bool:
        """Whether a CUDA device UUID (the GPU's, or one of its MIG instances') is this GPU."""
        n = normalise_uuid(uuid)
        return n == normalise_uuid(self.uuid) or any(n == normalise_uuid(m) for m in self.mig_uuids)


class NvmlSensor:
    """Samples every visible GPU. Construct through :func:`probe_nvml`."""

    name = "nvml"

    def __init__(self, nvml: ModuleType, gpus: list[_Gpu], tree: ProcessTree | None) -> None:
        self._nvml = nvml
        self.gpus = gpus
        self._tree = tree

    def channels(self) -> list[EnergyChannel]:
        return [self._channel(g) for g in self.gpus]

    def _channel(self, g: _Gpu) -> EnergyChannel:
        power_how = "NVML instant power field" if g.has_instant_power else "nvmlDeviceGetPowerUsage"
        if g.has_counter:
            return EnergyChannel(
                source=g.label,
                key=f"{g.label}.energy_mj",
                kind="counter",
                label="measured",
                method="NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption)",
                scale_j=1e-3,
                update_period_s=_COUNTER_UPDATE_S,
                fallback_key=f"{g.label}.power_w",
            )
        return EnergyChannel(
            source=g.label,
            key=f"{g.label}.power_w",
            kind="power",
            label="integrated",
            method=f"trapezoid over NVML power samples ({power_how})",
            update_period_s=_COUNTER_UPDATE_S,
        )

    def source_for_uuid(self, uuid: str) -> str | None:
        """The source label (gpu0...) of the GPU holding CUDA device ``uuid``, if visible."""
        return next((g.label for g in self.gpus if g.owns(uuid)), None)

    def _field(self, gpu: _Gpu, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if gpu.lost or name in gpu.unsupported:
            return None
        try:
            return fn(gpu.handle, *args)
        except self._nvml.NVMLError as exc:
            code = _err_code(exc)
            if code in LOST_CODES:
                gpu.lost = True
            elif name not in _RETRIED_FIELDS or code in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND):
                gpu.unsupported.add(name)
            return None

    def _power_w(self, g: _Gpu) -> float | None:
        if g.has_instant_power:
            values = self._field(
                g, "power_instant", self._nvml.nvmlDeviceGetFieldValues, [_FI_DEV_POWER_INSTANT]
            )
            mw = _field_value(values[0]) if values else None
            if mw is not None:
                return mw / 1000.0
        mw = self._field(g, "power", self._nvml.nvmlDeviceGetPowerUsage)
        return mw / 1000.0 if mw is not None else None

    def read(self) -> Reading:
        nv = self._nvml
        out: Reading = {}
        tree_pids = self._tree.pids if self._tree is not None else set()
        for g in self.gpus:
            p = g.label
            if g.has_counter:  # first and alone: nothing else may cost the counter its read
                mj = self._field(g, "energy", nv.nvmlDeviceGetTotalEnergyConsumption)
                out[f"{p}.energy_mj"] = float(mj) if mj is not None else None
            out[f"{p}.power_w"] = self._power_w(g)
            mem = self._field(g, "memory", nv.nvmlDeviceGetMemoryInfo)
            out[f"{p}.mem_used_bytes"] = float(mem.used) if mem is not None else None
            out[f"{p}.mem_total_bytes"] = float(mem.total) if mem is not None else None
            util = self._field(g, "util", nv.nvmlDeviceGetUtilizationRates)
            out[f"{p}.util_pct"] = float(util.gpu) if util is not None else None
            clk = self._field(g, "sm_clock", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)
            out[f"{p}.sm_clock_mhz"] = float(clk) if clk is not None else None
            temp = self._field(g, "temp", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
            out[f"{p}.temp_c"] = float(temp) if temp is not None else None
            out.update(self._processes(g, tree_pids))
            out[f"{p}.lost"] = 1.0 if g.lost else 0.0
        return out

    def _processes(self, g: _Gpu, pids: set[int]) -> Reading:
        """The workload tree's GPU memory, and how many of its and other processes run there
        (None where NVML cannot list processes)."""
        p = g.label
        none: Reading = {
            f"{p}.proc_mem_bytes": None,
            f"{p}.tree_procs": None,
            f"{p}.other_procs": None,
        }
        procs = self._field(g, "procs", self._nvml.nvmlDeviceGetComputeRunningProcesses)
        if procs is None:
            return none
        mine = [x for x in procs if x.pid in pids]
        out: Reading = {
            f"{p}.tree_procs": float(len(mine)),
            f"{p}.other_procs": float(len(procs) - len(mine)),
            f"{p}.proc_mem_bytes": None,
        }
        # NVML reports None per process where it cannot see other containers' usage.
        known = [x.usedGpuMemory for x in mine if x.usedGpuMemory is not None]
        if pids and (known or not mine):
            out[f"{p}.proc_mem_bytes"] = float(sum(known))
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down must never mask the run's result
            pass


def _field_value(v: Any) -> float | None:
    """A ``c_nvmlFieldValue_t``'s number, or None when NVML returned an error for it."""
    if getattr(v, "nvmlReturn", 1) != 0:
        return None
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    name = attr.get(getattr(v, "valueType", 1), "uiVal")
    return float(getattr(v.value, name))


def _decode(s: Any) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def _mig_uuids(nvml: ModuleType, handle: Any) -> list[str]:
    """UUIDs of the MIG instances on a GPU (empty when MIG is off or NVML cannot tell)."""
    try:
        if nvml.nvmlDeviceGetMigMode(handle)[0] != _MIG_ENABLED:
            return []
        count = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except (nvml.NVMLError, AttributeError):
        return []
    out = []
    for i in range(count):
        try:
            out.append(
                _decode(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)))
            )
        except nvml.NVMLError:
            continue  # an empty slot
    return out


def _probe_gpu(
    nvml: ModuleType, handle: Any, index: int, label: str, uuid: str, migs: list[str]
) -> _Gpu:
    try:
        name = _decode(nvml.nvmlDeviceGetName(handle))
    except nvml.NVMLError:
        name = "unknown NVIDIA GPU"
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        has_counter = True
    except nvml.NVMLError:
        has_counter = False
    try:
        values = nvml.nvmlDeviceGetFieldValues(handle, [_FI_DEV_POWER_INSTANT])
        has_instant = _field_value(values[0]) is not None
    except (nvml.NVMLError, AttributeError):
        has_instant = False
    return _Gpu(index, label, handle, name, has_counter, uuid, migs, has_instant)


def _gpu_warnings(nvml: ModuleType, g: _Gpu) -> list[str]:
    out = []
    if g.mig_uuids:
        out.append(
            f"{g.label}: MIG is on: its figures are the whole GPU, shared by "
            f"{len(g.mig_uuids)} instances (NVML has no energy per instance)"
        )
    if not g.has_instant_power:
        try:
            major = nvml.nvmlDeviceGetCudaComputeCapability(g.handle)[0]
        except (nvml.NVMLError, AttributeError):
            major = None
        if major is not None and major >= 8:
            out.append(
                f"{g.label}: no instant-power field on this driver; nvmlDeviceGetPowerUsage is a "
                "1 s average on Ampere and newer, so peaks are smoothed"
                + ("" if g.has_counter else " and integrated energy lags the load")
            )
    return out


def probe_nvml(
    tree: ProcessTree | None = None,
    nvml: ModuleType | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[NvmlSensor | None, SensorStatus]:
    """Find the visible GPUs, or say precisely why there are none."""
    environ: Mapping[str, str] = os.environ if env is None else env
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
    migs = [_mig_uuids(nvml, h) for h in handles]
    mig_parents = {u: i for i, us in enumerate(migs) for u in us}
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    indices = visible_indices(cvd, uuids, mig_parents)
    if not indices:
        return None, SensorStatus(
            "nvml", False, f"CUDA_VISIBLE_DEVICES={cvd!r} hides all {count} GPU(s)"
        )
    gpus = [
        _probe_gpu(nvml, handles[i], i, f"gpu{cuda_idx}", uuids[i], migs[i])
        for cuda_idx, i in enumerate(indices)
    ]
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
                "uuid": g.uuid,
                "energy_counter": g.has_counter,
                "instant_power": g.has_instant_power,
                "mig_instances": len(g.mig_uuids),
            }
            for g in gpus
        ],
    }
    warnings = [w for g in gpus for w in _gpu_warnings(nvml, g)]
    if warnings:
        details["warnings"] = warnings
    if cvd is not None and len(uuids) > 1 and environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        details["warning"] = (
            "CUDA_VISIBLE_DEVICES indices were read in PCI-bus order; set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers GPUs the same way"
        )
    return NvmlSensor(nvml, gpus, tree), SensorStatus("nvml", True, None, details)
