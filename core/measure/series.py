"""Total power over time, rebuilt from a run's stored samples for charts.

Counters are differenced (RAPL energy_uj, NVML energy_mj, the estimate's dynamic joules) and
power readings used as they are, exactly as the energy accumulator does; a GPU with an energy
counter contributes through the counter, not its 1-second averaged power reading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COUNTER_SCALE = {".energy_uj": 1e-6, ".energy_mj": 1e-3, "est.cpu_dynamic_j": 1.0}
POWER_KEYS = ("est.cpu_floor_w", "est.ram_power_w")


def _counter_keys(keys: set[str]) -> list[tuple[str, float]]:
    out = []
    for k in keys:
        for suffix, scale in COUNTER_SCALE.items():
            if k.endswith(suffix):
                out.append((k, scale))
    return out


def total_power(samples: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(t at the end of each interval, total W over that interval)."""
    if len(samples) < 2:
        return np.empty(0), np.empty(0)
    keys = set().union(*(s.values.keys() for s in samples))
    counters = _counter_keys(keys)
    gpus_with_counter = {k.split(".")[0] for k, _ in counters if k.endswith(".energy_mj")}
    powers = [
        k
        for k in keys
        if k in POWER_KEYS
        or (
            k.endswith(".power_w")
            and k.startswith("gpu")
            and k.split(".")[0] not in gpus_with_counter
        )
    ]
    t = np.array([s.t for s in samples])
    dt = np.diff(t)
    total = np.zeros(len(dt))
    for k, scale in counters:
        v = np.array(
            [s.values.get(k) if s.values.get(k) is not None else np.nan for s in samples],
            dtype=float,
        )
        d = np.diff(v) * scale
        d[d < 0] = np.nan  # a wrap: skip the interval in the chart (the energy total handles it)
        total += np.nan_to_num(d / np.where(dt > 0, dt, np.nan))
    for k in powers:
        v = np.array(
            [s.values.get(k) if s.values.get(k) is not None else np.nan for s in samples],
            dtype=float,
        )
        total += np.nan_to_num(0.5 * (v[1:] + v[:-1]))
    keep = dt > 1e-3
    return t[1:][keep], total[keep]
