from __future__ import annotations

import pytest

from tests.fakes.fake_pynvml import FakeClock
from wattlab.core.measure.sampling import Sampler
from wattlab.core.measure.sensors.estimate import (
    DEFAULT_ACTIVE_W,
    DEFAULT_IDLE_W,
    EstimateSensor,
    build_model,
)


class FakeProcess:
    def __init__(self):
        self.last_cpu_time_s = 0.0
        self.last_rss_bytes = 2e9

    def read(self):
        return {}

    def channels(self):
        return []

    def close(self):
        pass

    name = "process"


def test_unknown_cpu_uses_documented_defaults():
    m = build_model("Intel(R) Xeon(R) Processor", 2, 2, 1)
    assert (m.active_w_per_core, m.idle_w_per_core) == (DEFAULT_ACTIVE_W, DEFAULT_IDLE_W)
    assert m.source.startswith("default") and m.name == "wattlab-cpu-v2"


def test_known_cpu_uses_tdp_per_physical_core():
    m = build_model("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz", 112, 56, 1)
    assert m.active_w_per_core == pytest.approx(350 / 56)
    assert m.idle_w_per_core == pytest.approx(0.25 * 350 / 56)
    assert m.max_busy_cores == pytest.approx(56)  # the TDP cap and the cores agree


def test_unknown_128_thread_cpu_is_capped_at_tdp_per_socket():
    m = build_model("Some Future CPU", 128, 64, 1)
    full = m.idle_floor_w + (m.active_w_per_core - m.idle_w_per_core) * m.max_busy_cores
    assert full == pytest.approx(250.0)  # v1 said 128 x 9 = 1152 W
    two = build_model("Some Future CPU", 256, 128, 2)
    assert two.idle_floor_w + 8.0 * two.max_busy_cores == pytest.approx(500.0)


def _run(model, cpu_per_tick_s, ticks=30, dt=0.1):
    proc = FakeProcess()
    clock = FakeClock()
    est = EstimateSensor(proc, model, cpu=True, ram=False, clock=clock)
    s = Sampler([proc, est], interval_s=dt, clock=clock)
    s.mark_phase("run")
    for _ in range(ticks + 1):
        s.tick()
        clock.advance(dt)
        proc.last_cpu_time_s += cpu_per_tick_s
    return next(e for e in s.energy.results(clock() - dt) if e.source == "cpu")


def test_smt_busy_time_counts_against_physical_cores():
    # 4 logical CPUs on 2 cores, all 4 threads busy for 3 s: charged as 2 busy cores.
    smt = build_model("unknown", 4, 2, 1)
    cpu = _run(smt, 0.4)
    assert cpu.gross_j == pytest.approx(smt.idle_floor_w * 3.0 + 8.0 * 2 * 3.0, rel=1e-6)


def test_cpu_time_granularity_is_carried_not_lost():
    # 1 CPU busy on a 2-core machine, but /proc reports it in 10 ms jumps: over one 5 ms
    # interval two ticks show up (busy "4 cores"); the carry charges it in the next ones.
    m = build_model("unknown", 2, 2, 1)
    proc = FakeProcess()
    clock = FakeClock()
    est = EstimateSensor(proc, m, cpu=True, ram=False, clock=clock)
    s = Sampler([proc, est], interval_s=0.01, clock=clock)  # ticked by hand every 5 ms below
    s.mark_phase("run")
    for k in range(401):  # 2 s
        s.tick()
        clock.advance(0.005)
        if k % 4 == 3:  # 20 ms of CPU time every 20 ms, reported at once
            proc.last_cpu_time_s += 0.02
    cpu = next(e for e in s.energy.results(clock() - 0.005) if e.source == "cpu")
    assert cpu.gross_j == pytest.approx(2.0 * 2.0 + 8.0 * 2.0, rel=0.01)


def test_estimate_energy_follows_measured_cpu_time_exactly():
    proc = FakeProcess()
    model = build_model("unknown", 2)
    clock = FakeClock()
    est = EstimateSensor(proc, model, cpu=True, ram=True, clock=clock)
    s = Sampler([proc, est], interval_s=0.1, clock=clock)
    s.mark_phase("idle")
    for _ in range(10):  # 1 s idle: nothing busy
        s.tick()
        clock.advance(0.1)
    s.mark_phase("run")
    for _ in range(31):  # 3 s with 1.5 CPUs busy
        s.tick()
        clock.advance(0.1)
        proc.last_cpu_time_s += 0.15
    by = {e.source: e for e in s.energy.results(clock() - 0.1)}
    cpu = by["cpu"]
    assert cpu.label == "estimated"
    floor = DEFAULT_IDLE_W * 2
    busy_j = (DEFAULT_ACTIVE_W - DEFAULT_IDLE_W) * 0.15 * 30
    assert cpu.idle_power_w == pytest.approx(floor)
    assert cpu.gross_j == pytest.approx(floor * 3.0 + busy_j)
    assert cpu.net_j == pytest.approx(busy_j)
    assert by["ram"].gross_j == pytest.approx(0.375 * 2.0 * 3.0)
