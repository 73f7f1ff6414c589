"""The process tree a run is attributed to: the workload's root PID and all its descendants.

Shared by the process sensor (CPU time, RSS) and the NVML sensor (per-process GPU memory) so
the tree is walked once per tick, not once per sensor.
"""

from __future__ import annotations

import psutil


class ProcessTree:
    def __init__(self, root_pid: int | None = None) -> None:
        self._root: psutil.Process | None = None
        self.procs: list[psutil.Process] = []
        self.set_root(root_pid)

    def set_root(self, pid: int | None) -> None:
        self._root = None
        self.procs = []
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
        """Re-walk the tree. A root that exited leaves an empty tree (its time is kept by the
        process sensor, which remembers what every member last reported)."""
        if self._root is None:
            self.procs = []
            return self.procs
        try:
            self.procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            self.procs = []
        return self.procs

    @property
    def pids(self) -> set[int]:
        return {p.pid for p in self.procs}
