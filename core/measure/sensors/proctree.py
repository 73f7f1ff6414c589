"""The process tree a run is attributed to: the workload's root PID and all its descendants.

Shared by the process sensor (CPU time, RSS) and the NVML sensor (per-process GPU memory).

Walking the tree is the sampler's most expensive step: psutil finds children by reading
/proc/*/stat of *every* process on the machine (80% of a tick with 70 processes; worse on a busy
workstation). On Linux the walk reads the kernel's per-task children lists instead, and the tree
is re-walked at most every ``rescan_s`` (1 s), the known members read in between. Nothing is
lost by that: a process's CPU time is cumulative, so a child
found up to a second late is counted in full, and dead members simply stop reporting.
"""

from __future__ import annotations

import os
import time

import psutil


class ProcessTree:
    def __init__(
        self, root_pid: int | None = None, rescan_s: float = 1.0, clock=time.monotonic
    ) -> None:  # noqa: ANN001
        self._root: psutil.Process | None = None
        self.procs: list[psutil.Process] = []
        self.rescan_s = rescan_s
        self._clock = clock
        self._last_scan = float("-inf")
        self.set_root(root_pid)

    def set_root(self, pid: int | None) -> None:
        self._root = None
        self.procs = []
        self._last_scan = float("-inf")
        if pid is None:
            return
        try:
            self._root = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    @property
    def root_pid(self) -> int | None:
        return self._root.pid if self._root is not None else None

    def refresh(self) -> list[psutil.Process]:
        """The tree's members: re-walked when ``rescan_s`` has passed, else the known ones. A
        root that exited leaves an empty tree (its time is kept by the process sensor, which
        remembers what every member last reported)."""
        if self._root is None:
            self.procs = []
            return self.procs
        now = self._clock()
        if now - self._last_scan < self.rescan_s:
            return self.procs
        self._last_scan = now
        pids = _linux_descendants(self._root.pid)
        if pids is None:
            try:
                self.procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                self.procs = []
            return self.procs
        known = {p.pid: p for p in self.procs}
        self.procs = [self._root]
        for pid in pids:
            proc = known.get(pid) or _process(pid)
            if proc is not None:
                self.procs.append(proc)
        return self.procs

    @property
    def pids(self) -> set[int]:
        return {p.pid for p in self.procs}


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _linux_descendants(root: int) -> list[int] | None:
    """The root's descendants from the kernel's own lists (/proc/PID/task/TID/children): a
    few reads per member instead of psutil's read of every process on the machine (that
    rescan was most of the sampler's cost). None where the kernel does not offer the lists."""
    found: list[int] = []
    todo = [root]
    seen = {root}
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == root:
                return None if not os.path.exists(f"/proc/{root}") else []
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                if pid == root:
                    return None  # no CONFIG_PROC_CHILDREN: psutil's walk instead
                continue
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid not in seen:
                    seen.add(kid)
                    found.append(kid)
                    todo.append(kid)
    return found
