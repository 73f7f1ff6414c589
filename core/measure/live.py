"""Live series for a running measurement, computed from the sampler's ring buffers.

Kept in core (no Qt) so the GUI only draws: it asks for named series and gets numpy arrays with
their unit and label. CPU power is ``measured`` from RAPL counter differences where RAPL exists,
else the ``estimated`` model's instantaneous figure; GPU power is NVML's reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattlab.core.measure.sampling import RingBuffers


@dataclass
class Series:
    name: str
    unit: str
    label: str  # measured | estimated | reading
    t: np.ndarray
    v: np.ndarray


def _counter_power(ring: RingBuffers, key: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    t, v = ring.series(key)
    if t.size < 2:
        return np.empty(0), np.empty(0)
    dt = np.diff(t)
    dv = np.diff(v) * scale
    ok = (dt > 0) & np.isfinite(dv) & (dv >= 0)
    return t[1:][ok], dv[ok] / dt[ok]


def live_series(ring: RingBuffers) -> list[Series]:
    keys = set(ring.keys())
    out: list[Series] = []
    gpus = sorted({k.split(".")[0] for k in keys if k.startswith("gpu") and "." in k})
    for g in gpus:
        if f"{g}.power_w" in keys:
            t, v = ring.series(f"{g}.power_w")
            out.append(Series(f"{g} power", "W", "reading", t, v))
        if f"{g}.mem_used_bytes" in keys:
            t, v = ring.series(f"{g}.mem_used_bytes")
            out.append(Series(f"{g} memory", "MiB", "reading", t, v / 2**20))
    rapl = sorted(k for k in keys if k.startswith("rapl.package"))
    if rapl:
        parts = [_counter_power(ring, k, 1e-6) for k in rapl]
        t = parts[0][0]
        total = sum(p[1][: t.size] for p in parts if p[1].size >= t.size)
        out.append(Series("CPU power", "W", "measured", t, np.asarray(total)))
    elif "est.cpu_power_w" in keys:
        t, v = ring.series("est.cpu_power_w")
        out.append(Series("CPU power", "W", "estimated", t, v))
    if "sys.cpu_util_pct" in keys:
        t, v = ring.series("sys.cpu_util_pct")
        out.append(Series("CPU utilisation", "%", "reading", t, v))
    if "proc.rss_bytes" in keys:
        t, v = ring.series("proc.rss_bytes")
        out.append(Series("process memory", "MiB", "reading", t, v / 2**20))
    return out


class ThroughputTracker:
    """items/s from the worker's step events (never guessed from time alone)."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.v: list[float] = []
        self._last: tuple[float, int] | None = None

    def add(self, t: float, items: int) -> None:
        if self._last is not None and t > self._last[0] and items >= self._last[1]:
            self.t.append(t)
            self.v.append((items - self._last[1]) / (t - self._last[0]))
        self._last = (t, items)

    def reset(self) -> None:
        self.t, self.v, self._last = [], [], None
