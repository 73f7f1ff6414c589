"""``wattlab profile -- CMD``: measure any command from outside, the way a user would time it.

The command runs as our child so the kernel's ``getrusage(RUSAGE_CHILDREN)`` gives its exact
CPU time and peak RSS once reaped; the sampler adds energy, power and the time series. Ctrl-C
or SIGTERM is forwarded to the command and the run is kept as ``cancelled`` with what was
measured.

Shell conventions: a command that does not exist is refused with exit code 127, one that exists
but cannot be executed with 126, both before any idle baseline or stored run.

Markers: the command inherits one end of a socket pair named in its environment
(``core.markers``). A script that uses ``wattlab.track`` (or the Hugging Face callback) sends its
phases, steps and metrics there instead of measuring itself; they are marked in this run at the
script's own timestamps, and the result gets ``markers``, ``phase_energy`` and energy per item
over the marked work (``run.marked``). A command that sends nothing is measured as before.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattlab.core import markers
from wattlab.core.measure.meter import Measurement, MeasureSettings
from wattlab.core.measure.sensors import SensorSet
from wattlab.core.measure.store import RunStore
from wattlab.core.run.marked import add_marked_figures


class CommandNotFound(Exception):
    """Nothing by that name exists (a shell's 127)."""


class CommandNotExecutable(Exception):
    """It exists but cannot be run: no execute permission, a folder (a shell's 126)."""


def check_command(name: str) -> None:
    """Find ``name`` the way a shell would, and refuse it before anything is measured: with a
    slash it is a path, otherwise it is looked up on PATH, where a file that exists but is not
    executable is "permission denied", not "not found"."""
    if "/" in name or (os.altsep and os.altsep in name):
        _check_executable(Path(name))
        return
    if shutil.which(name):
        return
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(folder or ".") / name
        if candidate.is_file():
            _check_executable(candidate)
    raise CommandNotFound(name)


def _check_executable(path: Path) -> None:
    if not path.exists():
        raise CommandNotFound(str(path))
    if path.is_dir():
        raise CommandNotExecutable(f"{path} (it is a folder)")
    if not os.access(path, os.X_OK):
        raise CommandNotExecutable(f"{path} (permission denied)")


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
        proc, listener = _start(cmd, m)

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
            listener.stop()
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
            # what the command's script marked (all empty when it sent nothing)
            "markers": listener.reader.tally.to_dict(),
        }
        m.scope_to_process_tree()
        status = "cancelled" if cancelled else ("completed" if code == 0 else "failed")
        message = None if code == 0 else f"command exited with code {code}"
        result = m.finish(status, extra, message)
        tally = listener.reader.tally
        if tally.events:
            interval = settings.interval_s
            add_marked_figures(
                result, tally, lambda d: m.sampler.energy.window_warnings(d, interval)
            )
            store.finish_run(m.run_id, status, result, message)
    return ProfileOutcome(code if code >= 0 else 128 - code, result)


def _start(cmd: list[str], m: Measurement) -> tuple[subprocess.Popen, markers.MarkerListener]:
    """Start the command with its end of the marker socket, attach the measurement to it, and
    listen. A command that cannot start ends the run as failed (127/126 in the CLI)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), env=markers.child_env(theirs))
    except FileNotFoundError as exc:
        ours.close()
        m.finish("failed", message=f"command not found: {cmd[0]}")
        raise CommandNotFound(cmd[0]) from exc
    except OSError as exc:  # permission denied, exec format error, ...
        ours.close()
        m.finish("failed", message=f"cannot execute {cmd[0]}: {exc.strerror or exc}")
        raise CommandNotExecutable(f"{cmd[0]} ({exc.strerror or exc})") from exc
    finally:
        theirs.close()  # the command holds its own copy: EOF comes when it (and its heirs) exit
    m.attach(proc.pid, phase=markers.COMMAND_PHASE)
    started = m.work_started if m.work_started is not None else time.monotonic()

    def on_phase(name: str, t: float | None) -> None:
        m.phase(name, _plausible(t, started))

    def on_metric(name: str, value: markers.MetricValue, t: float | None) -> None:
        stamp = _plausible(t, started) or time.monotonic()
        m.store.add_event(m.run_id, stamp, markers.METRIC, {"name": name, "value": value})

    listener = markers.MarkerListener(ours, markers.MarkerReader(on_phase, on_metric))
    listener.start()
    return proc, listener


def _plausible(t: float | None, started: float) -> float | None:
    """The script's own stamp when it can be one (same clock: not before the command started,
    not in the future); otherwise None, and the mark goes where it was read."""
    return t if t is not None and started - 1.0 <= t <= time.monotonic() else None
