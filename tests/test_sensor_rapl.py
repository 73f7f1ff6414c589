from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.fake_pynvml import FakeClock
from wattlab.core.measure.sampling import Sampler
from wattlab.core.measure.sensors import discover
from wattlab.core.measure.sensors.rapl import probe_rapl

MAX = 262_143_328_850


def zone(root: Path, name: str, label: str, energy: int, max_range: int = MAX) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


@pytest.fixture
def powercap(tmp_path):
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:0:2", "dram", 2_000_000)
    zone(root, "intel-rapl:1", "psys", 9_000_000)
    (root / "intel-rapl").mkdir()  # the control-type folder, no counters
    return root


def test_counts_package_and_dram_only(powercap):
    sensor, st = probe_rapl(powercap)
    assert st.available
    assert sorted(z.domain for z in sensor.zones) == ["dram-0", "package-0"]
    assert any("psys" in n for n in st.details["notes"])
    assert {c.source for c in sensor.channels()} == {"cpu", "ram"}
    assert all(c.label == "measured" for c in sensor.channels())


def test_wraparound_is_unwrapped(powercap):
    sensor, _ = probe_rapl(powercap)
    clock = FakeClock()
    s = Sampler([sensor], interval_s=0.1, clock=clock)
    s.mark_phase("run")
    pkg = powercap / "intel-rapl:0" / "energy_uj"
    values = [MAX - 3_000_000, MAX - 1_000_000, 500_000, 2_500_000]  # wraps once
    for v in values:
        pkg.write_text(f"{v}\n")
        s.tick()
        clock.advance(1.0)
    cpu = next(e for e in s.energy.results(3.0) if e.source == "cpu")
    # (2e6) + (1e6 + 5e5) + (2e6) microjoules = 5.5 J; wrap = max_energy_range_uj
    assert cpu.gross_j == pytest.approx(5.5, abs=1e-9)
    assert cpu.label == "measured"


def test_permission_denied_is_reported_not_estimated(powercap, monkeypatch):
    real = Path.read_text

    def deny(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", deny)
    sensor, st = probe_rapl(powercap)
    assert sensor is None and not st.available
    assert "permission denied" in st.reason and "energy_uj" in st.reason
    found = discover(powercap_root=powercap, env={"CUDA_VISIBLE_DEVICES": ""})
    rapl = next(s for s in found.statuses if s.name == "rapl")
    assert "permission denied" in rapl.reason


def test_missing_tree_says_why(tmp_path):
    _, st = probe_rapl(tmp_path / "nope")
    assert "does not exist" in st.reason


def test_dram_present_means_no_ram_estimate(powercap):
    found = discover(powercap_root=powercap, env={"CUDA_VISIBLE_DEVICES": ""})
    est = next(s for s in found.statuses if s.name == "estimate")
    assert not est.available and "RAPL measures" in est.reason


def test_package_without_dram_estimates_ram_only(tmp_path):
    root = tmp_path / "pc"
    zone(root, "intel-rapl:0", "package-0", 10)
    found = discover(powercap_root=root, env={"CUDA_VISIBLE_DEVICES": ""})
    est = next(s for s in found.statuses if s.name == "estimate")
    assert est.available and est.details["covers"] == ["ram"]
