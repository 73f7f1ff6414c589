"""A stand-in for the ``pynvml`` module (nvidia-ml-py) driven by a scripted GPU model.

It mirrors the real module's surface that WattLab uses: ``NVMLError`` carrying ``.value``, the
``NVML_ERROR_*`` codes, handles from ``nvmlDeviceGetHandleByIndex`` and the query functions.
Each fake GPU's power follows a function of a fake clock, and its energy counter is the exact
integral, so tests can assert joules.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_FI_DEV_POWER_INSTANT = 186
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    power_w: Callable[[float], float] = lambda t: 100.0
    energy_j: Callable[[float], float] | None = None  # None: counter not supported
    mem_used: int = 1 << 30
    mem_total: int = 80 << 30
    unsupported: set[str] = field(default_factory=set)
    lost_after: float | None = None  # fake time from which every call fails GPU_IS_LOST
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    # Scripted failures: field name -> f(fake time) giving an NVML error code to raise, or None.
    errors: dict[str, Callable[[float], int | None]] = field(default_factory=dict)
    instant_power_w: Callable[[float], float] | None = None  # None: no instant-power field
    compute_capability: tuple[int, int] = (9, 0)
    mig_uuids: list[str] = field(default_factory=list)


class _Mem:
    def __init__(self, used: int, total: int) -> None:
        self.used, self.total, self.free = used, total, total - used


class _Util:
    def __init__(self, gpu: int) -> None:
        self.gpu, self.memory = gpu, 0


class _Value:
    def __init__(self, ui: int) -> None:
        self.uiVal = ui


class _FieldValue:
    """Like ``c_nvmlFieldValue_t``: a return code per field and a typed value (1 = uint)."""

    def __init__(self, ret: int, ui: int) -> None:
        self.nvmlReturn, self.valueType, self.value = ret, 1, _Value(ui)


class _Proc:
    def __init__(self, pid: int, used: int | None) -> None:
        self.pid, self.usedGpuMemory = pid, used


def make_module(
    gpus: list[FakeGpu], clock: Callable[[], float] = lambda: 0.0, init_error: int | None = None
) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    for k, v in globals().items():
        if k.startswith("NVML_"):
            setattr(m, k, v)
    m.shutdown_called = False

    def call(gpu: FakeGpu, what: str) -> None:
        gpu.calls[what] = gpu.calls.get(what, 0) + 1
        if gpu.lost_after is not None and clock() >= gpu.lost_after:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if what in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        scripted = gpu.errors.get(what)
        code = scripted(clock()) if scripted is not None else None
        if code is not None:
            raise NVMLError(code)

    def nvmlInit() -> None:
        if init_error is not None:
            raise NVMLError(init_error)

    def nvmlShutdown() -> None:
        m.shutdown_called = True

    def energy(h: FakeGpu) -> int:
        call(h, "energy")
        if h.energy_j is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(round(h.energy_j(clock()) * 1000))

    def power(h: FakeGpu) -> int:
        call(h, "power")
        return int(round(h.power_w(clock()) * 1000))

    def memory(h: FakeGpu) -> _Mem:
        call(h, "memory")
        return _Mem(h.mem_used, h.mem_total)

    def util(h: FakeGpu) -> _Util:
        call(h, "util")
        return _Util(87)

    def clock_info(h: FakeGpu, kind: int) -> int:
        call(h, "sm_clock")
        return 1980

    def temp(h: FakeGpu, kind: int) -> int:
        call(h, "temp")
        return 55

    def procs(h: FakeGpu) -> list[_Proc]:
        call(h, "procs")
        return [_Proc(pid, used) for pid, used in h.processes]

    def field_values(h: FakeGpu, ids: list[int]) -> list[_FieldValue]:
        call(h, "fields")
        out = []
        for fid in ids:
            if fid == NVML_FI_DEV_POWER_INSTANT and h.instant_power_w is not None:
                out.append(_FieldValue(0, int(round(h.instant_power_w(clock()) * 1000))))
            else:
                out.append(_FieldValue(NVML_ERROR_NOT_SUPPORTED, 0))
        return out

    def mig_mode(h: FakeGpu) -> list[int]:
        call(h, "mig")
        return [1 if h.mig_uuids else 0, 0]

    def mig_handle(h: FakeGpu, i: int) -> str:
        if i >= len(h.mig_uuids):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return h.mig_uuids[i]

    m.nvmlInit = nvmlInit
    m.nvmlDeviceGetFieldValues = field_values
    m.nvmlDeviceGetMigMode = mig_mode
    m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7
    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    m.nvmlDeviceGetCudaComputeCapability = lambda h: h.compute_capability
    m.nvmlShutdown = nvmlShutdown
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    m.nvmlDeviceGetUUID = lambda h: h if isinstance(h, str) else h.uuid  # MIG handles: the UUID
    m.nvmlDeviceGetName = lambda h: h.name
    m.nvmlSystemGetDriverVersion = lambda: "580.65.06"
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetMemoryInfo = memory
    m.nvmlDeviceGetUtilizationRates = util
    m.nvmlDeviceGetClockInfo = clock_info
    m.nvmlDeviceGetTemperature = temp
    m.nvmlDeviceGetComputeRunningProcesses = procs
    return m


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


NVML_ERROR_INVALID_ARGUMENT = 2


@dataclass
class FakePowerLimits:
    """One fake GPU's power-management limits (milliwatts, as NVML gives them), every value set,
    and scripted refusals: ``set_error(mw)`` gives the NVML error code a set to ``mw`` raises
    (NO_PERMISSION without root, NOT_SUPPORTED on boards without software limits), or None."""

    current_mw: int = 700_000
    default_mw: int = 700_000
    min_mw: int = 200_000
    max_mw: int = 700_000
    enforced_mw: int | None = None  # None: the current limit is the enforced one
    set_error: Callable[[int], int | None] | None = None
    read_error: int | None = None  # code every limit query raises, or None
    history: list[int] = field(default_factory=list)


def add_power_limits(m: types.ModuleType, limits: list[FakePowerLimits]) -> types.ModuleType:
    """Give a module made by ``make_module`` the power-limit functions, GPU ``i`` (by NVML
    index, the same order as the ``gpus`` given there) getting ``limits[i]``; returns it."""
    m.NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT

    def of(h: FakeGpu) -> FakePowerLimits:
        idx = next(i for i in range(m.nvmlDeviceGetCount()) if m.nvmlDeviceGetHandleByIndex(i) is h)
        lim = limits[idx]
        if lim.read_error is not None:
            raise NVMLError(lim.read_error)
        return lim

    def set_limit(h: FakeGpu, mw: int) -> None:
        lim = of(h)
        code = lim.set_error(mw) if lim.set_error is not None else None
        if code is not None:
            raise NVMLError(code)
        if not lim.min_mw <= mw <= lim.max_mw:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        lim.current_mw = mw
        lim.history.append(mw)

    def enforced(h: FakeGpu) -> int:
        lim = of(h)
        return lim.current_mw if lim.enforced_mw is None else lim.enforced_mw

    m.nvmlDeviceGetPowerManagementLimit = lambda h: of(h).current_mw
    m.nvmlDeviceGetPowerManagementDefaultLimit = lambda h: of(h).default_mw
    m.nvmlDeviceGetPowerManagementLimitConstraints = lambda h: [of(h).min_mw, of(h).max_mw]
    m.nvmlDeviceGetEnforcedPowerLimit = enforced
    m.nvmlDeviceSetPowerManagementLimit = set_limit
    return m
