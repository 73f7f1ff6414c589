"""A deterministic CPU-bound workload for `make demo` and the sampler benchmark.

Pure-Python arithmetic keeps exactly one core busy (no BLAS threads whose count would vary by
machine), and it reports its own throughput so profiling overhead can be measured as a change
in work done per second.
"""

from __future__ import annotations

import argparse
import json
import time


def burn(seconds: float) -> tuple[int, float]:
    """Run for ``seconds``; returns (work units done, elapsed seconds)."""
    units = 0
    start = time.perf_counter()
    deadline = start + seconds
    x = 0
    while time.perf_counter() < deadline:
        for i in range(10_000):
            x = (x * 1_103_515_245 + 12_345 + i) & 0x7FFFFFFF
        units += 1
    return units, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true", help="print throughput as JSON")
    a = ap.parse_args()
    units, elapsed = burn(a.seconds)
    if a.json:
        print(
            json.dumps(
                {
                    "units": units,
                    "elapsed_s": elapsed,
                    "units_per_s": units / elapsed,
                    "cpu_s": time.process_time(),
                }
            )
        )
    else:
        print(f"cpu_burn: {units} units in {elapsed:.2f} s ({units / elapsed:.1f} units/s)")


if __name__ == "__main__":
    main()
