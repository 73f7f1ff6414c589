"""Sensor discovery: which sources this machine has, and why the others are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from wattlab.core.measure.sensors.base import EnergyChannel, Sensor, SensorStatus
from wattlab.core.measure.sensors.estimate import PowerModel, probe_estimate
from wattlab.core.measure.sensors.nvml import probe_nvml
from wattlab.core.measure.sensors.process import ProcessSensor, probe_process
from wattlab.core.measure.sensors.proctree import ProcessTree
from wattlab.core.measure.sensors.rapl import DEFAULT_POWERCAP_ROOT, probe_rapl


@dataclass
class SensorSet:
    """Everything a run samples, in reading order (process before estimate)."""

    sensors: list[Sensor]
    statuses: list[SensorStatus]
    process: ProcessSensor
    tree: ProcessTree
    power_model: PowerModel | None = None

    def channels(self) -> list[EnergyChannel]:
        return [c for s in self.sensors for c in s.channels()]

    def set_target(self, pid: int | None) -> None:
        self.tree.set_root(pid)

    def gpu_source_for_uuid(self, uuid: str) -> str | None:
        """The GPU source (gpu0...) that CUDA device ``uuid`` runs on, where NVML can tell."""
        from wattlab.core.measure.sensors.nvml import NvmlSensor

        for s in self.sensors:
            if isinstance(s, NvmlSensor):
                return s.source_for_uuid(uuid)
        return None

    def gpu_sources(self) -> list[str]:
        return sorted({c.source for c in self.channels() if c.source.startswith("gpu")})

    def close(self) -> None:
        for s in self.sensors:
            s.close()


def discover(
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
    nvml_module: ModuleType | None = None,
    env: dict[str, str] | None = None,
    power_model: PowerModel | None = None,
) -> SensorSet:
    tree = ProcessTree()
    sensors: list[Sensor] = []
    statuses: list[SensorStatus] = []

    gpu, st = probe_nvml(tree, nvml_module, env)
    statuses.append(st)
    if gpu is not None:
        sensors.append(gpu)

    rapl, st = probe_rapl(powercap_root)
    statuses.append(st)
    if rapl is not None:
        sensors.append(rapl)

    proc, st = probe_process(tree)
    statuses.append(st)
    sensors.append(proc)

    est, st = probe_estimate(
        proc, cpu=rapl is None, ram=rapl is None or not rapl.has_dram, model=power_model
    )
    statuses.append(st)
    if est is not None:
        sensors.append(est)
    model = est.model if est is not None else None
    return SensorSet(sensors, statuses, proc, tree, model)


__all__ = ["SensorSet", "SensorStatus", "EnergyChannel", "discover"]
