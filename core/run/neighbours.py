"""Who else is using this machine, looked at before a session starts.

Two sessions on 2 cores ran 34x slower and were each charged 20x the energy, stored as valid.
The measured-phase contention check (meter.contention) flags such a run afterwards; this one says
so before anything starts, so the user can stop the other job, and the run keeps the record.

A process counts as heavy when it used at least ``HEAVY_CORE_SHARE`` of one core over a short
window; another WattLab worker counts whatever it used (it is about to compete for the same
cores and sensors).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

HEAVY_CORE_SHARE = 0.5  # half a core, sustained over the window
WINDOW_S = 0.3
WORKER_MARK = "wattlab.core.worker"


class _Proc(Protocol):
    pid: int

    def name(self) -> str: ...

    def cmdline(self) -> list[str]: ...

    def cpu_percent(self, interval: float | None = None) -> float: ...


@dataclass(frozen=True)
class Neighbour:
    pid: int
    name: str
    core_share: float  # of one core, over the window (1.0 = one core busy)
    wattlab_session: bool


@dataclass(frozen=True)
class Neighbours:
    """The busy processes outside this process tree when a session was about to start."""

    found: list[Neighbour] = field(default_factory=list)
    cores: int = 1
    window_s: float = WINDOW_S

    @property
    def sessions(self) -> list[Neighbour]:
        return [n for n in self.found if n.wattlab_session]

    def warning(self) -> str | None:
        """One sentence for the user and the run, or None when the machine looked quiet."""
        if not self.found:
            return None
        busy = sum(n.core_share for n in self.found)
        parts = []
        if self.sessions:
            pids = ", ".join(str(n.pid) for n in self.sessions)
            parts.append(f"another WattLab session is running (PID {pids})")
        others = [n for n in self.found if not n.wattlab_session]
        if others:
            top = ", ".join(
                f"{n.name} (PID {n.pid}, {n.core_share:.0%} of a core)" for n in others[:3]
            )
            parts.append(f"busy processes: {top}")
        return (
            "; ".join(parts)
            + f" - together {busy:.1f} of {self.cores} cores, measured over {self.window_s:g} s "
            "before the start: this run competes for the CPU, so its time and energy will be "
            "inflated"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "window_s": self.window_s,
            "processes": [
                {
                    "pid": n.pid,
                    "name": n.name,
                    "core_share": n.core_share,
                    "wattlab": n.wattlab_session,
                }
                for n in self.found
            ],
        }


def _own_tree() -> set[int]:
    """This process, its ancestors and its descendants: never counted as neighbours."""
    import psutil

    me = psutil.Process()
    pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
    pids.update(p.pid for p in me.parents())
    return pids


def _is_worker(proc: _Proc) -> bool:
    try:
        return WORKER_MARK in " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - a process that vanished or hides its cmdline
        return False


def survey(
    processes: Iterable[_Proc] | None = None,
    window_s: float = WINDOW_S,
    exclude: set[int] | None = None,
    cores: int | None = None,
) -> Neighbours:
    """Sample every process's CPU over ``window_s``; the heavy ones and other WattLab workers."""
    import psutil

    procs = list(processes if processes is not None else psutil.process_iter())
    skip = exclude if exclude is not None else _own_tree()
    procs = [p for p in procs if p.pid not in skip]
    for p in procs:
        try:
            p.cpu_percent(None)  # the first call only starts the window
        except Exception:  # noqa: BLE001 - gone, or not ours to read
            continue
    time.sleep(window_s)
    found = []
    for p in procs:
        try:
            share = p.cpu_percent(None) / 100.0
            name = p.name()
        except Exception:  # noqa: BLE001
            continue
        worker = _is_worker(p)
        if worker or share >= HEAVY_CORE_SHARE:
            found.append(Neighbour(p.pid, name, share, worker))
    found.sort(key=lambda n: (not n.wattlab_session, -n.core_share))
    return Neighbours(found, cores or os.cpu_count() or 1, window_s)
