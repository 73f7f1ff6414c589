from __future__ import annotations

import pytest

from tests.fakes.fake_pynvml import FakeClock
from wattlab.core.sampling import Sampler
from wattlab.core.sensors.estimate import (
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
    m = build_model("Intel(R) Xeon(R) Processor", 2)
    assert (m.active_w_per_cpu, m.idle_w_per_cpu) == (DEFAULT_ACTIVE_W, DEFAULT_IDLE_W)
    assert m.source.startswith("default")


def test_known_cpu_uses_tdp_per_thread():
    m = build_model("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz", 112)
    assert m.active_w_per_cpu == pytest.approx(350 / 112)
    assert m.idle_w_per_cpu == pytest.approx(0.25 * 350 / 112)


def test_estimate_energy_follows_measured_cpu_time_exactly():
    proc = FakeProcess()
    model = build_model("unknown", 2)
    est = EstimateSensor(proc, model, cpu=True, ram=True)
    clock = FakeClock()
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
    by = {e.source: e for e in s.energy.results(clock() - 0.1, 0.1)}
    cpu = by["cpu"]
    assert cpu.label == "estimated"
    floor = DEFAULT_IDLE_W * 2
    busy_j = (DEFAULT_ACTIVE_W - DEFAULT_IDLE_W) * 0.15 * 30
    assert cpu.idle_power_w == pytest.approx(floor)
    assert cpu.gross_j == pytest.approx(floor * 3.0 + busy_j)
    assert cpu.net_j == pytest.approx(busy_j)
    assert by["ram"].gross_j == pytest.approx(0.375 * 2.0 * 3.0)
