"""What `wattlab exporter` costs the node it runs on (run on demand; results go into
BENCHMARKS.md and benchmarks/results/exporter.json).

The exporter runs in a child process (this script with ``--serve``), as in production. Two
figures per sensor set:
1. Background: the child's CPU time per second while nobody scrapes (the sampler ticking every
   ``--interval``), over ``--idle`` seconds.
2. Per scrape: ``--scrapes`` GETs of /metrics back to back (default 1000), in 5 blocks. CPU per
   scrape = (the child's CPU time over the block - the background rate x the block's length) /
   the block's scrapes, the median over the blocks (the kernel counts CPU time in 10 ms ticks:
   one scrape alone is far below that, 200 resolve 0.05 ms). Wall time per scrape: the client's
   median and p95 over every scrape.

Sensor sets: ``real`` (this machine's, as `wattlab exporter` discovers them, with the process
tree at PID 1) and ``fake-gpus-N`` (N fake NVIDIA GPUs through tests/fakes, for the DCGM names).

    .venv/bin/python benchmarks/exporter_cost.py [--scrapes 1000] [--gpus 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = 5


def serve(gpus: int, interval_s: float) -> None:
    """The child: an exporter over the chosen sensor set, its port on stdout, until killed."""
    sys.path.insert(0, str(ROOT))
    from wattlab.core.measure.exporter import NodeExporter
    from wattlab.core.measure.sensors import SensorSet, discover

    if gpus:
        from tests.fakes.fake_pynvml import FakeGpu, make_module
        from wattlab.core.measure.sensors.nvml import probe_nvml
        from wattlab.core.measure.sensors.process import probe_process
        from wattlab.core.measure.sensors.proctree import ProcessTree

        tree = ProcessTree()
        fakes = [FakeGpu(uuid=f"GPU-{i:08d}", energy_j=lambda t: 300.0 * t) for i in range(gpus)]
        nv, st = probe_nvml(tree, nvml=make_module(fakes, clock=time.monotonic), env={})
        proc, pst = probe_process(tree)
        sensors = SensorSet([nv, proc], [st, pst], proc, tree)
    else:
        sensors = discover()
        sensors.set_target(1)
    x = NodeExporter(sensors, interval_s)
    print(x.start("127.0.0.1", 0), flush=True)
    threading.Event().wait()


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def measure(gpus: int, scrapes: int, idle_s: float, interval_s: float) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--serve", "--gpus", str(gpus), "--interval", str(interval_s)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/metrics"
        p = psutil.Process(child.pid)
        time.sleep(2.0)  # start-up done, first ticks taken
        c0, t0 = cpu_s(p), time.monotonic()
        time.sleep(idle_s)
        background = (cpu_s(p) - c0) / (time.monotonic() - t0)
        size = len(urllib.request.urlopen(url).read())
        walls_ms: list[float] = []
        per_scrape_cpu_ms: list[float] = []
        for _ in range(BLOCKS):
            c0, t0 = cpu_s(p), time.monotonic()
            for _ in range(scrapes // BLOCKS):
                s = time.perf_counter()
                with urllib.request.urlopen(url) as r:
                    r.read()
                walls_ms.append(1000 * (time.perf_counter() - s))
            took = time.monotonic() - t0
            cpu = cpu_s(p) - c0 - background * took
            per_scrape_cpu_ms.append(1000 * cpu / (scrapes // BLOCKS))
    finally:
        child.kill()
        child.wait()
    walls_ms.sort()
    return {
        "sensors": f"fake-gpus-{gpus}" if gpus else "real",
        "interval_s": interval_s,
        "response_bytes": size,
        "background_cpu_pct_of_a_core": 100 * background,
        "cpu_ms_per_scrape_median": statistics.median(per_scrape_cpu_ms),
        "cpu_ms_per_scrape_blocks": per_scrape_cpu_ms,
        "wall_ms_per_scrape_median": statistics.median(walls_ms),
        "wall_ms_per_scrape_p95": walls_ms[int(0.95 * (len(walls_ms) - 1))],
        "scrapes": len(walls_ms),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "exporter.json"))
    args = ap.parse_args()
    if args.serve:
        serve(args.gpus, args.interval)
        return
    runs = [
        measure(g, args.scrapes, args.idle, args.interval) for g in dict.fromkeys((0, args.gpus))
    ]
    report = {
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
