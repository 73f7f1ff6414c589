"""The worker never outlives the process that started it.

A CLI killed with SIGKILL (or SIGTERM, SIGHUP, a closed terminal) cannot stop its worker, and a
worker busy in a loop that checks no cancellation (the demo's first training, a technique's
calibration, a long forward pass) would keep a CPU at 100% under PID 1 for as long as it
likes. Three layers, each enough on its own in the usual case:

- the kernel sends SIGTERM when the parent dies (``PR_SET_PDEATHSIG``, Linux), which the
  cancellation token turns into a cancel;
- the stdin pipe closes (the token's stdin watcher cancels);
- a watchdog thread sees the parent PID change, cancels, gives the session ``grace_s`` to stop
  at its next check, then removes this worker's work folders and exits hard.

The expected parent comes from ``WATTLAB_PARENT_PID`` (set by the session runner), so a parent
that died before the worker got this far is noticed too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from wattlab.core.tempdirs import remove_owned
from wattlab.core.worker.events import CancelToken

PARENT_ENV = "WATTLAB_PARENT_PID"
PR_SET_PDEATHSIG = 1
ORPHAN_EXIT_CODE = 3


def expected_parent_pid() -> int:
    """The PID of the process that started this worker."""
    raw = os.environ.get(PARENT_ENV, "")
    return int(raw) if raw.isdigit() else os.getppid()


def parent_alive(expected_pid: int) -> bool:
    """True while the parent that started us is still our parent (an orphan is re-parented to
    PID 1 or a subreaper, so the PID changes)."""
    return os.getppid() == expected_pid


def arm_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` when the parent dies; False where that is not possible
    (not Linux, no libc): the watchdog still covers it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(
    cancel: CancelToken,
    expected_pid: int,
    poll_s: float = 0.5,
    grace_s: float = 5.0,
    exit_now: Callable[[int], None] = os._exit,
) -> threading.Thread:
    """Start the watchdog: when the parent is gone, cancel, wait ``grace_s``, clean up, exit."""

    def loop() -> None:
        while parent_alive(expected_pid):
            time.sleep(poll_s)
        cancel.cancel()
        time.sleep(grace_s)
        remove_owned(os.getpid())  # os._exit skips the folders' own cleanup
        exit_now(ORPHAN_EXIT_CODE)

    thread = threading.Thread(target=loop, name="parent-watch", daemon=True)
    thread.start()
    return thread


def hold_on(cancel: CancelToken) -> None:
    """Arm every layer for this worker process."""
    expected = expected_parent_pid()
    arm_death_signal()
    watch_parent(cancel, expected)
