"""Sampler overhead and timing benchmark (run on demand; results go into BENCHMARKS.md).

1. Overhead: the shipped single-core workload (cpu_burn) reports work units per second. It runs
   unprofiled, under `wattlab profile --interval 0.1` and under `--interval 0.01`, in
   interleaved rounds (off, 100 ms, 10 ms, off, ...) so drift in machine speed hits every arm
   alike. Overhead = 1 - median(on) / median(off).
2. Jitter: the real sensor set sampled in-process at decreasing intervals while cpu_burn keeps
   one core busy; reports lag behind each slot (p50, p99, max) and missed slots.

    .venv/bin/python benchmarks/sampler_overhead.py [--rounds 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from wattlab.core.measure.sampling import Sampler
from wattlab.core.measure.sensors import discover

BURN = [sys.executable, "-m", "wattlab.resources.workloads.cpu_burn", "--json"]
WATTLAB = [sys.executable, "-m", "wattlab.core.cli.main"]


def throughput(cmd: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    return json.loads(line)["units_per_s"]


def overhead(rounds: int, seconds: float) -> dict[str, object]:
    env = dict(os.environ, WATTLAB_DATA_DIR=tempfile.mkdtemp(prefix="wl-bench-"))
    burn = [*BURN, "--seconds", str(seconds)]
    arms: dict[str, list[float]] = {"off": [], "100ms": [], "10ms": []}
    for _ in range(rounds):
        arms["off"].append(throughput(burn, env))
        arms["100ms"].append(
            throughput([*WATTLAB, "profile", "--idle", "0", "--interval", "0.1", "--", *burn], env)
        )
        arms["10ms"].append(
            throughput([*WATTLAB, "profile", "--idle", "0", "--interval", "0.01", "--", *burn], env)
        )
    base = statistics.median(arms["off"])
    return {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "median_units_per_s": {k: statistics.median(v) for k, v in arms.items()},
        "spread_units_per_s": {k: [min(v), max(v)] for k, v in arms.items()},
        "overhead_pct": {
            k: 100.0 * (1 - statistics.median(v) / base) for k, v in arms.items() if k != "off"
        },
    }


def sampler_cpu_cost(seconds: float) -> list[dict[str, float]]:
    """CPU time the sampler itself burns per second of sampling (this process does nothing
    else meanwhile), as a share of one core: a direct measure of what it can take from a
    workload, immune to the machine's run-to-run speed noise."""
    rows = []
    for interval in (0.1, 0.01):
        burn = subprocess.Popen([*BURN, "--seconds", str(seconds + 1)], stdout=subprocess.DEVNULL)
        found = discover()
        found.set_target(burn.pid)
        s = Sampler(found.sensors, interval_s=interval)
        c0, t0 = time.process_time(), time.monotonic()
        s.start()
        time.sleep(seconds)
        s.stop()
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        burn.wait()
        found.close()
        rows.append(
            {
                "interval_ms": interval * 1000,
                "ticks": s.stats.ticks,
                "cpu_ms_per_s": 1000 * cpu / wall,
                "pct_of_one_core": 100 * cpu / wall,
                "cpu_ms_per_tick": 1000 * cpu / max(1, s.stats.ticks),
            }
        )
    return rows


def jitter(seconds: float, rounds: int = 3) -> list[dict[str, float]]:
    rows = []
    for interval in [x for x in (0.1, 0.05, 0.02, 0.01) for _ in range(rounds)]:
        burn = subprocess.Popen([*BURN, "--seconds", str(seconds + 1)], stdout=subprocess.DEVNULL)
        found = discover()
        found.set_target(burn.pid)
        s = Sampler(found.sensors, interval_s=interval, keep_lags=True)
        s.start()
        time.sleep(seconds)
        s.stop()
        burn.wait()
        found.close()
        lags = np.array(s.stats.lags_s) * 1000
        rows.append(
            {
                "interval_ms": interval * 1000,
                "ticks": s.stats.ticks,
                "missed": s.stats.missed_slots,
                "lag_p50_ms": float(np.percentile(lags, 50)),
                "lag_p99_ms": float(np.percentile(lags, 99)),
                "lag_max_ms": float(lags.max()),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    res = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "sampler_cpu_cost": sampler_cpu_cost(a.seconds * 2),
        "overhead": overhead(a.rounds, a.seconds),
        "jitter": jitter(a.seconds),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
