"""CPU time and memory of the workload's process tree, and system CPU utilisation (psutil).

CPU time is the sum of what every member of the tree last reported, keyed by (pid, start
time): a child that exits keeps the time it had at its last sample and is never counted twice
(psutil's ``children_user`` would count reaped children again). The profiler adds the exact
figure from ``getrusage(RUSAGE_CHILDREN)`` once the workload exits, which also covers the
last fraction of a tick before each exit.
"""

from __future__ import annotations

import os

import psutil

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, SensorStatus
from wattlab.core.measure.sensors.proctree import ProcessTree


class ProcessSensor:
    name = "process"

    def __init__(self, tree: ProcessTree) -> None:
        self.tree = tree
        self._cpu_seen: dict[tuple[int, float], float] = {}
        self._exited_cpu_s: float | None = None
        self.last_cpu_time_s: float = 0.0
        self.last_rss_bytes: float | None = None
        psutil.cpu_percent(None)  # prime: the first call always returns 0.0

    def set_target(self, pid: int | None) -> None:
        self.tree.set_root(pid)

    def set_exited_cpu_time(self, cpu_time_s: float) -> None:
        """The workload's exact CPU time from the kernel, once it has been reaped."""
        self._exited_cpu_s = cpu_time_s

    def channels(self) -> list[EnergyChannel]:
        return []

    def read(self) -> Reading:
        rss_total = 0.0
        live = 0
        for p in self.tree.refresh():
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    rss = p.memory_info().rss
                    key = (p.pid, p.create_time())
            except psutil.Error:
                continue
            self._cpu_seen[key] = ct.user + ct.system
            rss_total += rss
            live += 1
        cpu = sum(self._cpu_seen.values())
        if self._exited_cpu_s is not None:
            cpu = max(cpu, self._exited_cpu_s)
        self.last_cpu_time_s = cpu
        self.last_rss_bytes = rss_total if live else None
        vm = psutil.virtual_memory()
        busy_s, steal_s = _system_cpu_seconds()
        return {
            # Cumulative, whole machine: with the tree's CPU time they give other processes'
            # CPU use over any window (contention), and the hypervisor's steal.
            "sys.busy_cpu_s": busy_s,
            "self.cpu_time_s": _own_cpu_seconds(),
            "sys.steal_cpu_s": steal_s,
            "proc.cpu_time_s": cpu,
            "proc.rss_bytes": self.last_rss_bytes,
            "proc.count": float(live),
            "sys.cpu_util_pct": psutil.cpu_percent(None),
            "sys.mem_used_bytes": float(vm.total - vm.available),
        }

    def close(self) -> None:
        pass


def _own_cpu_seconds() -> float:
    """CPU time of the measuring process itself (sampler, event reader, GUI): not contention."""
    t = os.times()
    return t.user + t.system


def _system_cpu_seconds() -> tuple[float | None, float | None]:
    """Busy CPU-seconds of every process on the machine since boot (user + system + irq...,
    not idle, iowait or steal), and the steal time, from /proc/stat through psutil."""
    try:
        t = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None, None
    steal = float(getattr(t, "steal", 0.0) or 0.0)
    idle = t.idle + float(getattr(t, "iowait", 0.0) or 0.0)
    # guest time is already counted in user on Linux; sum() of the tuple would count it twice.
    total = (
        sum(t)
        - float(getattr(t, "guest", 0.0) or 0.0)
        - float(getattr(t, "guest_nice", 0.0) or 0.0)
    )
    return total - idle - steal, steal


def probe_process(tree: ProcessTree) -> tuple[ProcessSensor, SensorStatus]:
    return ProcessSensor(tree), SensorStatus(
        "process",
        True,
        None,
        {
            "logical_cpus": psutil.cpu_count(logical=True),
            "physical_cpus": psutil.cpu_count(logical=False),
            "mem_total_bytes": psutil.virtual_memory().total,
        },
    )
