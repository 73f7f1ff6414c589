"""GUI responsiveness benchmark (run on demand; results go into BENCHMARKS.md).

1. Startup: a fresh process until the main window is shown and painted (interpreter start and
   imports included), and whether torch was imported (it must not be).
2. Redraw: LivePlots.update_from() plus a synchronous repaint with 1 hour of 10 Hz data (36,000
   samples per series) in the ring buffers; then the heaviest view, a training comparison's
   optimized run an hour in, with the baseline's hour overlaid on every panel and the
   training panels shown (throughput, step losses, epoch losses and accuracy).
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


HOUR = 36_000  # samples per series: 1 hour at 10 Hz


def _hour_of_data(start: float, seed: int):  # noqa: ANN202
    """A ring buffer holding one hour of 10 Hz samples from every kind of sensor."""
    from wattlab.core.measure.sampling import RingBuffers

    ring = RingBuffers(HOUR)
    rng = np.random.default_rng(seed)
    for k in range(HOUR):
        ring.append(
            start + k * 0.1,
            {
                "est.cpu_power_w": 10 + rng.normal(),
                "sys.cpu_util_pct": 50.0,
                "proc.rss_bytes": 4e8,
                "gpu0.power_w": 300 + rng.normal(),
                "gpu0.mem_used_bytes": 4e10,
            },
        )
    return ring


def _training_events(w, start: float) -> None:  # noqa: ANN001
    """One hour of a training run's events: steps at the worker's 5 Hz throttle, each with its
    loss, and an epoch (with a 20 s eval pause before the next steps) every 5 minutes."""
    items = 0
    t = start
    for epoch in range(1, 13):
        for _ in range(5 * 280):
            items += 32
            w.on_event({"event": "step", "items": items, "loss": 1.0 / epoch}, t)
            t += 0.2
        t += 20.0
        ev = {"event": "epoch", "epoch": epoch, "train_loss": 1 / epoch, "eval_loss": 1.1 / epoch}
        w.on_event({**ev, "accuracy": 1 - 0.5 / epoch}, t)


def _time_redraws(app, w, ring, start: float) -> dict:  # noqa: ANN001
    """Each redraw first gets what 100 ms of a run brings: one new sample (10 Hz sampling, a
    full ring drops its oldest) and, every other redraw, a step event (5 Hz), so nothing is
    drawn from a cache that a real run would not have."""
    t = start + HOUR * 0.1
    items = 10**6
    times = []
    for k in range(20):
        t += 0.1
        ring.append(
            t,
            {
                "est.cpu_power_w": 10.0,
                "sys.cpu_util_pct": 50.0,
                "proc.rss_bytes": 4e8,
                "gpu0.power_w": 300.0,
                "gpu0.mem_used_bytes": 4e10,
            },
        )
        if k % 2:
            items += 32
            loss = {"loss": 0.1} if w.mode == "train" else {}  # inference steps carry none
            w.on_event({"event": "step", "items": items, **loss}, t)
        t0 = time.perf_counter()
        w.update_from(ring, 1234.0 + k)
        w.repaint()
        app.processEvents()
        times.append(time.perf_counter() - t0)
    return {
        "samples_per_series": HOUR,
        "curves": len(w.curves),
        "overlays": len(w.overlays),
        "median_ms": 1000 * statistics.median(times),
        "max_ms": 1000 * max(times),  # the first draw
    }


def redraw(app) -> dict:  # noqa: ANN001
    """An inference run: five sensor series and no overlay (the figure BENCHMARKS.md had)."""
    from wattlab.app.widgets.live import LivePlots

    ring = _hour_of_data(0.0, 0)
    w = LivePlots()
    w.resize(1000, 700)
    w.show()
    app.processEvents()
    w.begin_session("infer")
    w.begin_run("single", "run 1 of 1")
    out = {"series": 5, **_time_redraws(app, w, ring, 0.0)}
    w.close()
    return out


def redraw_with_overlays(app) -> dict:  # noqa: ANN001
    """The heaviest live view: the optimized run of a training comparison, an hour into it,
    over the baseline's hour on every panel (sensor series, throughput, losses, accuracy)."""
    from wattlab.app.widgets.live import LivePlots

    w = LivePlots()
    w.resize(1000, 700)
    w.show()
    app.processEvents()
    w.begin_session("train")
    w.begin_run("baseline", "baseline run 1/1")
    base = _hour_of_data(1000.0, 1)
    _training_events(w, 1000.0)
    w.update_from(base, 1234.0)
    w.begin_run("optimized", "optimized run 1/1")
    ring = _hour_of_data(9000.0, 2)
    _training_events(w, 9000.0)
    out = _time_redraws(app, w, ring, 9000.0)
    w.close()
    return out


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
                "redraw_1h_10hz_train_overlays": redraw_with_overlays(app),
                "event_loop_during_run": loop_latency(app),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
