"""What ``wattlab.track`` costs the code it measures (run on demand; the line goes to
BENCHMARKS.md).

With the Python API the sampler runs inside the user's own process, so its reads and its GIL
share are paid by the training loop. A small CPU training loop (an MLP on random data, one torch
thread) runs untracked (A) and inside ``wattlab.track`` with a ``t.step()`` per batch (B), in
interleaved rounds A B B A A B ... so drift in the machine's speed hits both arms alike.

Reported: the loop's median time per arm and the overhead 1 - median(A) / median(B), the fixed
cost of entering and leaving a block (run row, sensors, sampler start, the final integration and
store; no idle baseline: ``idle_s=0``), and the cost of one ``t.step()`` call.

    .venv/bin/python benchmarks/track_overhead.py [--rounds 5] [--steps 8000] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import wattlab


def make_loop(steps: int, batch: int) -> Callable[[Callable[[], None]], float]:
    """A training loop that calls ``on_step`` after every batch; returns its wall time."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 128), torch.randint(0, 10, (batch,))

    def loop(on_step: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            on_step()
        return time.perf_counter() - t0

    loop(lambda: None)  # warm-up: allocator, kernels
    return loop


def measure(rounds: int, steps: int, batch: int, interval_s: float) -> dict[str, object]:
    loop = make_loop(steps, batch)
    data_dir = tempfile.mkdtemp(prefix="wl-track-bench-")
    arms: dict[str, list[float]] = {"untracked": [], "tracked": []}
    fixed: list[float] = []

    def tracked() -> float:
        t0 = time.perf_counter()
        with wattlab.track(
            label="overhead", interval_s=interval_s, idle_s=0, data_dir=data_dir
        ) as t:
            took = loop(lambda: t.step(items=batch))
        fixed.append(time.perf_counter() - t0 - took)
        return took

    order = [("untracked", lambda: loop(lambda: None)), ("tracked", tracked)]
    for i in range(rounds):
        for name, run in order if i % 2 == 0 else order[::-1]:
            arms[name].append(run())
    med = {k: statistics.median(v) for k, v in arms.items()}
    return {
        "rounds": rounds,
        "median_s": med,
        "spread_s": {k: (min(v), max(v)) for k, v in arms.items()},
        "overhead_pct": 100.0 * (med["tracked"] / med["untracked"] - 1),
        "fixed_s": statistics.median(fixed),
        "step_call_us": step_call_us(data_dir),
    }


def step_call_us(data_dir: str, calls: int = 100_000) -> float:
    """One ``t.step()`` in a tracked block (sampler running), in microseconds."""
    with wattlab.track(label="step cost", interval_s=0.1, idle_s=0, data_dir=data_dir) as t:
        t0 = time.perf_counter()
        for _ in range(calls):
            t.step(items=1)
        took = time.perf_counter() - t0
    return took / calls * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    r = measure(a.rounds, a.steps, a.batch, a.interval)
    med, spread = r["median_s"], r["spread_s"]
    assert isinstance(med, dict) and isinstance(spread, dict)
    print(
        f"| wattlab.track overhead ({a.steps} steps x {a.batch}, 1 torch thread, "
        f"interval {a.interval * 1000:.0f} ms, {a.rounds} rounds A B B A, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}) "
        f"| untracked {med['untracked']:.3f} s ({spread['untracked'][0]:.3f}-"
        f"{spread['untracked'][1]:.3f}) "
        f"| tracked {med['tracked']:.3f} s ({spread['tracked'][0]:.3f}-{spread['tracked'][1]:.3f}) "
        f"| overhead {r['overhead_pct']:+.1f}% "
        f"| enter+exit {r['fixed_s'] * 1000:.0f} ms "
        f"| t.step() {r['step_call_us']:.2f} us |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
