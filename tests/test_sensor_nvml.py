from __future__ import annotations

import sys

import pytest

from tests.fakes.fake_pynvml import FakeClock, FakeGpu, make_module
from wattlab.core.measure.sampling import Sampler
from wattlab.core.measure.sensors import discover
from wattlab.core.measure.sensors.nvml import probe_nvml, visible_indices
from wattlab.core.measure.sensors.proctree import ProcessTree


def _uuid(i: int) -> str:
    return f"GPU-{i}{i}{i}{i}aaaa-0000-0000-0000-00000000000{i}"


def test_counter_present_gives_measured_energy_exactly():
    clock = FakeClock()
    gpu = FakeGpu(power_w=lambda t: 200.0, energy_j=lambda t: 5000.0 + 200.0 * t)
    sensor, st = probe_nvml(nvml=make_module([gpu], clock), env={})
    assert st.available and st.details["gpus"][0]["energy_counter"] is True
    (ch,) = sensor.channels()
    assert (ch.kind, ch.label, ch.key) == ("counter", "measured", "gpu0.energy_mj")
    s = Sampler([sensor], interval_s=0.1, clock=clock)
    s.mark_phase("run")
    for _ in range(101):
        s.tick()
        clock.advance(0.1)
    (e,) = s.energy.results(clock() - 0.1)
    assert e.label == "measured"
    assert e.gross_j == pytest.approx(200.0 * 10.0, abs=1e-6)


def test_counter_absent_falls_back_to_integrated_power():
    clock = FakeClock()
    # Power ramps 100 -> 200 W over 10 s: trapezoid integration is exact for a ramp: 1500 J.
    gpu = FakeGpu(power_w=lambda t: 100.0 + 10.0 * t, energy_j=None)
    sensor, st = probe_nvml(nvml=make_module([gpu], clock), env={})
    assert st.details["gpus"][0]["energy_counter"] is False
    (ch,) = sensor.channels()
    assert (ch.kind, ch.label) == ("power", "integrated")
    s = Sampler([sensor], interval_s=0.1, clock=clock)
    s.mark_phase("run")
    for _ in range(101):
        s.tick()
        clock.advance(0.1)
    (e,) = s.energy.results(10.0)
    assert e.label == "integrated"
    assert e.gross_j == pytest.approx(1500.0, rel=1e-9)
    # Peak = the highest mean over a window of at least 0.5 s: the last 0.5-0.6 s of the ramp.
    assert 196.9 <= e.peak_power_w <= 197.5


def test_unsupported_fields_are_none_and_not_asked_again():
    gpu = FakeGpu(energy_j=lambda t: 0.0, unsupported={"temp", "sm_clock"})
    sensor, _ = probe_nvml(nvml=make_module([gpu]), env={})
    r1 = sensor.read()
    r2 = sensor.read()
    assert r1["gpu0.temp_c"] is None and r2["gpu0.sm_clock_mhz"] is None
    assert r1["gpu0.util_pct"] == 87.0 and r1["gpu0.mem_used_bytes"] == float(1 << 30)
    assert gpu.calls["temp"] == 1  # remembered as unsupported after the first failure
    assert r2["gpu0.lost"] == 0.0


def test_gpu_lost_mid_run_is_marked_and_others_go_on():
    clock = FakeClock()
    g0 = FakeGpu(uuid=_uuid(0), energy_j=lambda t: 100.0 * t, lost_after=5.05)
    g1 = FakeGpu(uuid=_uuid(1), energy_j=lambda t: 50.0 * t)
    sensor, _ = probe_nvml(nvml=make_module([g0, g1], clock), env={})
    s = Sampler([sensor], interval_s=0.1, clock=clock)
    s.mark_phase("run")
    for _ in range(101):
        s.tick()
        clock.advance(0.1)
    last = s.last.values
    assert last["gpu0.lost"] == 1.0 and last["gpu0.power_w"] is None
    assert last["gpu1.lost"] == 0.0 and last["gpu1.power_w"] == 100.0
    by = {e.source: e for e in s.energy.results(10.0)}
    assert by["gpu1"].gross_j == pytest.approx(500.0)
    assert by["gpu0"].gross_j == pytest.approx(500.0, rel=1e-6)  # up to the last good read at 5.0 s
    assert any("unknown" in w for w in by["gpu0"].warnings)


def test_several_gpus_and_cuda_visible_devices():
    gpus = [FakeGpu(name=f"GPU{i}", uuid=_uuid(i), energy_j=lambda t: 0.0) for i in range(4)]
    mod = make_module(gpus)
    sensor, st = probe_nvml(nvml=mod, env={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert [g.nvml_index for g in sensor.gpus] == [2, 0]
    assert [g.label for g in sensor.gpus] == ["gpu0", "gpu1"]
    assert "CUDA_DEVICE_ORDER" in st.details["warning"]
    sensor, st = probe_nvml(nvml=mod, env={})
    assert len(sensor.gpus) == 4
    sensor, st = probe_nvml(nvml=mod, env={"CUDA_VISIBLE_DEVICES": ""})
    assert sensor is None and "hides all 4" in st.reason


def test_visible_indices_follows_cuda_rules():
    uuids = [_uuid(i) for i in range(3)]
    assert visible_indices("1", uuids) == [1]
    assert visible_indices("GPU-2222", uuids) == [2]  # unique UUID prefix
    assert visible_indices("0,7,1", uuids) == [0]  # parsing stops at the first invalid entry
    assert visible_indices("-1", uuids) == []
    assert visible_indices(None, uuids) == [0, 1, 2]


def test_per_process_memory_counts_only_the_tree():
    import os

    gpu = FakeGpu(energy_j=lambda t: 0.0, processes=[(os.getpid(), 3 << 30), (999999, 1 << 30)])
    tree = ProcessTree(os.getpid())
    tree.refresh()
    sensor, _ = probe_nvml(tree, nvml=make_module([gpu]), env={})
    assert sensor.read()["gpu0.proc_mem_bytes"] == float(3 << 30)


@pytest.mark.parametrize(
    "code,needle",
    [(12, "libnvidia-ml.so) not found"), (9, "driver is not loaded"), (4, "permission denied")],
)
def test_discovery_says_why_nvml_is_missing(code, needle):
    _, st = probe_nvml(nvml=make_module([], init_error=code), env={})
    assert not st.available and needle in st.reason


def test_discover_uses_monkeypatched_pynvml(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", make_module([FakeGpu(energy_j=lambda t: 0.0)]))
    found = discover(powercap_root=tmp_path / "none", env={})
    names = [type(s).__name__ for s in found.sensors]
    assert names[0] == "NvmlSensor"
    assert found.statuses[0].available
    found.close()
    assert sys.modules["pynvml"].shutdown_called


def _run(sensor, clock, seconds=10.0, dt=0.1):
    s = Sampler([sensor], interval_s=dt, clock=clock)
    s.mark_phase("run")
    for _ in range(int(round(seconds / dt)) + 1):
        s.tick()
        clock.advance(dt)
    return s, {e.source: e for e in s.energy.results(seconds)}


def test_failing_per_process_query_leaves_energy_alone():
    # Drivers older than R510 answer FUNCTION_NOT_FOUND to the per-process query.
    clock = FakeClock()
    gpu = FakeGpu(energy_j=lambda t: 300.0 * t, errors={"procs": lambda t: 13})
    sensor, _ = probe_nvml(ProcessTree(), nvml=make_module([gpu], clock), env={})
    s, by = _run(sensor, clock)
    assert by["gpu0"].gross_j == pytest.approx(3000.0)
    assert by["gpu0"].label == "measured" and not by["gpu0"].warnings
    assert s.last.values["gpu0.lost"] == 0.0 and s.last.values["gpu0.proc_mem_bytes"] is None
    assert gpu.calls["procs"] == 1  # disabled after its first failure, never asked again
    assert gpu.calls["energy"] > 100  # the counter went on being read every tick


def test_unknown_error_disables_one_field_not_the_gpu():
    clock = FakeClock()
    gpu = FakeGpu(energy_j=lambda t: 100.0 * t, errors={"temp": lambda t: 999})
    sensor, _ = probe_nvml(nvml=make_module([gpu], clock), env={})
    s, by = _run(sensor, clock, 2.0)
    assert s.last.values["gpu0.temp_c"] is None and s.last.values["gpu0.lost"] == 0.0
    assert s.last.values["gpu0.util_pct"] == 87.0
    assert by["gpu0"].gross_j == pytest.approx(200.0)


def test_transient_counter_failure_takes_the_delta_across_the_gap():
    clock = FakeClock()
    gpu = FakeGpu(
        power_w=lambda t: 250.0,
        energy_j=lambda t: 250.0 * t,
        errors={"energy": lambda t: 999 if 2.0 < t < 4.0 else None},  # NVML_ERROR_UNKNOWN
    )
    sensor, _ = probe_nvml(nvml=make_module([gpu], clock), env={})
    _, by = _run(sensor, clock)
    assert by["gpu0"].gross_j == pytest.approx(2500.0)  # both failed intervals recovered
    assert by["gpu0"].label == "measured"
    assert any("delta across the gap" in w for w in by["gpu0"].warnings)


def test_counter_that_stops_for_good_is_integrated_from_power():
    clock = FakeClock()
    gpu = FakeGpu(
        power_w=lambda t: 250.0,
        energy_j=lambda t: 250.0 * t,
        errors={"energy": lambda t: 999 if t > 5.0 else None},
    )
    sensor, _ = probe_nvml(nvml=make_module([gpu], clock), env={})
    _, by = _run(sensor, clock)
    assert by["gpu0"].gross_j == pytest.approx(2500.0, rel=1e-6)
    assert by["gpu0"].label == "integrated"


def test_gpu_is_lost_only_for_lost_codes():
    clock = FakeClock()
    gpu = FakeGpu(energy_j=lambda t: 100.0 * t, errors={"util": lambda t: 16 if t > 1 else None})
    sensor, _ = probe_nvml(nvml=make_module([gpu], clock), env={})
    s, _ = _run(sensor, clock, 2.0)
    assert s.last.values["gpu0.lost"] == 1.0  # RESET_REQUIRED: the GPU needs a reset


def test_instant_power_field_is_preferred_for_power():
    clock = FakeClock()
    gpu = FakeGpu(
        power_w=lambda t: 180.0,  # nvmlDeviceGetPowerUsage: a 1 s average, lagging
        instant_power_w=lambda t: 300.0,
        energy_j=None,
    )
    sensor, st = probe_nvml(nvml=make_module([gpu], clock), env={})
    assert st.details["gpus"][0]["instant_power"] is True
    (ch,) = sensor.channels()
    assert "instant power" in ch.method
    _, by = _run(sensor, clock, 4.0)
    assert by["gpu0"].gross_j == pytest.approx(1200.0)
    assert by["gpu0"].peak_power_w == pytest.approx(300.0)


def test_missing_instant_power_on_ampere_is_warned():
    gpu = FakeGpu(energy_j=None, compute_capability=(8, 0))
    _, st = probe_nvml(nvml=make_module([gpu]), env={})
    assert any("1 s average" in w for w in st.details["warnings"])
    old = FakeGpu(energy_j=None, compute_capability=(7, 0))
    _, st = probe_nvml(nvml=make_module([old]), env={})
    assert "warnings" not in st.details


def test_device_scoping_finds_the_workloads_gpu_by_uuid():
    gpus = [FakeGpu(uuid=_uuid(i), energy_j=lambda t: 0.0) for i in range(3)]
    sensor, _ = probe_nvml(nvml=make_module(gpus), env={})
    # torch prints UUIDs without the GPU- prefix
    assert sensor.source_for_uuid(_uuid(2)[4:]) == "gpu2"
    assert sensor.source_for_uuid(_uuid(1)) == "gpu1"
    assert sensor.source_for_uuid("GPU-ffffffff-0000") is None


def test_mig_instance_maps_to_its_parent_gpu():
    mig = "MIG-0e2f4a5b-1111-2222-3333-444455556666"
    gpus = [
        FakeGpu(uuid=_uuid(0), energy_j=lambda t: 0.0),
        FakeGpu(uuid=_uuid(1), energy_j=lambda t: 0.0, mig_uuids=[mig, "MIG-99"]),
    ]
    sensor, st = probe_nvml(nvml=make_module(gpus), env={"CUDA_VISIBLE_DEVICES": mig})
    (g,) = sensor.gpus
    assert g.nvml_index == 1 and g.label == "gpu0"
    assert st.details["gpus"][0]["mig_instances"] == 2
    assert any("whole GPU, shared by 2 instances" in w for w in st.details["warnings"])
    assert sensor.source_for_uuid(mig) == "gpu0"


def test_other_processes_on_the_gpu_are_counted():
    import os

    gpu = FakeGpu(energy_j=lambda t: 0.0, processes=[(os.getpid(), 1 << 30), (999999, 1 << 30)])
    tree = ProcessTree(os.getpid())
    tree.refresh()
    sensor, _ = probe_nvml(tree, nvml=make_module([gpu]), env={})
    r = sensor.read()
    assert (r["gpu0.tree_procs"], r["gpu0.other_procs"]) == (1.0, 1.0)


def test_profile_scope_counts_the_gpus_the_process_tree_used(tmp_path):
    import os

    from wattlab.core.measure.meter import Measurement, MeasureSettings
    from wattlab.core.measure.sensors import SensorSet
    from wattlab.core.measure.sensors.process import probe_process
    from wattlab.core.measure.store import RunStore

    tree = ProcessTree(os.getpid())
    tree.refresh()
    gpus = [
        FakeGpu(uuid=_uuid(0), energy_j=lambda t: 0.0, processes=[(999999, 1 << 30)]),
        FakeGpu(uuid=_uuid(1), energy_j=lambda t: 0.0, processes=[(os.getpid(), 1 << 30)]),
    ]
    nv, st = probe_nvml(tree, nvml=make_module(gpus), env={})
    proc, pst = probe_process(tree)
    sensors = SensorSet([nv, proc], [st, pst], proc, tree)
    m = Measurement(
        RunStore(tmp_path / "w.db"), "profile", {}, "x", MeasureSettings(0.05, 0.0), sensors
    )
    with m:
        m.phase("run")
        m.scope_to_process_tree()
        r = m.finish("completed")
    by = {e["source"]: e for e in r["energy"]}
    assert by["gpu1"]["in_total"] and not by["gpu0"]["in_total"]
    assert r["total"]["sources"] == ["gpu1"] and "gpu1" in r["scope"]


def _measured_gpus(tmp_path, gpus, device):
    from wattlab.core.measure.meter import Measurement, MeasureSettings
    from wattlab.core.measure.sensors import SensorSet
    from wattlab.core.measure.sensors.process import probe_process
    from wattlab.core.measure.store import RunStore
    from wattlab.core.run.client import SessionRunner, _EventLog

    tree = ProcessTree()
    nv, st = probe_nvml(tree, nvml=make_module(gpus), env={})
    proc, pst = probe_process(tree)
    sensors = SensorSet([nv, proc], [st, pst], proc, tree)
    m = Measurement(
        RunStore(tmp_path / "w.db"), "session", {}, "x", MeasureSettings(0.05, 0.0), sensors
    )
    log = _EventLog()
    log.device = device
    with m:
        m.phase("infer")
        SessionRunner._scope(None, m, log)  # noqa: SLF001 - the parent's scoping step alone
        return m.finish("completed")


def test_a_session_counts_only_the_gpu_it_ran_on(tmp_path):
    gpus = [FakeGpu(uuid=_uuid(i), energy_j=lambda t: 0.0) for i in range(2)]
    # torch reports the UUID without its GPU- prefix
    r = _measured_gpus(
        tmp_path, gpus, {"device": "cuda:0", "uuid": _uuid(1)[4:], "gpu_name": "H100"}
    )
    by = {e["source"]: e for e in r["energy"]}
    assert by["gpu1"]["in_total"] and not by["gpu0"]["in_total"]
    assert r["total"]["sources"] == ["gpu1"] and "gpu0 shown, not summed" in r["scope"]


def test_a_cpu_session_sums_no_gpu_and_an_unmatched_gpu_is_said(tmp_path):
    gpus = [FakeGpu(uuid=_uuid(0), energy_j=lambda t: 0.0)]
    r = _measured_gpus(tmp_path, gpus, {"device": "cpu"})
    assert r["total"]["sources"] == [] and "ran on the CPU" in r["scope"]
    r = _measured_gpus(tmp_path, gpus, {"device": "cuda:0", "uuid": "ffff"})
    assert any("every visible GPU" in w for w in r["warnings"])


def test_a_ddp_session_counts_the_gpus_of_its_ranks_and_only_those(tmp_path):
    gpus = [FakeGpu(uuid=_uuid(i), energy_j=lambda t: 0.0) for i in range(3)]
    ranks = {"device": "cuda:0", "uuid": None, "uuids": [_uuid(0)[4:], _uuid(2)[4:]]}
    r = _measured_gpus(tmp_path, gpus, {**ranks, "gpu_name": "H100"})
    assert r["total"]["sources"] == ["gpu0", "gpu2"]
    assert "the ranks ran on" in r["scope"] and "gpu1 shown, not summed" in r["scope"]
    # One rank's GPU that NVML cannot name: every visible GPU is counted, and that is said.
    r = _measured_gpus(tmp_path, gpus, {**ranks, "uuids": [_uuid(0)[4:], "ffff"]})
    assert any("every visible GPU" in w for w in r["warnings"])
