"""CPU time and memory of the workload's process tree, and system CPU utilisation (psutil).

CPU time is the sum of what every member of the tree last reported, keyed by (pid, start
time): a child that exits keeps the time it had at its last sample and is never counted twice
(psutil's ``children_user`` would count reaped children again). The profiler adds the exact
figure from ``getrusage(RUSAGE_CHILDREN)`` once the workload exits, which also covers the
last fraction of a tick before each exit.
"""

from __future__ import annotations

import os
import time

import psutil

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, SensorStatus
from wattlab.core.measure.sensors.proctree import ProcessTree

MEMORY_PERIOD_S = 5.0  # system memory in use (a context figure): read at most this often


class ProcessSensor:
    name = "process"

    def __init__(self, tree: ProcessTree) -> None:
        self.tree = tree
        self._cpu_seen: dict[tuple[int, float], float] = {}
        self._exited_cpu_s: float | None = None
        self.last_cpu_time_s: float = 0.0
        self.last_rss_bytes: float | None = None
        # Utilisation comes from the /proc/stat read the contention figures need anyway (one
        # read per tick, not two), and system memory, which no figure needs at 10 Hz, is read
        # at most every MEMORY_PERIOD_S: the sampler now runs inside users' processes.
        self._last_stat: tuple[float, float] | None = None  # (all CPU-seconds, busy)
        self._mem_used: tuple[float, float] | None = None  # (monotonic time read, bytes)

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
            member = _member_usage(p)
            if member is None:
                continue
            key, cpu_s, rss = member
            self._cpu_seen[key] = cpu_s
            rss_total += rss
            live += 1
        cpu = sum(self._cpu_seen.values())
        if self._exited_cpu_s is not None:
            cpu = max(cpu, self._exited_cpu_s)
        self.last_cpu_time_s = cpu
        self.last_rss_bytes = rss_total if live else None
        busy_s, steal_s, all_s = _system_cpu_seconds()
        return {
            # Cumulative, whole machine: with the tree's CPU time they give other processes'
            # CPU use over any window (contention), and the hypervisor's steal.
            "sys.busy_cpu_s": busy_s,
            "self.cpu_time_s": _own_cpu_seconds(),
            "sys.steal_cpu_s": steal_s,
            "proc.cpu_time_s": cpu,
            "proc.rss_bytes": self.last_rss_bytes,
            "proc.count": float(live),
            "sys.cpu_util_pct": self._util_pct(all_s, busy_s),
            "sys.mem_used_bytes": self._memory_used(),
        }

    def _util_pct(self, all_s: float | None, busy_s: float | None) -> float | None:
        """Busy share of every CPU since the previous tick (what psutil.cpu_percent gives,
        from the same counters); None on the first tick and where /proc/stat is unreadable."""
        if all_s is None or busy_s is None:
            return None
        prev, self._last_stat = self._last_stat, (all_s, busy_s)
        if prev is None or all_s <= prev[0]:
            return None
        return 100.0 * max(0.0, busy_s - prev[1]) / (all_s - prev[0])

    def _memory_used(self) -> float | None:
        now = time.monotonic()
        if self._mem_used is None or now - self._mem_used[0] >= MEMORY_PERIOD_S:
            try:
                vm = psutil.virtual_memory()
            except (OSError, psutil.Error):
                return None
            self._mem_used = (now, float(vm.total - vm.available))
        return self._mem_used[1]

    def close(self) -> None:
        pass


_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _member_usage(p: psutil.Process) -> tuple[tuple[int, float], float, float] | None:
    """((pid, start), CPU-seconds, RSS bytes) of one tree member, None once it is gone. On
    Linux one read of /proc/PID/stat gives all three: psutil's two reads and their Python
    layers cost ten times more per tick, and the sampler now runs inside users' processes."""
    try:
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # Fields after "(comm)": state is [0], utime [11], stime [12], starttime [19], rss [21].
        cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
        return (p.pid, float(int(fields[19]))), cpu_s, float(int(fields[21]) * _PAGE_BYTES)
    except (OSError, IndexError, ValueError):
        pass
    try:  # not Linux, or /proc unreadable: psutil's portable reads
        with p.oneshot():
            ct = p.cpu_times()
            return (p.pid, p.create_time()), ct.user + ct.system, float(p.memory_info().rss)
    except psutil.Error:
        return None


def _own_cpu_seconds() -> float:
    """CPU time of the measuring process itself (sampler, event reader, GUI): not contention."""
    t = os.times()
    return t.user + t.system


def _system_cpu_seconds() -> tuple[float | None, float | None, float | None]:
    """Busy CPU-seconds of every process on the machine since boot (user + system + irq...,
    not idle, iowait or steal), the steal time, and all CPU-seconds (busy, idle and steal:
    the denominator of utilisation), from /proc/stat through psutil."""
    try:
        t = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None, None, None
    steal = float(getattr(t, "steal", 0.0) or 0.0)
    idle = t.idle + float(getattr(t, "iowait", 0.0) or 0.0)
    # guest time is already counted in user on Linux; sum() of the tuple would count it twice.
    total = (
        sum(t)
        - float(getattr(t, "guest", 0.0) or 0.0)
        - float(getattr(t, "guest_nice", 0.0) or 0.0)
    )
    return total - idle - steal, steal, total


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
