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

Off the main thread (the app) no signal handler can be installed: ``hooks`` (``run.profile_hooks``)
give such a caller a stop Event, the measurement, the markers as events and the command's output.
The command is reaped with ``wait4``, so its CPU time and peak RSS are its own even in a process
that has run other commands before (the app, ``wattlab bench``).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattlab.core import markers
from wattlab.core.measure.meter import Measurement, MeasureSettings
from wattlab.core.measure.sensors import SensorSet
from wattlab.core.measure.store import RunStore
from wattlab.core.run.marked import add_marked_figures
from wattlab.core.run.profile_hooks import (
    CommandStopper,
    OutputRelay,
    ProfileHooks,
    RelayingReader,
    popen_io,
)

POLL_S = 0.05  # how often a command that may be asked to stop is checked


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


def peak_rss(sampled: float | None, maxrss: int) -> float | None:
    """The command's peak RSS: the sampled peak of its live process tree, or the kernel's
    ``ru_maxrss`` (its largest single process) when larger. But Linux carries the RSS high-water
    mark across exec, and the command began as a fork (or vfork) of this process: its
    ``ru_maxrss`` is never below this process's own peak (a ``python -c pass`` started from the
    app "used" the app's 140 MiB). At or below our own peak it says nothing about the command,
    and only the sampled figure counts (None when nothing was sampled: unknown)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    kernel = float(maxrss) if maxrss > own else None
    known = [x for x in (sampled, kernel) if x is not None]
    return max(known) if known else None


def _peak(ring_vals: np.ndarray) -> float | None:
    finite = ring_vals[np.isfinite(ring_vals)]
    return float(finite.max()) if finite.size else None


def profile_command(
    cmd: list[str],
    store: RunStore,
    settings: MeasureSettings,
    label: str | None = None,
    sensors: SensorSet | None = None,
    cwd: str | Path | None = None,
    hooks: ProfileHooks | None = None,
) -> ProfileOutcome:
    """Measure ``cmd`` (run in ``cwd``, default: here) from idle baseline to exit and store it
    as a run of kind ``profile``. ``hooks``: what a caller off the main thread needs (the app:
    stop, live data, output); without them the terminal's Ctrl-C is forwarded to the command."""
    if not cmd:
        raise ValueError("no command given: use `wattlab profile -- CMD ARGS...`")
    hooks = hooks or ProfileHooks()
    spec: dict = {"command": cmd, "interval_s": settings.interval_s, "idle_s": settings.idle_s}
    if cwd is not None:
        spec["cwd"] = str(cwd)
    m = Measurement(store, "profile", spec, label or Path(cmd[0]).name, settings, sensors)
    with m:
        if hooks.on_measurement is not None:
            hooks.on_measurement(m)
        if hooks.stop is not None and hooks.stop.is_set():  # during the idle baseline
            stopped = {"command": cmd, "exit_code": None}
            return ProfileOutcome(130, m.finish("cancelled", stopped, "stopped before it started"))
        cpu0, _ = _children_usage()
        proc, listener, output = _start(cmd, m, cwd, hooks)
        reaper = _Reaper(proc, hooks.stop)
        try:
            code = reaper.wait()
        finally:
            listener.stop()
            if output is not None:
                output.stop()
        if reaper.usage is not None:
            cpu_s, maxrss = reaper.usage
        else:  # reaped by Popen (a forwarded signal polled it first): the process's children
            cpu1, maxrss = _children_usage()
            cpu_s = cpu1 - cpu0
        m.sensors.process.set_exited_cpu_time(cpu_s)
        _, rss = m.sampler.ring.series("proc.rss_bytes")
        extra = {
            "command": cmd,
            "exit_code": code,
            "cpu_time_s": cpu_s,
            "peak_rss_bytes": peak_rss(_peak(rss), maxrss),
            # what the command's script marked (all empty when it sent nothing)
            "markers": listener.reader.tally.to_dict(),
        }
        m.scope_to_process_tree()
        cancelled = reaper.cancelled
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


class _Reaper:
    """Waits for the command and reaps it with ``wait4``, so its CPU time and peak RSS are its
    own (``getrusage(RUSAGE_CHILDREN)`` keeps the largest peak of every child this process ever
    reaped). On the main thread, Ctrl-C and SIGTERM are forwarded to the command; with a
    ``stop`` Event, a set one ends the command and what it started (``CommandStopper``)."""

    def __init__(self, proc: subprocess.Popen, stop: threading.Event | None) -> None:
        self.proc = proc
        self.stop = stop
        self.cancelled = False
        self.usage: tuple[float, int] | None = None  # (CPU seconds, peak RSS bytes)

    def _forward(self, signum: int, _frame: object) -> None:
        self.cancelled = True
        self.proc.send_signal(signum)

    def wait(self) -> int:
        main = threading.current_thread() is threading.main_thread()
        sigs = (signal.SIGINT, signal.SIGTERM) if main else ()
        old = {s: signal.signal(s, self._forward) for s in sigs}
        try:
            return self._block() if self.stop is None else self._poll(self.stop)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _block(self) -> int:
        while (code := self._reap(0)) is None:  # wait4 without WNOHANG returns an exit
            pass
        return code

    def _poll(self, stop: threading.Event) -> int:
        stopper: CommandStopper | None = None
        while (code := self._reap(os.WNOHANG)) is None:
            if stopper is None and stop.is_set():
                self.cancelled = True
                stopper = CommandStopper(self.proc.pid)
            elif stopper is not None:
                stopper.escalate()
            time.sleep(POLL_S)
        if stopper is not None:
            stopper.end_leftovers()
        return code

    def _reap(self, flags: int) -> int | None:
        """The exit code once the command has exited (None while it runs, with WNOHANG)."""
        try:
            pid, status, ru = os.wait4(self.proc.pid, flags)
        except ChildProcessError:  # Popen.poll() in a forwarded signal reaped it first
            return self.proc.wait()
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.usage = (ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024)  # Linux: KiB
        return self.proc.returncode


def _start(
    cmd: list[str], m: Measurement, cwd: str | Path | None, hooks: ProfileHooks
) -> tuple[subprocess.Popen, markers.MarkerListener, OutputRelay | None]:
    """Start the command with its end of the marker socket, attach the measurement to it, and
    listen. A command that cannot start ends the run as failed (127/126 in the CLI)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            cmd,
            pass_fds=(theirs.fileno(),),
            env=markers.child_env(theirs),
            cwd=cwd,
            **popen_io(hooks),
        )
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

    reader = (
        markers.MarkerReader(on_phase, on_metric)
        if hooks.on_event is None
        else RelayingReader(on_phase, on_metric, hooks.on_event)
    )
    listener = markers.MarkerListener(ours, reader)
    listener.start()
    output = None
    if hooks.on_output is not None and proc.stdout is not None:
        output = OutputRelay(proc.stdout, hooks.on_output)
    return proc, listener, output


def _plausible(t: float | None, started: float) -> float | None:
    """The script's own stamp when it can be one (same clock: not before the command started,
    not in the future); otherwise None, and the mark goes where it was read."""
    return t if t is not None and started - 1.0 <= t <= time.monotonic() else None
