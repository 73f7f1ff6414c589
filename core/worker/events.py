"""The worker's side of the event stream, and the cancellation flag it polls.

One JSON object per line on the real stdout (``fd 1``, kept aside before anything else can print
to it): ``phase``, ``device``, ``step``, ``epoch``, ``round``, ``log``, ``result``, ``error``.
Step events are throttled to a few per second so a fast loop does not spend its time printing.

Every event carries ``mono``, the worker's ``time.monotonic()`` when it was emitted: on Linux
that is CLOCK_MONOTONIC, the same clock as the measuring parent's, so a phase boundary is placed
where it happened, not when the parent read the line. The measured work ends with an explicit
``post`` phase, emitted after the device is synchronised: metrics, the result, saving and
teardown come after it and are never charged to the measured phase.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import IO, Any

from wattlab.core.protocol import END_PHASE  # noqa: F401 - the worker marks it via events


def _clean(obj: Any) -> Any:
    """JSON has no NaN: unknown numbers travel as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class Emitter:
    def __init__(self, stream: IO[str] | None = None, step_interval_s: float = 0.2) -> None:
        self.stream = stream or sys.stdout
        self.step_interval_s = step_interval_s
        self._last_step = 0.0
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, event: str, **data: Any) -> None:
        """Write one event; once the reader is gone (a broken pipe: the parent died) events are
        dropped rather than raised, so the session's own cleanup still runs."""
        stamp = {"event": event, "t": time.time(), "mono": time.monotonic()}
        line = json.dumps(_clean({**stamp, **data}))
        with self._lock:
            if self.broken:
                return
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def phase(self, name: str) -> None:
        self.emit("phase", name=name)

    def log(self, message: str) -> None:
        self.emit("log", message=message)

    def step(self, force: bool = False, **data: Any) -> None:
        now = time.monotonic()
        if force or now - self._last_step >= self.step_interval_s:
            self._last_step = now
            self.emit("step", **data)


class CancelToken:
    """Set by a ``cancel`` line on stdin, by SIGTERM/SIGHUP/SIGINT, or by a stdin *pipe*
    closing (the parent died): in every case the session finishes its current step and reports
    what it did. A stdin that is not a pipe (a terminal, /dev/null in CI) is ignored, so running
    the worker by hand does not cancel it at once."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def watch_signals(self) -> None:
        """SIGTERM (the runner's escalation, the parent-death signal), SIGHUP (a closed
        terminal) and SIGINT (Ctrl-C reaches the whole foreground group, the worker too) all
        cancel: the session stops at its next check and reports, never a traceback."""
        import signal

        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda *_: self.cancel())

    def watch_stdin(self, stream: IO[str] | None = None) -> None:
        import os
        import stat

        src = stream or sys.stdin
        if stream is None:
            try:
                if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
                    return
            except (OSError, ValueError, AttributeError):
                return

        def loop() -> None:
            for line in src:
                if line.strip() == "cancel":
                    break
            self._event.set()

        threading.Thread(target=loop, name="cancel-watch", daemon=True).start()
