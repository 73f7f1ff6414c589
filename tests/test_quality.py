"""Measurement quality: which sensors are live and why not the rest (with the fake powercap tree
and the fake pynvml), other processes' load from CPU-time deltas, and the badge of a run or a
comparison, built from what the recorders actually write."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.fake_pynvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeGpu, make_module
from tests.test_sensor_rapl import zone
from wattlab.core.measure.energy import EnergyAccumulator
from wattlab.core.measure.meter import Snapshot, contention
from wattlab.core.measure.sensors.base import EnergyChannel, SensorStatus
from wattlab.core.results import Verdict
from wattlab.core.run.client import _disturbed_text
from wattlab.core.run.quality import (
    BackgroundLoad,
    LoadMeter,
    comparison_badge,
    gpu_load,
    probe_sensor_status,
    run_badge,
    sensor_status,
    sensors_text,
    sensors_tooltip,
)
from wattlab.core.run.stats import paired_interval


# -- sensors ---------------------------------------------------------------------------------------
def _powercap(root: Path, dram: bool = True) -> Path:
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    if dram:
        zone(root, "intel-rapl:0:2", "dram", 2_000_000)
    return root


def test_everything_measured_with_rapl_and_an_nvml_counter(tmp_path):
    gpu = FakeGpu(energy_j=lambda t: 100.0 * t)
    states = probe_sensor_status(_powercap(tmp_path / "pc"), make_module([gpu]), env={})
    got = {s.name: (s.live, s.label, s.source, s.reason) for s in states}
    assert got == {
        "CPU": (True, "measured", "RAPL", None),
        "RAM": (True, "measured", "RAPL", None),
        "GPU": (True, "measured", "NVML", None),
    }
    assert sensors_text(states) == "CPU+RAM: measured (RAPL) · GPU: measured (NVML)"


def test_no_powercap_and_no_driver_say_why(tmp_path):
    nvml = make_module([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    states = probe_sensor_status(tmp_path / "missing", nvml, env={})
    by = {s.name: s for s in states}
    assert by["CPU"].label == "estimated" and not by["CPU"].live
    assert by["CPU"].source == "estimate model" and "does not exist" in by["CPU"].reason
    assert by["RAM"].label == "estimated"
    assert by["GPU"].label is None and "no NVIDIA driver" in by["GPU"].reason
    assert sensors_text(states) == "CPU+RAM: estimated (no RAPL) · GPU: none (no NVML)"
    tip = sensors_tooltip(states)
    assert "GPU: not measured - NVML library (libnvidia-ml.so) not found" in tip
    assert "CPU: estimated by estimate model - " in tip


def test_rapl_without_dram_estimates_ram_only(tmp_path):
    states = probe_sensor_status(
        _powercap(tmp_path / "pc", dram=False), make_module([FakeGpu(energy_j=None)]), env={}
    )
    by = {s.name: s for s in states}
    assert (by["CPU"].label, by["RAM"].label) == ("measured", "estimated")
    assert "no readable DRAM zone" in by["RAM"].reason
    assert (by["GPU"].label, by["GPU"].live) == ("integrated", True)  # no energy counter
    assert sensors_text(states) == (
        "CPU: measured (RAPL) · RAM: estimated (no RAPL DRAM) · GPU: integrated (NVML power only)"
    )


def test_permission_denied_reason_reaches_the_tooltip():
    why = "permission denied reading /sys/class/powercap/intel-rapl:0/energy_uj (root-only)"
    states = sensor_status(
        [
            SensorStatus("nvml", False, "NVIDIA driver is not loaded"),
            SensorStatus("rapl", False, why),
            SensorStatus("process", True),
            SensorStatus("estimate", True, None, {"covers": ["cpu", "ram"]}),
        ]
    )
    assert why in sensors_tooltip(states)
    assert "GPU: none (no NVML)" in sensors_text(states)


def test_several_gpus_are_named_as_such():
    gpus = [{"energy_counter": True}, {"energy_counter": True}]
    (gpu,) = [
        s
        for s in sensor_status([SensorStatus("nvml", True, None, {"gpus": gpus})])
        if s.name.startswith("GPU")
    ]
    assert gpu.text() == "GPU x2: measured (NVML)"


# -- other processes' load -------------------------------------------------------------------------
class _Script:
    def __init__(self, values):
        self.values = list(values)

    def __call__(self):
        return self.values.pop(0)


def test_load_is_machine_busy_time_less_this_apps_tree():
    meter = LoadMeter(
        read_busy=_Script([100.0, 103.0, 103.5]),
        read_own=_Script([(10.0, {1}), (11.0, {1}), (20.0, {1})]),
        cpus=4,
        clock=_Script([0.0, 2.0, 4.0]),
        use_gpu=False,
    )
    assert meter.sample() is None  # the first call only opens the window
    load = meter.sample()
    # 3 busy CPU-seconds, 1 of them ours, over 2 s of 4 CPUs: 25%
    assert load.cpu_share == pytest.approx(0.25) and load.window_s == 2.0
    assert load.text() == "other processes: CPU 25%" and load.busy
    # our tree used more than the machine saw (a reaped child's time arrived late): not negative
    assert meter.sample().cpu_share == 0.0


def test_unreadable_proc_gives_unknown_load():
    meter = LoadMeter(read_busy=lambda: None, read_own=lambda: (0.0, set()), use_gpu=False)
    assert meter.sample() is None and meter.sample() is None
    assert BackgroundLoad(None, 3.0).text() == "other processes: CPU -"


def test_gpu_load_counts_other_processes_and_only_others_utilisation():
    ours = FakeGpu(processes=[(100, 1 << 20), (555, 1 << 20)])  # we run here: util is ours
    theirs = FakeGpu(uuid="GPU-1", processes=[(777, 1 << 20)])
    nvml = make_module([ours, theirs])
    assert gpu_load(nvml, own_pids={100}) == (2, 87.0)
    meter = LoadMeter(
        read_busy=_Script([0.0, 0.1]),
        read_own=_Script([(0.0, {100}), (0.0, {100})]),
        cpus=1,
        clock=_Script([0.0, 1.0]),
        nvml=nvml,
    )
    meter.sample()
    load = meter.sample()
    assert (load.gpu_other_procs, load.gpu_util_pct) == (2, 87.0)
    assert load.text() == "other processes: CPU 10%, GPU 87% (2 on the GPU)" and load.busy
    meter.close()
    assert nvml.shutdown_called


def test_gpu_load_without_process_listing_is_unknown():
    gpu = FakeGpu(unsupported={"procs"})
    assert gpu_load(make_module([gpu]), set()) == (None, None)


# -- run badges ------------------------------------------------------------------------------------
def _contention(other_cpu_s: float) -> dict:
    """What the measured phase's contention check records: 10 s on 2 CPUs."""
    before = Snapshot(0.0, "infer", {"sys.busy_cpu_s": 0.0, "proc.cpu_time_s": 0.0})
    after = Snapshot(10.0, "post", {"sys.busy_cpu_s": 10.0 + other_cpu_s, "proc.cpu_time_s": 10.0})
    return contention(before, after, logical_cpus=2)


def _short_warning() -> str:
    """The warning a measured phase too short for its sensor gets (from the real code)."""
    ch = EnergyChannel("gpu0", "gpu0.energy_mj", "counter", "measured", "NVML", 1e-3, None, 0.1)
    (w,) = EnergyAccumulator([ch]).window_warnings(0.4, 0.1)
    return w


def _run(**kw) -> dict:
    base = {
        "run_id": 7,
        "status": "completed",
        "total": {"gross_j": 10.0, "label": "measured"},
        "measured_phase": {"gross_j": 8.0, "label": "measured", "duration_s": 5.0},
        "contention": _contention(0.5),
        "warnings": [],
    }
    return {**base, **kw}


def test_a_quiet_run_is_clean():
    b = run_badge(_run())
    assert (b.kind, b.text, b.clean) == ("clean", "clean", True)
    assert "2% of the CPUs" in b.reason


def test_a_disturbed_run_says_so_with_the_recorded_sentence():
    c = _contention(6.0)  # 6 of 20 CPU-seconds: 30% > 10%
    assert c["disturbed"]
    b = run_badge(_run(contention=c, warnings=[_disturbed_text(c)]))
    assert b.kind == "disturbed" and b.text == "disturbed"
    assert b.reason.startswith("disturbed run: other processes used 30% of the CPUs")


def test_a_disturbed_run_without_its_warning_still_explains():
    b = run_badge(_run(contention={"disturbed": True, "other_gpu_processes": 2}))
    assert b.kind == "disturbed" and "2 other process(es) ran on the measured GPU" in b.reason


def test_a_measured_phase_too_short_for_its_sensor():
    w = _short_warning()
    b = run_badge(_run(warnings=["something else", w]))
    assert b.kind == "too short" and b.reason == w


@pytest.mark.parametrize("status", ["cancelled", "failed", "interrupted"])
def test_an_unfinished_run_shows_its_status_first(status):
    c = _contention(6.0)
    b = run_badge(_run(status=status, message="stopped by the user", contention=c))
    assert b.kind == status
    assert b.problems[0] == f"{status}: stopped by the user"
    assert any(p.startswith("disturbed run") for p in b.problems)  # every problem is listed


def test_a_run_without_energy_or_result():
    b = run_badge({"run_id": 3, "status": "completed", "warnings": []})
    assert b.kind == "no energy"
    assert run_badge(None).text == "no result"


def test_a_run_that_recorded_no_contention_is_clean_but_says_so():
    b = run_badge(_run(contention=None))
    assert b.clean and "did not record other processes' load" in b.reason


# -- comparison badges -----------------------------------------------------------------------------
def _verdict(verdict: str, pairs: int) -> dict:
    return Verdict(
        "energy_per_item_j",
        "Energy per item",
        "J",
        1.0,
        0.9,
        None,
        None,
        -0.1,
        -10.0,
        None,
        verdict,
        "measured",
        pairs,
        "primary",
    ).to_dict()


def _comp(pairs: int = 3, verdict: str = "better", per_run: list | None = None, **kw) -> dict:
    if per_run is None:
        per_run = [
            {"run_id": 10 + k, "side": s, "disturbed": False, "replaced_by_pair": None}
            for k, s in enumerate(["baseline", "optimized"] * pairs)
        ]
    base = {
        "comparison_id": 5,
        "status": "completed",
        "repeats": pairs,
        "pairs_completed": pairs,
        "verdicts": [_verdict(verdict, pairs)],
        "per_run": per_run,
    }
    return {**base, **kw}


def test_a_clean_comparison():
    b = comparison_badge(_comp())
    assert b.clean and "none of the runs in the verdict disturbed" in b.reason


def test_disturbed_runs_in_the_verdict_make_a_disturbed_comparison():
    comp = _comp()
    comp["per_run"][1]["disturbed"] = True
    b = comparison_badge(comp)
    assert b.kind == "disturbed"
    assert b.reason == "1 of the 6 runs in the verdict were disturbed by other processes"


def test_a_disturbed_pair_replaced_by_its_rerun_no_longer_counts():
    comp = _comp()
    comp["per_run"][0].update(disturbed=True, replaced_by_pair=3)
    assert comparison_badge(comp).clean


def test_old_comparisons_flag_disturbed_runs_by_their_contention():
    comp = _comp(per_run=[{"run_id": 1, "contention": {"disturbed": True}}])
    assert comparison_badge(comp).kind == "disturbed"


def test_too_few_repeats_comes_from_the_verdict_itself():
    iv = paired_interval([1.0, 1.1], [0.9, 0.95], lower_is_better=True)
    assert iv.verdict == "too few repeats"
    b = comparison_badge(_comp(pairs=2, verdict=iv.verdict))
    assert b.kind == "too few repeats" and "at least 3" in b.reason


def test_a_cancelled_comparison_lists_its_other_problems():
    b = comparison_badge(_comp(pairs=1, verdict="too few repeats", status="cancelled", repeats=5))
    assert b.kind == "cancelled"
    assert b.problems == ("stopped after 1 of 5 pairs", "1 pair(s): a verdict needs at least 3")


def test_a_comparison_with_a_short_run_when_its_runs_are_given():
    comp = _comp()
    runs = {11: _run(warnings=[_short_warning()])}
    assert comparison_badge(comp).clean
    b = comparison_badge(comp, runs)
    assert b.kind == "too short" and b.reason.startswith("run 11: gpu0: the measured phase")
