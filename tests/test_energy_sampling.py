from __future__ import annotations

import time

import numpy as np
import pytest

from tests.fakes.fake_pynvml import FakeClock
from wattlab.core.measure.energy import IDLE_PHASE, EnergyAccumulator
from wattlab.core.measure.sampling import RingBuffers, Sampler, Schedule
from wattlab.core.measure.sensors.base import EnergyChannel

POWER = EnergyChannel("gpu0", "p", "power", "integrated", "trapezoid")
COUNTER = EnergyChannel("gpu0", "e", "counter", "measured", "counter", scale_j=1e-3)


def feed(acc, fn, key, t_end, dt):
    n = int(round(t_end / dt))
    for k in range(n + 1):
        t = k * dt
        acc.add(t, {key: fn(t)})


def test_trapezoid_is_exact_for_piecewise_linear_power():
    acc = EnergyAccumulator([POWER])
    acc.mark_phase(0.0, "run")
    feed(acc, lambda t: 50.0 + 5.0 * t, "p", 20.0, 0.25)  # 50 -> 150 W over 20 s
    (e,) = acc.results(20.0)
    assert e.gross_j == pytest.approx(50 * 20 + 2.5 * 400, rel=1e-12)  # 2000 J


def test_idle_baseline_gives_gross_and_net():
    acc = EnergyAccumulator([POWER])
    acc.mark_phase(0.0, IDLE_PHASE)
    acc.mark_phase(2.0, "run")
    feed(acc, lambda t: 30.0 if t <= 2.0 else 130.0, "p", 12.0, 0.5)
    (e,) = acc.results(12.0)
    # The step happens inside (2.0, 2.5]: that interval's trapezoid is (30+130)/2 = 80 W.
    assert e.idle_power_w == pytest.approx(30.0)
    assert e.gross_j == pytest.approx(80 * 0.5 + 130 * 9.5)
    assert e.net_j == pytest.approx(e.gross_j - 30.0 * 10.0)
    assert e.duration_s == pytest.approx(10.0)


def test_the_wait_for_power_to_settle_is_not_in_the_total():
    from wattlab.core.protocol import SETTLE_PHASE

    acc = EnergyAccumulator([POWER])
    acc.mark_phase(0.0, SETTLE_PHASE)
    acc.mark_phase(4.0, IDLE_PHASE)
    acc.mark_phase(6.0, "run")
    feed(acc, lambda t: 30.0 if t <= 6.0 else 130.0, "p", 16.0, 0.5)
    (e,) = acc.results(16.0)
    assert e.gross_j == pytest.approx(80 * 0.5 + 130 * 9.5)  # the run only, as without settle
    assert SETTLE_PHASE not in e.by_phase_j and e.duration_s == pytest.approx(10.0)
    assert acc.total_j() == pytest.approx(e.gross_j)


def test_phase_boundary_between_ticks_is_split_by_time():
    acc = EnergyAccumulator([COUNTER])
    acc.mark_phase(0.0, "warmup")
    acc.mark_phase(0.75, "train")
    feed(acc, lambda t: 100_000.0 * t, "e", 2.0, 0.5)  # counter in mJ: a constant 100 W
    (e,) = acc.results(2.0)
    assert e.by_phase_j["warmup"] == pytest.approx(75.0)
    assert e.by_phase_j["train"] == pytest.approx(125.0)


def test_short_window_is_flagged_per_phase_not_per_run():
    slow = EnergyChannel("gpu1", "e", "counter", "measured", "counter", 1e-3, update_period_s=0.1)
    acc = EnergyAccumulator([slow, POWER])
    acc.mark_phase(0.0, "load")
    acc.mark_phase(5.0, "infer")
    acc.mark_phase(5.5, "post")
    # The run lasts 10 s (100 counter updates) but the measured phase only 0.5 s (5 updates).
    assert acc.window_warnings(10.0, 0.1) == []
    (warn_counter, warn_power) = acc.window_warnings(0.5, 0.1)
    assert "fewer than 10 updates" in warn_counter and "0.100 s each" in warn_counter
    # Integrated power is only as fine as the sampling interval: 0.25 s ticks over 2 s = 8;
    # the counter read at the window's edges is fine with its 20 updates.
    (only,) = acc.window_warnings(2.0, 0.25)
    assert only.startswith("gpu0:") and "0.250 s each" in only


def test_counter_read_failure_takes_the_delta_across_the_gap():
    fb = EnergyChannel(
        "gpu0", "e", "counter", "measured", "counter", 1e-3, fallback_key="p", update_period_s=0.1
    )
    acc = EnergyAccumulator([fb])
    acc.mark_phase(0.0, "run")
    for k in range(101):  # 100 W; the counter fails between 3.0 and 6.0 s, power reads on
        t = k * 0.1
        failing = 3.0 < t < 6.0
        acc.add(t, {"e": None if failing else 100_000.0 * t, "p": 100.0})
    (e,) = acc.results(10.0)
    assert e.gross_j == pytest.approx(1000.0)  # nothing lost: the counter kept counting
    assert e.label == "measured"
    assert any("delta across the gap" in w for w in e.warnings)
    assert not any("unknown" in w for w in e.warnings)


def test_counter_that_stops_for_good_switches_to_integrated_power():
    fb = EnergyChannel("gpu0", "e", "counter", "measured", "counter", 1e-3, fallback_key="p")
    acc = EnergyAccumulator([fb])
    acc.mark_phase(0.0, "run")
    for k in range(101):
        t = k * 0.1
        acc.add(t, {"e": 200_000.0 * t if t <= 4.0 else None, "p": 200.0})
    (e,) = acc.results(10.0)
    assert e.gross_j == pytest.approx(2000.0)  # 800 J counted + 1200 J integrated
    assert e.label == "integrated"
    assert any("integrated from power readings" in w for w in e.warnings)


def test_counter_lost_without_power_stays_unknown():
    fb = EnergyChannel("gpu0", "e", "counter", "measured", "counter", 1e-3, fallback_key="p")
    acc = EnergyAccumulator([fb])
    acc.mark_phase(0.0, "run")
    for k in range(101):
        t = k * 0.1
        lost = t > 5.0
        acc.add(t, {"e": None if lost else 100_000.0 * t, "p": None if lost else 100.0})
    (e,) = acc.results(10.0)
    assert e.gross_j == pytest.approx(500.0)
    assert e.label == "measured"
    assert any("energy there is unknown" in w for w in e.warnings)


def test_peak_at_a_steady_load_equals_that_load():
    clock = FakeClock()

    class Steady:
        name = "steady"

        def channels(self):
            return [EnergyChannel("gpu0", "e", "counter", "measured", "c", 1e-3)]

        def read(self):
            # A counter quantised to 5 J steps (a coarse driver): per-tick rates jump around.
            return {"e": 1000.0 * (5.0 * ((250.0 * clock()) // 5.0))}

        def close(self):
            pass

    s = Sampler([Steady()], interval_s=0.05, clock=clock)
    s.mark_phase("run")
    for _ in range(400):
        s.tick()
        clock.advance(0.05)
    (e,) = s.energy.results(clock())
    assert e.peak_power_w == pytest.approx(250.0, rel=0.05)
    assert e.mean_power_w == pytest.approx(250.0, rel=0.02)


def test_idle_spread_is_recorded_and_negative_net_is_a_warning():
    acc = EnergyAccumulator([POWER])
    acc.mark_phase(0.0, IDLE_PHASE)
    acc.mark_phase(2.0, "run")
    # A noisy, high idle (busy neighbour), then a run that draws less than it.
    feed(acc, lambda t: (60.0 + (5.0 if int(t * 2) % 2 else -5.0)) if t <= 2.0 else 40.0,
         "p", 6.0, 0.25)
    (e,) = acc.results(6.0)
    sp = e.idle_power_spread_w
    assert sp["min"] < 60.0 < sp["max"] and sp["sd"] > 0
    assert e.net_j is None
    assert any("net of idle came out negative" in w for w in e.warnings)


def test_net_subtracts_idle_only_over_covered_time():
    acc = EnergyAccumulator([POWER])
    acc.mark_phase(0.0, IDLE_PHASE)
    acc.mark_phase(2.0, "run")
    for k in range(49):  # power readings missing between 6 and 8 s
        t = k * 0.25
        acc.add(t, {"p": None if 6.0 < t < 8.0 else (10.0 if t <= 2.0 else 110.0)})
    (e,) = acc.results(12.0)
    covered = e.covered_by_phase_s["run"]
    assert covered == pytest.approx(10.0 - 2.0)  # from the last reading (6 s) to the next (8 s)
    assert e.net_j == pytest.approx(e.gross_j - 10.0 * covered)


def test_schedule_is_drift_free_and_skips_missed_slots():
    s = Schedule(start=10.0, interval_s=0.1)
    clock = 10.0
    due = []
    for _ in range(50):
        due.append(s.due)
        clock = s.due + 0.003  # every tick costs 3 ms
        assert s.advance(clock) == 0
    assert due == pytest.approx([10.0 + 0.1 * k for k in range(50)], abs=1e-9)
    # A 0.35 s stall: slots at +0.1, +0.2, +0.3 are skipped, the next due is +0.4.
    before = s.due
    assert s.advance(before + 0.35) == 3
    assert s.due == pytest.approx(before + 0.4)


def test_sampler_thread_keeps_its_schedule():
    calls = []

    class Sensor:
        name = "fake"

        def channels(self):
            return [POWER]

        def read(self):
            calls.append(time.monotonic())
            return {"p": 10.0}

        def close(self):
            pass

    batches = []
    s = Sampler([Sensor()], interval_s=0.02, on_batch=batches.append, batch_size=5)
    s.start()
    assert s.wait_first_sample(2.0)
    s.mark_phase("run")
    time.sleep(0.5)
    s.stop()
    assert s.stats.ticks >= 10
    stored = sum(len(b) for b in batches)
    assert stored == s.stats.ticks  # every sample reached the store, final flush included
    ts = np.array(calls[:-1])  # the last read is the stop() tick, off-schedule on purpose
    slots = np.round((ts - ts[0]) / 0.02)
    assert np.all(np.diff(slots) >= 1)  # never two reads in one slot


def test_ring_buffer_keeps_newest_in_order():
    r = RingBuffers(4)
    for k in range(6):
        r.append(float(k), {"a": float(k * 10)} if k != 4 else {"b": 1.0})
    t, a = r.series("a")
    assert t.tolist() == [2.0, 3.0, 4.0, 5.0]
    assert a[0] == 20.0 and a[1] == 30.0 and np.isnan(a[2]) and a[3] == 50.0
    assert len(r) == 4


def test_interval_below_minimum_is_refused():
    with pytest.raises(ValueError, match="at least 0.01"):
        Sampler([], interval_s=0.005)


def test_broken_sensor_does_not_stop_sampling():
    class Broken:
        name = "broken"

        def channels(self):
            return []

        def read(self):
            raise RuntimeError("boom")

        def close(self):
            pass

    clock = FakeClock()
    s = Sampler([Broken()], interval_s=0.1, clock=clock)
    s.tick()
    assert s.stats.ticks == 1 and s.last.values == {}


def test_process_tree_is_rewalked_at_most_every_rescan_interval():
    import subprocess
    import sys

    from wattlab.core.measure.sensors.proctree import ProcessTree

    clock = FakeClock()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; "
            "time.sleep(30)'])\nprint('ok', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tree = ProcessTree(parent.pid, rescan_s=1.0, clock=clock)
        first = tree.refresh()
        assert parent.stdout.readline().strip() == "ok"  # the child exists from now on
        clock.advance(0.5)
        assert tree.refresh() is first and len(first) == 1  # cached: child not seen yet
        clock.advance(0.6)
        assert len(tree.refresh()) == 2  # re-walked after 1 s: child found
    finally:
        for p in ProcessTree(parent.pid, rescan_s=0).refresh()[::-1]:
            p.kill()
