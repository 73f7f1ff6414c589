"""GUI responsiveness benchmark (run on demand; results go into BENCHMARKS.md).

1. Startup: a fresh process until the main window is shown and painted (interpreter start and
   imports included), and whether torch was imported (it must not be).
2. Redraw: LivePlots.update_from() plus a synchronous repaint with 1 hour of 10 Hz data (36,000
   samples per series) in the ring buffers.
3. Event-loop latency during a real run: a 10 ms QTimer records how late each tick fires while
   the controller runs a demo inference session (worker process + sampler thread).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

STARTUP = """
import time, sys
t0 = float(sys.argv[1])
from PySide6.QtWidgets import QApplication
app = QApplication([])
from wattlab.app.main import build_window
w = build_window(); w.resize(1400, 900); w.show(); app.processEvents(); w.repaint()
print(json.dumps({"startup_s": time.time() - t0, "torch": "torch" in sys.modules}))
""".replace("import time, sys", "import json, time, sys")


def startup(n: int = 5) -> dict:
    xs = []
    torch = False
    for _ in range(n):
        out = subprocess.run(
            [sys.executable, "-c", STARTUP, repr(time.time())],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        xs.append(r["startup_s"])
        torch = torch or r["torch"]
    return {"runs": n, "median_s": statistics.median(xs), "max_s": max(xs), "torch": torch}


def redraw(app) -> dict:  # noqa: ANN001
    from wattlab.app.widgets.live import LivePlots
    from wattlab.core.measure.sampling import RingBuffers

    ring = RingBuffers(36_000)
    rng = np.random.default_rng(0)
    for k in range(36_000):
        ring.append(
            k * 0.1,
            {
                "est.cpu_power_w": 10 + rng.normal(),
                "sys.cpu_util_pct": 50.0,
                "proc.rss_bytes": 4e8,
                "gpu0.power_w": 300 + rng.normal(),
                "gpu0.mem_used_bytes": 4e10,
            },
        )
    w = LivePlots()
    w.resize(1000, 700)
    w.show()
    app.processEvents()
    times = []
    for _ in range(20):
        t = time.perf_counter()
        w.update_from(ring, 1234.0)
        w.repaint()
        app.processEvents()
        times.append(time.perf_counter() - t)
    return {
        "samples_per_series": 36_000,
        "series": 5,
        "median_ms": 1000 * statistics.median(times),
        "max_ms": 1000 * max(times),
    }


def loop_latency(app) -> dict:  # noqa: ANN001
    from PySide6.QtCore import QTimer

    from wattlab.app.main_window import MainWindow
    from wattlab.core.measure.store import RunStore
    from wattlab.core.settings import Settings

    w = MainWindow(RunStore.open_default(), Settings(idle_s=1.0), [])
    w.show()
    lat: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lat.append(now - last[0] - 0.010)
        last[0] = now

    t = QTimer()
    t.setInterval(10)
    t.timeout.connect(tick)
    t.start()
    w.workload.infer_batches.setValue(150)
    w.controller.busy_changed.connect(lambda busy: None if busy else app.quit())
    QTimer.singleShot(0, w.start_once)
    app.exec()  # the real event loop, as a user has it
    t.stop()
    arr = np.array(lat[5:]) * 1000
    return {
        "ticks": int(arr.size),
        "late_p50_ms": float(np.percentile(arr, 50)),
        "late_p99_ms": float(np.percentile(arr, 99)),
        "late_max_ms": float(arr.max()),
    }


def main() -> None:
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    print(
        json.dumps(
            {
                "startup": startup(),
                "redraw_1h_10hz": redraw(app),
                "event_loop_during_run": loop_latency(app),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
