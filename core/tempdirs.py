"""Temporary folders that never outlive their process for long: named with the owner's PID, removed
when the owner is done, and swept by the next WattLab process when the owner died without
cleaning up (SIGKILL, a power cut, an out-of-memory kill).

Both sides use it: the parent keeps the worker's spec and stderr in ``wattlab-spec-<pid>-*``, the
worker keeps the techniques' ONNX copies (hundreds of MB for a large model) in
``wattlab-tech-<pid>-*``. A name without a PID (older versions, other tools) is never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SPEC_PREFIX = "wattlab-spec-"
TECH_PREFIX = "wattlab-tech-"
PREFIXES = (SPEC_PREFIX, TECH_PREFIX)


def owner_pid(folder: Path, prefix: str) -> int | None:
    """The PID a folder named ``<prefix><pid>-<random>`` belongs to, or None."""
    rest = folder.name[len(prefix) :] if folder.name.startswith(prefix) else ""
    pid, sep, _ = rest.partition("-")
    return int(pid) if sep and pid.isdigit() else None


def sweep_dead(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove the folders of ``prefix`` whose owner process is gone; the removed paths."""
    import psutil

    removed = []
    for folder in sorted(Path(root or tempfile.gettempdir()).glob(f"{prefix}*-*")):
        pid = owner_pid(folder, prefix)
        if pid is None or pid == os.getpid() or psutil.pid_exists(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def remove_owned(pid: int, root: Path | None = None) -> None:
    """Remove every folder ``pid`` made: a parent calls it for a worker it reaped (a worker
    killed with SIGKILL cannot clean up), a worker for itself before a hard exit."""
    for prefix in PREFIXES:
        for folder in Path(root or tempfile.gettempdir()).glob(f"{prefix}{pid}-*"):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def owned_tempdir(prefix: str, root: Path | None = None) -> Iterator[Path]:
    """A fresh folder named after this process, after sweeping those of dead owners; removed on
    exit whatever way the block ends (an exception, KeyboardInterrupt, SystemExit)."""
    sweep_dead(prefix, root)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
