"""``wattlab profile -- CMD``: measure any command from outside, the way a user would time it.

The command runs as our child so the kernel's ``getrusage(RUSAGE_CHILDREN)`` gives its exact
CPU time and peak RSS once reaped; the sampler adds energy, power and the time series. Ctrl-C
or SIGTERM is forwarded to the command and the run is kept as ``cancelled`` with what was
measured.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattlab.core.measure.meter import Measurement, MeasureSettings
from wattlab.core.measure.sensors import SensorSet
from wattlab.core.measure.store import RunStore


class CommandNotFound(Exception):
    pass


@dataclass
class ProfileOutcome:
    exit_code: int
    result: dict


def _children_usage() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024  # Linux reports KiB


def _peak(ring_vals: np.ndarray) -> float | None:
    finite = ring_vals[np.isfinite(ring_vals)]
    return float(finite.max()) if finite.size else None


def profile_command(
    cmd: list[str],
    store: RunStore,
    settings: MeasureSettings,
    label: str | None = None,
    sensors: SensorSet | None = None,
) -> ProfileOutcome:
    if not cmd:
        raise ValueError("no command given: use `wattlab profile -- CMD ARGS...`")
    spec = {"command": cmd, "interval_s": settings.interval_s, "idle_s": settings.idle_s}
    m = Measurement(store, "profile", spec, label or Path(cmd[0]).name, settings, sensors)
    cancelled = False
    with m:
        cpu0, _ = _children_usage()
        try:
            proc = subprocess.Popen(cmd)
        except FileNotFoundError as exc:
            m.finish("failed", message=f"command not found: {cmd[0]}")
            raise CommandNotFound(cmd[0]) from exc
        except PermissionError as exc:
            m.finish("failed", message=f"permission denied: {cmd[0]}")
            raise CommandNotFound(f"{cmd[0]} (permission denied)") from exc
        m.attach(proc.pid)

        def forward(signum: int, _frame: object) -> None:
            nonlocal cancelled
            cancelled = True
            proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        cpu1, maxrss = _children_usage()
        m.sensors.process.set_exited_cpu_time(cpu1 - cpu0)
        _, rss = m.sampler.ring.series("proc.rss_bytes")
        sampled_peak = _peak(rss)
        extra = {
            "command": cmd,
            "exit_code": code,
            "cpu_time_s": cpu1 - cpu0,
            # ru_maxrss is the largest single child; the sampled figure sums the live tree.
            "peak_rss_bytes": max(x for x in (sampled_peak, float(maxrss)) if x is not None),
        }
        m.scope_to_process_tree()
        status = "cancelled" if cancelled else ("completed" if code == 0 else "failed")
        result = m.finish(
            status, extra, message=None if code == 0 else f"command exited with code {code}"
        )
    return ProfileOutcome(code if code >= 0 else 128 - code, result)
