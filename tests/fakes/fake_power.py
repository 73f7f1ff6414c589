"""Sensors of known, constant power, and sensor sets built from them, for exporter and node tests.

``ConstantPowerSensor``'s energy counter is exactly ``watts x`` the seconds elapsed on its clock,
so a test can assert joules over any window; ``fake_gpu_set`` does the same through the fake
pynvml module (so the exporter's NVML and DCGM paths are exercised).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.fakes.fake_pynvml import FakeGpu, make_module
from wattlab.core.measure.sensors import SensorSet
from wattlab.core.measure.sensors.base import EnergyChannel, Label, Reading, Sensor
from wattlab.core.measure.sensors.nvml import probe_nvml
from wattlab.core.measure.sensors.process import probe_process
from wattlab.core.measure.sensors.proctree import ProcessTree


class ConstantPowerSensor:
    """One source drawing ``watts`` all the time, read as a cumulative joule counter."""

    name = "fake-power"

    def __init__(
        self,
        source: str = "cpu",
        watts: float = 50.0,
        label: Label = "measured",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source, self.watts, self.label, self._clock = source, watts, label, clock
        self._t0 = clock()
        self.key = f"fake.{source}.energy_j"

    def channels(self) -> list[EnergyChannel]:
        return [
            EnergyChannel(
                self.source, self.key, "counter", self.label, f"constant {self.watts:g} W (fake)"
            )
        ]

    def read(self) -> Reading:
        return {self.key: self.watts * (self._clock() - self._t0)}

    def close(self) -> None:
        pass


def sensor_set(*sensors: Sensor) -> SensorSet:
    """A SensorSet of ``sensors`` plus the process sensor every set has (on an empty tree)."""
    tree = ProcessTree()
    proc, pst = probe_process(tree)
    return SensorSet([*sensors, proc], [pst], proc, tree)


def fake_gpu_set(watts: float = 100.0, uuid: str = "GPU-fake-0") -> SensorSet:
    """One fake NVIDIA GPU drawing ``watts``, its NVML energy counter the exact integral."""
    tree = ProcessTree()
    gpu = FakeGpu(uuid=uuid, power_w=lambda t: watts, energy_j=lambda t: watts * t)
    nv, st = probe_nvml(tree, nvml=make_module([gpu], clock=time.monotonic), env={})
    assert nv is not None, st.reason
    proc, pst = probe_process(tree)
    return SensorSet([nv, proc], [st, pst], proc, tree)
