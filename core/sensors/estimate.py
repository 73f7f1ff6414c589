"""A named, documented model of CPU and RAM power, used only where RAPL cannot measure.

Model ``wattlab-cpu-v1``:

    P_cpu(t) = idle_w_per_cpu * logical_cpus + (active_w_per_cpu - idle_w_per_cpu) * busy(t)
    P_ram(t) = ram_w_per_gb * rss_of_the_workload_tree(t) / 1e9

where ``busy(t)`` is the workload tree's measured CPU time per second (1.0 = one logical CPU
fully busy). The CPU term is emitted as a counter (``(active - idle) * cpu_time_s``) plus a
constant floor, so its energy is exact with respect to the measured CPU time rather than smeared
by sampling. Idle-baseline subtraction then removes the floor and leaves the workload's share.

Parameters:
- A CPU listed in ``resources/cpu_power.json``: ``active = TDP / threads`` (every thread busy
  draws the rated power) and ``idle = 0.25 * active`` (server packages idle near a quarter of
  TDP).
- Otherwise the defaults ``active = 9 W``, ``idle = 1 W`` per logical CPU, so a busy logical CPU
  costs 8 W over idle. Why: RAPL measurements on recent Xeons put the marginal cost of one busy
  core between ~5 W (all cores loaded, 150 W 20-core part) and ~12 W (a single core in turbo);
  8 W sits between. CodeCarbon's fallback on an unknown Xeon charges ~1.7 W for a fully busy
  core, which understates a CPU-bound workload several-fold on a small VM like our CI's.
- ``ram_w_per_gb = 0.375``: 3 W per 8 GB DIMM, the figure CodeCarbon also uses.

All three are recorded with every run, and every joule this produces is labelled ``estimated``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from .base import EnergyChannel, Reading, SensorStatus
from .process import ProcessSensor

MODEL_NAME = "wattlab-cpu-v1"
DEFAULT_ACTIVE_W = 9.0
DEFAULT_IDLE_W = 1.0
RAM_W_PER_GB = 0.375


@dataclass(frozen=True)
class PowerModel:
    name: str
    cpu_model: str
    logical_cpus: int
    active_w_per_cpu: float
    idle_w_per_cpu: float
    ram_w_per_gb: float
    source: str  # where active/idle came from: the table entry or "default"

    @property
    def idle_floor_w(self) -> float:
        return self.idle_w_per_cpu * self.logical_cpus

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _table() -> list[dict[str, object]]:
    from wattlab.resources import RESOURCES_DIR

    return json.loads((RESOURCES_DIR / "cpu_power.json").read_text())["cpus"]


def build_model(cpu_model: str | None = None, logical_cpus: int | None = None) -> PowerModel:
    cpu_model = cpu_model or cpu_model_name()
    logical_cpus = logical_cpus or psutil.cpu_count(logical=True) or 1
    for entry in _table():
        if re.search(re.escape(str(entry["match"])), cpu_model):
            active = float(entry["tdp_w"]) / float(entry["threads"])
            return PowerModel(
                MODEL_NAME,
                cpu_model,
                logical_cpus,
                active,
                0.25 * active,
                RAM_W_PER_GB,
                f"cpu_power.json: {entry['match']}",
            )
    return PowerModel(
        MODEL_NAME,
        cpu_model,
        logical_cpus,
        DEFAULT_ACTIVE_W,
        DEFAULT_IDLE_W,
        RAM_W_PER_GB,
        "default (CPU not in cpu_power.json)",
    )


class EstimateSensor:
    """Turns the process sensor's CPU time and RSS into estimated power. Must be read after the
    process sensor in the same tick (the sampler keeps sensor order)."""

    name = "estimate"

    def __init__(self, process: ProcessSensor, model: PowerModel, cpu: bool, ram: bool) -> None:
        self.process = process
        self.model = model
        self.cpu = cpu
        self.ram = ram
        self._last: tuple[float, float] | None = None

    def channels(self) -> list[EnergyChannel]:
        m = self.model
        out: list[EnergyChannel] = []
        method = (
            f"{m.name}: {m.active_w_per_cpu:.2f} W busy / {m.idle_w_per_cpu:.2f} W idle "
            f"per logical CPU x {m.logical_cpus}, busy time = the workload's measured "
            f"CPU time ({m.source})"
        )
        if self.cpu:
            out.append(EnergyChannel("cpu", "est.cpu_dynamic_j", "counter", "estimated", method))
            out.append(EnergyChannel("cpu", "est.cpu_floor_w", "power", "estimated", method))
        if self.ram:
            out.append(
                EnergyChannel(
                    "ram",
                    "est.ram_power_w",
                    "power",
                    "estimated",
                    f"{m.name}: {m.ram_w_per_gb} W/GB x workload RSS",
                )
            )
        return out

    def read(self) -> Reading:
        import time

        m = self.model
        cpu_s = self.process.last_cpu_time_s
        now = time.monotonic()
        out: Reading = {}
        if self.cpu:
            busy = 0.0
            if self._last is not None and now > self._last[0]:
                busy = max(0.0, (cpu_s - self._last[1]) / (now - self._last[0]))
            out["est.cpu_dynamic_j"] = (m.active_w_per_cpu - m.idle_w_per_cpu) * cpu_s
            out["est.cpu_floor_w"] = m.idle_floor_w
            # For live plots only; energy comes from the counter above.
            out["est.cpu_power_w"] = m.idle_floor_w + (m.active_w_per_cpu - m.idle_w_per_cpu) * busy
        if self.ram:
            rss = self.process.last_rss_bytes or 0.0
            out["est.ram_power_w"] = m.ram_w_per_gb * rss / 1e9
        self._last = (now, cpu_s)
        return out

    def close(self) -> None:
        pass


def probe_estimate(
    process: ProcessSensor, cpu: bool, ram: bool, model: PowerModel | None = None
) -> tuple[EstimateSensor | None, SensorStatus]:
    model = model or build_model()
    if not cpu and not ram:
        return None, SensorStatus(
            "estimate", False, "not needed: RAPL measures both CPU package and DRAM"
        )
    covers = [x for x, on in (("cpu", cpu), ("ram", ram)) if on]
    return EstimateSensor(process, model, cpu, ram), SensorStatus(
        "estimate", True, None, {"covers": covers, "model": model.as_dict()}
    )
