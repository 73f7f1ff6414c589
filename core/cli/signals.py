"""SIGTERM and SIGHUP end the CLI the way Ctrl-C does.

Their default action kills Python on the spot: no ``finally`` runs, so the run would stay
``running`` in the store (later read as ``interrupted``), the worker's spec folder would leak
and the worker would be told nothing. Raised as a KeyboardInterrupt instead, the session is
cancelled, kept as ``cancelled``, and every folder is removed; the exit code is 128 + signal,
as a shell reports it.
"""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The CLI was asked to stop by ``signum`` (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def stop_like_ctrl_c() -> None:
    """Install the handlers (main thread only, as Python requires)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
