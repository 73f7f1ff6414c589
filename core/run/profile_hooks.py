"""What a caller that is not a terminal needs from ``profile_command``: the app runs it in a
background thread, where no signal handler can be installed (so Ctrl-C forwarding cannot stop
the command), where the command's output has no terminal to go to, and where the live view
must see the measurement and the script's markers while the command runs.

- ``stop``: an Event; once set, the command is ended the way Ctrl-C would end it in a terminal
  (SIGINT first, so a script can stop its own way), then SIGTERM, then SIGKILL, to it and every
  process it started, so nothing outlives the run; the run is kept as ``cancelled``.
- ``on_measurement``: the run's ``Measurement`` once its idle baseline is taken (its sampler's
  ring buffers feed the live plots, as a session's do).
- ``on_event``: the script's markers as the worker's events (``protocol``): a phase as it is
  marked, a step with the running totals of steps, items and tokens, a metric as a log line;
  phases and steps carry ``mono``, the script's own stamp (lines often arrive in bursts, and
  a rate from their arrival times would be a spike).
- ``on_output``: the command's stdout and stderr, line by line (stdin is /dev/null).

The command-line ``wattlab profile`` passes none of these and behaves as before.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import psutil

from wattlab.core import markers
from wattlab.core.measure.meter import Measurement

INT_GRACE_S = 2.0  # after SIGINT, before SIGTERM
TERM_GRACE_S = 1.0  # after SIGTERM, before SIGKILL
LEFTOVER_GRACE_S = 1.0  # a process the command started, after SIGTERM, before SIGKILL
MAX_LINE_BYTES = 4000  # a progress bar redrawn with \r is one long "line": cut into pieces


@dataclass
class ProfileHooks:
    """The optional parts of ``profile_command`` for a caller off the main thread (the app)."""

    stop: threading.Event | None = None
    on_measurement: Callable[[Measurement], None] | None = None
    on_event: Callable[[dict[str, Any]], None] | None = None
    on_output: Callable[[str], None] | None = None


class RelayingReader(markers.MarkerReader):
    """A MarkerReader that also tells ``on_event`` what it read, as the worker's events do: the
    live view draws a profiled script's phases and throughput like a session's."""

    def __init__(
        self,
        on_phase: Callable[[str, float | None], None],
        on_metric: Callable[[str, markers.MetricValue, float | None], None],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(self._phase, self._metric)
        self._phase_to, self._metric_to, self._on_event = on_phase, on_metric, on_event
        self._steps_told = 0

    def _phase(self, name: str, t: float | None) -> None:
        self._phase_to(name, t)
        self._tell(_stamped({"event": markers.PHASE, "name": name}, t))

    def _metric(self, name: str, value: markers.MetricValue, t: float | None) -> None:
        self._metric_to(name, value, t)
        self._tell({"event": "log", "message": f"metric {name} = {value}"})

    def feed(self, line: str | bytes) -> None:
        """One marker line; new steps go on as one step event with the running totals (the
        live throughput is items between two of them over the time between)."""
        super().feed(line)
        total = self.tally.total()
        if total.steps != self._steps_told:
            self._steps_told = total.steps
            ev = {"event": markers.STEP, "steps": total.steps}
            self._tell(_stamped({**ev, "items": total.items, "tokens": total.tokens}, _mono(line)))

    def _tell(self, ev: dict[str, Any]) -> None:
        try:
            self._on_event(ev)
        except Exception:  # noqa: BLE001 - a display failure must not lose the run's markers
            pass


def _mono(line: str | bytes) -> float | None:
    """A marker line's own stamp (the script's ``time.monotonic()``), if it has a finite one."""
    try:
        ev = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    mono = ev.get("mono") if isinstance(ev, dict) else None
    if isinstance(mono, (int, float)) and not isinstance(mono, bool) and math.isfinite(mono):
        return float(mono)
    return None


def _stamped(ev: dict[str, Any], mono: float | None) -> dict[str, Any]:
    return ev if mono is None else {**ev, "mono": mono}


class OutputRelay:
    """The command's output (stdout and stderr on one pipe), line by line, to ``on_line``. The
    pipe is always drained, even when ``on_line`` fails: a full pipe would block the command."""

    def __init__(self, pipe: IO[bytes], on_line: Callable[[str], None]) -> None:
        self._pipe = pipe
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, name="wattlab-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in iter(lambda: self._pipe.readline(MAX_LINE_BYTES), b""):
                with contextlib.suppress(Exception):
                    self._on_line(raw.decode(errors="replace").rstrip("\r\n"))
        finally:
            self._pipe.close()

    def stop(self, wait_s: float = 1.0) -> None:
        """Wait briefly for the last lines; a process the command left behind may hold the
        pipe open, and then the thread ends with it."""
        self._thread.join(wait_s)


def popen_io(hooks: ProfileHooks) -> dict[str, Any]:
    """Popen's stdin/stdout/stderr: inherited for a terminal; with ``on_output``, stdin is
    /dev/null (nobody can type into it) and stdout and stderr share one pipe, in order."""
    if hooks.on_output is None:
        return {}
    return {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}


class CommandStopper:
    """Ends a command asked to stop, with no process left behind: SIGINT to the command (a
    Python script raises KeyboardInterrupt and can end its own way), SIGTERM to it and every
    process it started after ``INT_GRACE_S``, SIGKILL after ``TERM_GRACE_S`` more; what it
    started and left running when it exited gets SIGTERM, then SIGKILL (``end_leftovers``).

    It never reaps the command (the caller does, with ``wait4``), so the PID it signals cannot
    have been reused by then."""

    def __init__(self, pid: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid
        self._clock = clock
        self._asked = clock()
        self._stage = 0
        self._tree: dict[int, psutil.Process] = {}
        self._collect()
        self._signal(signal.SIGINT, everything=False)

    def _collect(self) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.pid).children(recursive=True):
                self._tree.setdefault(p.pid, p)

    def _signal(self, sig: signal.Signals, everything: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, sig)
        if everything:
            for p in self._tree.values():
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)

    def escalate(self) -> None:
        """Called while the command still runs: the next signal once its grace is over."""
        waited = self._clock() - self._asked
        if self._stage == 0 and waited >= INT_GRACE_S:
            self._collect()
            self._signal(signal.SIGTERM, everything=True)
            self._stage = 1
        elif self._stage == 1 and waited >= INT_GRACE_S + TERM_GRACE_S:
            self._collect()
            self._signal(signal.SIGKILL, everything=True)
            self._stage = 2

    def end_leftovers(self) -> None:
        """After the command exited: end what it started that still runs."""
        alive = []
        for p in self._tree.values():
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.terminate()
                    alive.append(p)
        _, still = psutil.wait_procs(alive, timeout=LEFTOVER_GRACE_S)
        for p in still:
            with contextlib.suppress(psutil.Error):
                p.kill()
