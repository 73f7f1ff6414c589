"""What the hardware can do fast, read without importing torch (the GUI must not import it)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

LOW_PRECISION_FLAGS = (
    "avx512_bf16",
    "amx_bf16",
    "amx_tile",
    "amx_int8",
    "avx512_vnni",
    "avx512f",
    "avx2",
)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_capabilities() -> dict[str, bool]:
    f = cpu_flags()
    return {k: k in f for k in LOW_PRECISION_FLAGS}


def cpu_has_fast_bf16() -> bool:
    f = cpu_flags()
    return "amx_bf16" in f or "avx512_bf16" in f


def cpu_has_fast_int8() -> bool:
    f = cpu_flags()
    return "avx512_vnni" in f or "amx_int8" in f or "avx_vnni" in f


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, what a container or taskset
    allows), else every CPU the OS reports."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_rank(threads: int | None, ranks_here: int) -> int:
    """The intra-op threads each DDP rank uses: the user's ``--threads`` (per rank), else this
    machine's cores split evenly between the ranks on it, so N ranks never oversubscribe the
    cores one process had. The launching parent (OMP_NUM_THREADS) and each rank (torch) use
    this one rule, so they cannot disagree."""
    return threads if threads else max(1, usable_cores() // max(1, ranks_here))
