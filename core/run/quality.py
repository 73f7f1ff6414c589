"""How trustworthy a measurement is, in one line: which sensors are live, how busy the machine is
with other work right now, and a badge per run or comparison.

Everything here is computed from what core already records (sensor discovery's statuses, a
result's ``contention`` and warnings, a comparison's verdicts), so the app shows it without any
rule of its own, and the same words appear wherever a badge is shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from wattlab.core.measure.sensors.base import SensorStatus
from wattlab.core.run.client import contention_text, share_text

# -- which sensors are live -----------------------------------------------------------------------


@dataclass(frozen=True)
class SensorState:
    """One part of the machine (CPU, RAM, GPU) and how its energy is obtained."""

    name: str  # "CPU", "RAM", "GPU"
    live: bool  # a hardware sensor reads it (measured or integrated), not a model
    label: str | None  # measured | integrated | estimated; None: not measured at all
    source: str | None  # "RAPL", "NVML", "estimate model"
    reason: str | None  # why the hardware sensor is not used (None when it is)
    short: str | None = None  # the reason in two words, for the one-line strip

    def text(self) -> str:
        """ "CPU: estimated (no RAPL)", "GPU: measured (NVML)", "GPU: none (no NVML)"."""
        how = self.label or "none"
        why = self.short or self.source
        return f"{self.name}: {how}" + (f" ({why})" if why else "")


def sensor_status(statuses: Sequence[SensorStatus]) -> list[SensorState]:
    """Discovery's per-sensor statuses as per-part states: what the user asks is "is my CPU
    measured?", not "is RAPL present?"."""
    by = {s.name: s for s in statuses}
    rapl, nvml, est = by.get("rapl"), by.get("nvml"), by.get("estimate")
    covers = set((est.details.get("covers") or []) if est and est.available else [])
    rapl_ok = bool(rapl and rapl.available)
    rapl_why = (rapl.reason if rapl else None) or "RAPL not probed"
    zones = " ".join((rapl.details.get("zones") or []) if rapl_ok and rapl else [])
    out = [
        _part("CPU", rapl_ok and "cpu" not in covers, "RAPL", "cpu" in covers, rapl_why, "no RAPL"),
        _part(
            "RAM",
            rapl_ok and "dram" in zones and "ram" not in covers,
            "RAPL",
            "ram" in covers,
            rapl_why if not rapl_ok else "RAPL has no readable DRAM zone on this machine",
            "no RAPL" if not rapl_ok else "no RAPL DRAM",
        ),
    ]
    out.append(_gpu_state(nvml))
    return out


def _part(
    name: str, measured: bool, source: str, estimated: bool, why: str, short: str
) -> SensorState:
    if measured:
        return SensorState(name, True, "measured", source, None)
    if estimated:
        return SensorState(name, False, "estimated", "estimate model", why, short)
    return SensorState(name, False, None, None, why, short)


def _gpu_state(nvml: SensorStatus | None) -> SensorState:
    """Measured when every visible GPU has the energy counter, integrated when one lacks it."""
    if nvml is None or not nvml.available:
        why = (nvml.reason if nvml else None) or "NVML not probed"
        return SensorState("GPU", False, None, None, why, "no NVML")
    gpus = nvml.details.get("gpus") or []
    name = f"GPU x{len(gpus)}" if len(gpus) > 1 else "GPU"
    if all(g.get("energy_counter") for g in gpus):
        return SensorState(name, True, "measured", "NVML", None)
    return SensorState(
        name,
        True,
        "integrated",
        "NVML",
        "a GPU has no total-energy counter (before Volta): its power samples are integrated",
        "NVML power only",
    )


def sensors_text(states: Iterable[SensorState]) -> str:
    """One line; CPU and RAM merge when they say the same ("CPU+RAM: estimated (no RAPL)")."""
    parts: list[SensorState] = list(states)
    cpu = next((s for s in parts if s.name == "CPU"), None)
    ram = next((s for s in parts if s.name == "RAM"), None)
    if cpu and ram and (cpu.label, cpu.short, cpu.source) == (ram.label, ram.short, ram.source):
        merged = SensorState("CPU+RAM", cpu.live, cpu.label, cpu.source, cpu.reason, cpu.short)
        parts = [merged if s is cpu else s for s in parts if s is not ram]
    return " · ".join(s.text() for s in parts)


def sensors_tooltip(states: Iterable[SensorState]) -> str:
    """Every part with the full reason its hardware sensor is not used."""
    lines = []
    for s in states:
        line = f"{s.name}: {s.label or 'not measured'}" + (f" by {s.source}" if s.source else "")
        lines.append(line + (f" - {s.reason}" if s.reason else ""))
    return "\n".join(lines)


def probe_sensor_status(
    powercap_root: Path | None = None,
    nvml_module: ModuleType | None = None,
    env: dict[str, str] | None = None,
) -> list[SensorState]:
    """Discover the sensors now (NVML's start-up can take a while: not on the GUI thread)."""
    from wattlab.core.measure.sensors import discover
    from wattlab.core.measure.sensors.rapl import DEFAULT_POWERCAP_ROOT

    found = discover(powercap_root or DEFAULT_POWERCAP_ROOT, nvml_module, env)
    try:
        return sensor_status(found.statuses)
    finally:
        found.close()


# -- other processes, right now -------------------------------------------------------------------


@dataclass(frozen=True)
class BackgroundLoad:
    """Work of processes outside this app and its workers, over the last ``window_s``."""

    cpu_share: float | None  # of all logical CPUs (1.0 = every CPU busy); None: unknown
    window_s: float
    gpu_other_procs: int | None = None  # compute processes of others on the GPUs
    gpu_util_pct: float | None = None  # busiest GPU none of ours runs on; None: unknown/ours

    def text(self) -> str:
        cpu = "-" if self.cpu_share is None else f"{100 * self.cpu_share:.0f}%"
        out = f"other processes: CPU {cpu}"
        if self.gpu_util_pct is not None:
            out += f", GPU {self.gpu_util_pct:.0f}%"
        if self.gpu_other_procs:
            out += f" ({self.gpu_other_procs} on the GPU)"
        return out

    @property
    def busy(self) -> bool:
        """Enough to disturb a run (the same threshold a measured phase is judged by)."""
        from wattlab.core.measure.meter import DISTURBED_CPU_SHARE

        return bool(
            (self.cpu_share is not None and self.cpu_share > DISTURBED_CPU_SHARE)
            or self.gpu_other_procs
        )


def own_tree_cpu_s() -> tuple[float, set[int]]:
    """CPU seconds of this process and every descendant (live ones, plus reaped children's
    totals, so a worker that exits between two samples is not mistaken for a neighbour)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    pids = {me.pid}
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.Error:
            continue
        total += ct.user + ct.system
        pids.add(child.pid)
    return total, pids


def _system_busy_s() -> float | None:
    # The same busy-time reading the sampler's contention check uses (sensors/process.py).
    from wattlab.core.measure.sensors.process import _system_cpu_seconds

    return _system_cpu_seconds()[0]


class LoadMeter:
    """Other processes' CPU share between consecutive ``sample`` calls: whole-machine busy CPU
    time less this app's own tree, as the measured phase's contention check computes it, but
    over the last few seconds. Cheap (no sleeping, no walk over every process), so it can run
    every few seconds while a run is measured without disturbing it."""

    def __init__(
        self,
        read_busy: Callable[[], float | None] = _system_busy_s,
        read_own: Callable[[], tuple[float, set[int]]] = own_tree_cpu_s,
        cpus: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        nvml: ModuleType | None = None,
        use_gpu: bool = True,
    ) -> None:
        self._read_busy, self._read_own, self._clock = read_busy, read_own, clock
        self.cpus = max(1, cpus or os.cpu_count() or 1)
        self._last: tuple[float, float, float] | None = None
        self._nvml = nvml
        self._use_gpu = use_gpu
        self._nvml_ready = False

    def sample(self) -> BackgroundLoad | None:
        """None on the first call (it only starts the window) or when /proc cannot be read."""
        now, busy = self._clock(), self._read_busy()
        own, pids = self._read_own()
        if busy is None:
            self._last = None
            return None
        last, self._last = self._last, (now, busy, own)
        if last is None or now <= last[0]:
            return None
        window = now - last[0]
        other = max(0.0, (busy - last[1]) - max(0.0, own - last[2]))
        share = min(1.0, other / (window * self.cpus))
        procs, util = self._gpu(pids)
        return BackgroundLoad(share, window, procs, util)

    def _gpu(self, own_pids: set[int]) -> tuple[int | None, float | None]:
        nv = self._open_nvml()
        if nv is None:
            return None, None
        return gpu_load(nv, own_pids)

    def _open_nvml(self) -> ModuleType | None:
        """NVML, initialised once on first use (in the caller's thread); None without it."""
        if not self._use_gpu:
            return None
        if not self._nvml_ready:
            self._nvml_ready = True
            try:
                if self._nvml is None:
                    from wattlab.core.measure.sensors.nvml import import_pynvml

                    self._nvml = import_pynvml()
                self._nvml.nvmlInit()
            except Exception:  # noqa: BLE001 - no library, no driver: no GPU figures
                self._nvml, self._use_gpu = None, False
        return self._nvml

    def close(self) -> None:
        if self._nvml is not None and self._nvml_ready:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._nvml, self._nvml_ready = None, False


def gpu_load(nvml: ModuleType, own_pids: set[int]) -> tuple[int | None, float | None]:
    """(compute processes of others on any GPU, utilisation of the busiest GPU that none of
    ours runs on). Utilisation is per device: on a GPU our worker uses it would be ours."""
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - NVML errors: unknown, not zero
        return None, None
    others: int | None = 0
    util: float | None = None
    for h in handles:
        try:
            pids = {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)}
        except Exception:  # noqa: BLE001 - older drivers cannot list processes
            pids = None
            others = None
        if pids is not None and others is not None:
            others += len(pids - own_pids)
        if pids is not None and not (pids & own_pids):
            try:
                u = float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:  # noqa: BLE001
                continue
            util = u if util is None else max(util, u)
    return others, util


# -- a badge per run and per comparison -----------------------------------------------------------

# Badges from the most to the least serious: a run shows the first that applies, and its reason
# lists every problem found.
SEVERITY = (
    "failed",
    "interrupted",
    "cancelled",
    "disturbed",
    "too short",
    "too few repeats",
    "no energy",
    "clean",
)
# What EnergyAccumulator.window_warnings writes when a measured phase spans fewer updates of a
# sensor than it needs (tests/test_quality.py builds that warning to keep the two in step).
SHORT_WINDOW_MARK = "updates of its sensor"
DISTURBED_MARK = "disturbed run:"


@dataclass(frozen=True)
class Badge:
    kind: str  # one of SEVERITY
    text: str  # what the badge says
    reason: str  # why, in a sentence or two (the tooltip)
    problems: tuple[str, ...] = ()  # every problem found, most serious first

    @property
    def clean(self) -> bool:
        return self.kind == "clean"


def _badge(problems: list[tuple[str, str]], clean_reason: str) -> Badge:
    if not problems:
        return Badge("clean", "clean", clean_reason)
    problems.sort(key=lambda p: SEVERITY.index(p[0]))
    kind = problems[0][0]
    reasons = tuple(dict.fromkeys(r for _, r in problems))
    return Badge(kind, kind, "; ".join(reasons), reasons)


def _status_problem(status: str, message: str | None) -> tuple[str, str] | None:
    if status in ("completed", "running"):
        return None
    kind = status if status in SEVERITY else "failed"
    what = {
        "cancelled": "stopped before the end: its figures cover only the work done",
        "interrupted": "the process recording it ended before it finished",
    }.get(status, "the run failed")
    return kind, f"{status}: {message}" if message else f"{status}: {what}"


def short_window_warnings(result: Mapping[str, Any]) -> list[str]:
    return [w for w in result.get("warnings") or [] if SHORT_WINDOW_MARK in str(w)]


def run_badge(result: Mapping[str, Any] | None) -> Badge:
    """A stored run's badge: failed/cancelled, disturbed by other processes, a measured phase
    too short for its sensors, no energy figure, or clean."""
    if not result:
        return Badge("no energy", "no result", "this run has no stored result")
    problems: list[tuple[str, str]] = []
    status = _status_problem(str(result.get("status", "completed")), result.get("message"))
    if status is not None:
        problems.append(status)
    cont = result.get("contention")
    if isinstance(cont, Mapping) and cont.get("disturbed"):
        said = [w for w in result.get("warnings") or [] if str(w).startswith(DISTURBED_MARK)]
        problems.append(
            ("disturbed", said[0] if said else "disturbed run: " + contention_text(cont))
        )
    problems += [("too short", w) for w in short_window_warnings(result)]
    if not isinstance(result.get("total"), Mapping) and not result.get("measured_phase"):
        problems.append(("no energy", "no energy figure was stored for this run"))
    if isinstance(cont, Mapping):
        clean = (
            f"other processes used {share_text(cont.get('other_cpu_share'))} of the CPUs "
            "during the measured phase, and every sensor updated often enough"
        )
    else:
        clean = "no problem recorded (this run did not record other processes' load)"
    return _badge(problems, clean)


def comparison_badge(
    comp: Mapping[str, Any], runs: Mapping[int, Mapping[str, Any]] | None = None
) -> Badge:
    """A comparison's badge: cancelled, disturbed runs in the verdict, runs too short (when
    their ``runs`` results are given), too few pairs for a verdict, or clean."""
    from wattlab.core.results import Comparison
    from wattlab.core.run.stats import MIN_PAIRS, primary_metric

    problems: list[tuple[str, str]] = []
    pairs, planned = int(comp.get("pairs_completed") or 0), comp.get("repeats")
    if comp.get("status") == "cancelled":
        problems.append(("cancelled", f"stopped after {pairs} of {planned or '?'} pairs"))
    counted = _counted_runs(comp)
    disturbed = [e for e in counted if e.get("disturbed") or _is_disturbed(e)]
    if disturbed:
        problems.append(
            (
                "disturbed",
                f"{len(disturbed)} of the {len(counted)} runs in the verdict were disturbed by "
                "other processes",
            )
        )
    for e in counted:
        rid = e.get("run_id")
        res = runs.get(rid) if runs is not None and isinstance(rid, int) else None
        short = short_window_warnings(res) if res is not None else []
        if short:
            problems.append(("too short", f"run {rid}: {short[0]}"))
    primary = primary_metric(Comparison.from_dict(dict(comp)).verdicts)
    if primary is not None and primary.verdict == "too few repeats":
        problems.append(
            (
                "too few repeats",
                f"{primary.pairs} pair(s): a verdict needs at least {MIN_PAIRS}",
            )
        )
    clean = (
        f"{pairs} pairs, none of the runs in the verdict disturbed by other processes"
        if counted
        else f"{pairs} pairs"
    )
    return _badge(problems, clean)


def _counted_runs(comp: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-run entries the verdict used: a pair replaced by its re-run no longer counts."""
    return [
        e
        for e in comp.get("per_run") or []
        if isinstance(e, Mapping) and e.get("replaced_by_pair") is None
    ]


def _is_disturbed(entry: Mapping[str, Any]) -> bool:
    c = entry.get("contention")
    return bool(isinstance(c, Mapping) and c.get("disturbed"))


def is_comparison(result: Mapping[str, Any]) -> bool:
    return "verdicts" in result or "comparison_id" in result


def badge_for(result: Mapping[str, Any]) -> Badge:
    """Either kind of stored result."""
    return comparison_badge(result) if is_comparison(result) else run_badge(result)
