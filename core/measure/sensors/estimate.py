"""A named, documented model of CPU and RAM power, used only where RAPL cannot measure.

Model ``wattlab-cpu-v2`` (v1 counted busy logical CPUs and had no cap, so a 128-thread part
could come out at over 1 kW):

    P_cpu(t) = idle_w_per_core * physical_cores + (active_w_per_core - idle_w_per_core) * busy(t)
    busy(t)  = the workload tree's measured CPU time per second, counted against physical cores
               and capped so that P_cpu never exceeds the CPU's TDP per socket x sockets
    P_ram(t) = ram_w_per_gb * rss_of_the_workload_tree(t) / 1e9

Why physical cores: on an SMT machine two busy sibling threads share one core's execution units
and draw far less than two cores; CPU time beyond one thread per core is not charged. The CPU
term is a counter (joules of busy time, converted interval by interval with a small carry for
the kernel's 10 ms CPU-time granularity) plus a constant floor, so its energy is exact with
respect to the measured CPU time at every boundary sample. Idle subtraction removes the floor.

Parameters:
- A CPU listed in ``resources/cpu_power.json``: ``active = TDP / physical cores`` (every core
  busy draws the rated power), ``idle = 0.25 * active`` (server packages idle near a quarter of
  TDP), cap = that TDP per socket.
- Otherwise ``active = 9 W``, ``idle = 1 W`` per physical core (RAPL on recent Xeons puts the
  marginal cost of a busy core between ~5 W, all cores loaded, and ~12 W, one core in turbo),
  capped at 250 W per socket, the top of mainstream server TDPs (Xeon Platinum 8480: 350 W,
  EPYC 7763: 280 W, Xeon Gold 6248: 150 W): an unknown 64-core part comes out at 250 W, not 576.
- RAM: ``ram_w_per_gb = 0.375``, i.e. 3 W per 8 GB of DDR3/DDR4 (Crucial's figure; CodeCarbon's
  model before v3) applied to the workload tree's resident memory. CodeCarbon 3 instead charges
  the whole machine 5 W per estimated DIMM: a static figure that idle subtraction removes
  entirely and that, in gross figures, would give this 24 GiB VM 20 W of "RAM" unrelated to the
  workload. We keep the workload's share and say it is an estimate.

All parameters are recorded with every run, and every joule this produces is ``estimated``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, SensorStatus
from wattlab.core.measure.sensors.process import ProcessSensor

MODEL_NAME = "wattlab-cpu-v2"
DEFAULT_ACTIVE_W = 9.0  # per physical core
DEFAULT_IDLE_W = 1.0
DEFAULT_TDP_PER_SOCKET_W = 250.0
IDLE_SHARE_OF_ACTIVE = 0.25
RAM_W_PER_GB = 0.375
CPU_TIME_GRANULARITY_S = 0.01  # USER_HZ: /proc reports CPU time in 10 ms ticks


@dataclass(frozen=True)
class PowerModel:
    name: str
    cpu_model: str
    logical_cpus: int
    physical_cores: int
    sockets: int
    active_w_per_core: float
    idle_w_per_core: float
    tdp_w_per_socket: float
    ram_w_per_gb: float
    source: str  # where active/idle/TDP came from: the table entry or "default"

    @property
    def idle_floor_w(self) -> float:
        return self.idle_w_per_core * self.physical_cores

    @property
    def max_busy_cores(self) -> float:
        """Busy cores the model charges at most: the physical cores, or fewer if the TDP cap
        is reached first."""
        dyn = self.active_w_per_core - self.idle_w_per_core
        headroom = self.tdp_w_per_socket * self.sockets - self.idle_floor_w
        return max(0.0, min(float(self.physical_cores), headroom / dyn if dyn > 0 else 0.0))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def describe_model(pm: dict[str, object]) -> str:
    """One line for reports, for this model and for runs stored with wattlab-cpu-v1."""
    if "active_w_per_core" in pm:
        return (
            f"{pm['name']}: {pm['active_w_per_core']:.2f} W busy / {pm['idle_w_per_core']:.2f} W "
            f"idle per physical core x {pm['physical_cores']}, capped at "
            f"{pm['tdp_w_per_socket']:.0f} W per socket x {pm['sockets']}, "
            f"{pm['ram_w_per_gb']} W/GB RAM ({pm['source']})"
        )
    return (
        f"{pm.get('name')}: {pm.get('active_w_per_cpu', 0):.2f} W busy / "
        f"{pm.get('idle_w_per_cpu', 0):.2f} W idle per logical CPU x {pm.get('logical_cpus')}, "
        f"{pm.get('ram_w_per_gb')} W/GB RAM ({pm.get('source')})"
    )


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def socket_count() -> int:
    """Distinct ``physical id`` values in /proc/cpuinfo (1 where the file does not say)."""
    try:
        ids = {
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("physical id")
        }
    except OSError:
        return 1
    return max(1, len(ids))


def _table() -> list[dict[str, object]]:
    from wattlab.resources import RESOURCES_DIR

    return json.loads((RESOURCES_DIR / "cpu_power.json").read_text())["cpus"]


def build_model(
    cpu_model: str | None = None,
    logical_cpus: int | None = None,
    physical_cores: int | None = None,
    sockets: int | None = None,
) -> PowerModel:
    cpu_model = cpu_model or cpu_model_name()
    logical_cpus = logical_cpus or psutil.cpu_count(logical=True) or 1
    physical_cores = physical_cores or psutil.cpu_count(logical=False) or logical_cpus
    sockets = sockets or socket_count()
    for entry in _table():
        if re.search(re.escape(str(entry["match"])), cpu_model):
            tdp = float(str(entry["tdp_w"]))
            active = tdp / float(str(entry["cores"]))
            return PowerModel(
                MODEL_NAME,
                cpu_model,
                logical_cpus,
                physical_cores,
                sockets,
                active,
                IDLE_SHARE_OF_ACTIVE * active,
                tdp,
                RAM_W_PER_GB,
                f"cpu_power.json: {entry['match']}",
            )
    return PowerModel(
        MODEL_NAME,
        cpu_model,
        logical_cpus,
        physical_cores,
        sockets,
        DEFAULT_ACTIVE_W,
        DEFAULT_IDLE_W,
        DEFAULT_TDP_PER_SOCKET_W,
        RAM_W_PER_GB,
        "default (CPU not in cpu_power.json)",
    )


class EstimateSensor:
    """Turns the process sensor's CPU time and RSS into estimated power. Must be read after the
    process sensor in the same tick (the sampler keeps sensor order)."""

    name = "estimate"

    def __init__(
        self,
        process: ProcessSensor,
        model: PowerModel,
        cpu: bool,
        ram: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.process = process
        self.model = model
        self.cpu = cpu
        self.ram = ram
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self._dynamic_j = 0.0
        # CPU time read but not yet charged: absorbs the 10 ms granularity of /proc, so a short
        # boundary interval that sees a whole tick is not cut at the core cap.
        self._carry_s = 0.0
        self._carry_max_s = 2 * CPU_TIME_GRANULARITY_S * model.logical_cpus

    def channels(self) -> list[EnergyChannel]:
        m = self.model
        out: list[EnergyChannel] = []
        method = describe_model(m.as_dict()) + "; busy time = the workload's measured CPU time"
        if self.cpu:
            out.append(
                EnergyChannel(
                    "cpu",
                    "est.cpu_dynamic_j",
                    "counter",
                    "estimated",
                    method,
                    update_period_s=CPU_TIME_GRANULARITY_S,
                )
            )
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

    def _charge(self, now: float, cpu_s: float) -> float:
        """Busy cores charged over the interval since the last read (for the live plot)."""
        if self._last is None or now <= self._last[0]:
            return 0.0
        dt = now - self._last[0]
        credit = self._carry_s + max(0.0, cpu_s - self._last[1])
        used = min(credit, self.model.max_busy_cores * dt)
        self._carry_s = min(credit - used, self._carry_max_s)
        m = self.model
        self._dynamic_j += (m.active_w_per_core - m.idle_w_per_core) * used
        return used / dt

    def read(self) -> Reading:
        m = self.model
        cpu_s = self.process.last_cpu_time_s
        now = self._clock()
        busy = self._charge(now, cpu_s)
        self._last = (now, cpu_s)
        out: Reading = {}
        if self.cpu:
            out["est.cpu_dynamic_j"] = self._dynamic_j
            out["est.cpu_floor_w"] = m.idle_floor_w
            # For live plots only; energy comes from the counter above.
            out["est.cpu_power_w"] = (
                m.idle_floor_w + (m.active_w_per_core - m.idle_w_per_core) * busy
            )
        if self.ram:
            rss = self.process.last_rss_bytes or 0.0
            out["est.ram_power_w"] = m.ram_w_per_gb * rss / 1e9
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
