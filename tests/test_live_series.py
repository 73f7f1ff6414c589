"""The live view's Qt-free side (core/measure/live.py): gaps stay gaps, throughput never
averages a pause in, training curves keep a diverged epoch's nulls as gaps, power and energy
carry their source labels, the session's energy total survives the runs, and a run's traces are
aligned at its start so the baseline overlays the next run.

No Qt and no processes: ring buffers and worker events are fed by hand."""

from __future__ import annotations

import math

import numpy as np

from wattlab.core.measure.live import (
    GAP_INTERVALS,
    EnergyTally,
    GapSeries,
    LiveRun,
    Series,
    ThroughputTracker,
    TrainingCurves,
    energy_label,
    extents,
    live_series,
    power_now,
    quality_of,
    throughput_unit,
)
from wattlab.core.measure.sampling import RingBuffers


def ring_of(start: float, n: int, **values: float | None) -> RingBuffers:
    ring = RingBuffers(n + 100)  # room for points a test appends
    for k in range(n):
        ring.append(start + 0.1 * k, dict(values))
    return ring


def steps(tr: ThroughputTracker, t0: float, n: int, dt: float, items0: int, per: int) -> float:
    """``n`` step events ``dt`` apart, ``per`` items each; returns the last time."""
    t = t0
    for k in range(n):
        t = t0 + k * dt
        tr.add(t, items0 + k * per)
    return t


# -- throughput and gaps ---------------------------------------------------------------------------
def test_throughput_breaks_at_a_pause_instead_of_averaging_it_in():
    tr = ThroughputTracker()
    last = steps(tr, 100.0, 20, 0.2, 0, 10)  # 50 items/s
    steps(tr, last + 30.0, 5, 0.2, 200, 10)  # an eval phase of 30 s, then 50 items/s again
    t, v = tr.arrays()
    assert np.allclose(v[np.isfinite(v)], 50.0)  # no 10 items / 30 s point: a pause is no rate
    gap = np.flatnonzero(np.isnan(v))
    assert gap.size == 1 and last < t[gap[0]] < last + 30.0  # one break, inside the pause
    assert np.all(np.diff(t) > 0)  # still sorted (clip-to-view searches x)


def test_throughput_of_a_steady_stream_has_no_gap_and_a_restart_gives_no_negative_rate():
    tr = ThroughputTracker()
    last = steps(tr, 0.0, 30, 0.2, 0, 4)
    assert not np.isnan(tr.v).any() and len(tr.v) == 29
    tr.add(last + 0.2, 0)  # a lottery round's new training pass counts from 0 again
    tr.add(last + 0.4, 4)
    assert np.all(tr.v[np.isfinite(tr.v)] >= 0) and math.isclose(tr.v[-1], 20.0)
    tr.reset()
    assert len(tr.t) == 0


def test_a_pause_is_measured_against_the_streams_own_rhythm():
    slow, fast = GapSeries(), GapSeries()
    for k in range(10):
        slow.add(3.0 * k, 1.0)  # a big model: one step every 3 s
        fast.add(0.2 * k, 1.0)
    slow.add(27.0 + 3.0 * (GAP_INTERVALS - 1), 1.0)  # late, but within its rhythm
    fast.add(1.8 + 0.2 * (GAP_INTERVALS + 1), 1.0)  # later than GAP_INTERVALS intervals
    assert not np.isnan(slow.v).any()
    assert np.isnan(fast.v).sum() == 1


def test_gap_series_arrays_do_not_change_under_a_drawn_view():
    s = GapSeries()
    for k in range(300):  # past the first buffer: it grows
        s.add(float(k), float(k))
    t, v = s.arrays()
    drawn = v.copy()
    for k in range(300, 700):
        s.add(float(k), -1.0)
    assert np.array_equal(v, drawn) and len(s) == 700 and s.v[-1] == -1.0


# -- training curves -------------------------------------------------------------------------------
def test_training_curves_keep_a_diverged_epochs_nulls_as_gaps():
    tc = TrainingCurves()
    tc.add_step(1.0, {"event": "step", "items": 8, "loss": 0.7})
    tc.add_step(1.2, {"event": "step", "items": 16, "loss": None})  # non-finite, sent as null
    tc.add_step(1.4, {"event": "step", "items": 24})  # an inference step: no loss, no point
    tc.add_epoch(2.0, {"epoch": 1, "train_loss": 0.6, "eval_loss": 0.5, "accuracy": 0.8})
    tc.add_epoch(3.0, {"epoch": 2, "train_loss": None, "eval_loss": None, "accuracy": None})
    assert tc.step_loss.v[0] == 0.7 and math.isnan(tc.step_loss.v[1]) and len(tc.step_loss) == 2
    assert tc.quality_name == "accuracy"
    assert tc.quality[0] == 0.8 and math.isnan(tc.quality[1])
    assert math.isnan(tc.train_loss[1]) and math.isnan(tc.eval_loss[1])


def test_quality_is_what_epoch_text_prints():
    assert quality_of({"accuracy": 0.9, "macro_f1": 0.8}) == ("accuracy", 0.9)
    name, ppl = quality_of({"eval_loss": None, "perplexity": None})  # a diverged LM
    assert name == "perplexity" and math.isnan(ppl)
    assert quality_of({"perplexity": 12.5}) == ("perplexity", 12.5)
    assert quality_of({"eval_loss": 1.0})[0] is None


# -- power and energy labels -----------------------------------------------------------------------
def test_power_now_is_unknown_when_a_part_is_unknown_and_carries_the_weakest_label():
    t = np.array([0.0, 0.1])
    cpu = Series("CPU power", "W", "estimated", t, np.array([10.0, 12.0]))
    gpu = Series("gpu0 power", "W", "reading", t, np.array([100.0, 101.0]))
    mem = Series("process memory", "MiB", "reading", t, np.array([1.0, 2.0]))
    assert power_now([cpu, gpu, mem]) == (113.0, "estimated")
    rapl = Series("CPU power", "W", "measured", t, np.array([5.0, 6.0]))
    assert power_now([rapl, gpu]) == (107.0, "measured")  # an NVML reading is measured
    lost = Series("gpu0 power", "W", "reading", t, np.array([100.0, np.nan]))
    assert power_now([cpu, lost]) == (None, None)  # not 12 W: the GPU's part is unknown
    assert power_now([mem]) == (None, None)


def test_energy_label_follows_the_sensors_that_fed_the_ring():
    rapl = ring_of(0.0, 3, **{"rapl.package-0.energy_uj": 1.0})
    assert energy_label(rapl) == "measured"
    counter = ring_of(0.0, 3, **{"gpu0.energy_mj": 5.0, "gpu0.power_w": 100.0})
    assert energy_label(counter) == "measured"
    dead = ring_of(0.0, 3, **{"gpu0.energy_mj": None, "gpu0.power_w": 100.0})
    assert energy_label(dead) == "integrated"  # the counter never read: power is integrated
    est = ring_of(0.0, 3, **{"rapl.package-0.energy_uj": 1.0, "est.ram_power_w": 2.0})
    assert energy_label(est) == "estimated"
    assert energy_label(ring_of(0.0, 3, **{"sys.cpu_util_pct": 5.0})) is None


def test_energy_tally_keeps_the_comparison_total_until_a_new_session():
    tally = EnergyTally()
    tally.begin_run()
    tally.update(40.0, "measured")
    tally.update(100.0, "measured")  # the sampler's reading grows within a run
    tally.begin_run()
    tally.begin_run()  # twice in a row (side, then title): counted once
    assert (tally.total_j, tally.runs, tally.run_j) == (100.0, 1, None)
    tally.update(30.0, "estimated")
    tally.update(float("nan"), "estimated")  # not a reading: the last one stands
    assert (tally.run_j, tally.total_j, tally.runs) == (30.0, 130.0, 2)
    assert tally.total_label == "estimated" and tally.run_label == "estimated"
    tally.begin_session()
    assert tally.total_j is None and tally.runs == 0


# -- one run's traces ------------------------------------------------------------------------------
def sensors(start: float, n: int) -> RingBuffers:
    return ring_of(
        start,
        n,
        **{
            "est.cpu_power_w": 10.0,
            "sys.cpu_util_pct": 50.0,
            "proc.rss_bytes": 2.0**30,
            "gpu0.power_w": 100.0,
            "gpu0.mem_used_bytes": 2.0**31,
        },
    )


def test_two_runs_traces_line_up_at_their_starts():
    runs = []
    for start in (1000.0, 5000.0):
        run = LiveRun("infer")
        for k in range(10):
            run.on_event({"event": "step", "items": 8 * k}, start + 1.0 + 0.2 * k)
        runs.append({tr.name: tr for tr in run.traces(live_series(sensors(start, 50)))})
    a, b = runs
    assert (
        set(a)
        == set(b)
        == {
            "gpu0 power (measured)",
            "gpu0 memory",
            "CPU power (estimated)",
            "CPU utilisation",
            "process memory",
            "items/s",
        }
    )
    for name in a:
        assert np.allclose(a[name].t, b[name].t), name
    assert a["CPU power (estimated)"].t[0] == 0.0
    assert math.isclose(a["items/s"].t[0], 1.2)  # the events and the sampler share a clock
    assert a["gpu0 memory"].panel == "memory" and a["gpu0 memory"].v[0] == 2048.0
    assert {tr.panel for tr in a.values()} == {"power", "memory", "throughput", "utilisation"}


def test_rag_runs_count_queries_and_training_runs_draw_losses():
    rag = LiveRun("rag")
    for k in range(1, 4):
        rag.on_event({"event": "step", "batch": k, "batches": 9, "items": k}, float(k))
    assert throughput_unit("rag") == "queries/s" and throughput_unit("infer") == "items/s"
    assert [tr.name for tr in rag.traces([])] == ["queries/s"]
    train = LiveRun("train")
    train.on_event({"event": "phase", "name": "train"}, 0.0)
    for k in range(5):
        train.on_event({"event": "step", "items": 8 * k, "loss": 1.0 / (k + 1)}, 0.2 * k)
    train.on_event({"event": "epoch", "epoch": 1, "train_loss": 0.5, "perplexity": 9.0}, 2.0)
    train.on_event({"event": "epoch", "epoch": 2, "train_loss": None, "eval_loss": 2.1}, 3.0)
    train.on_event({"event": "round", "round": 1, "sparsity": 0.2}, 2.5)
    by_name = {tr.name: tr for tr in train.traces([])}
    assert by_name["loss per step"].panel == "loss" and len(by_name["loss per step"].v) == 5
    assert by_name["eval loss (epoch)"].markers and math.isnan(by_name["eval loss (epoch)"].v[0])
    assert list(by_name["train loss (epoch)"].v[:1]) == [0.5]
    assert math.isnan(by_name["train loss (epoch)"].v[1])  # the diverged epoch: a gap
    assert by_name["perplexity"].panel == "quality" and by_name["perplexity"].v[0] == 9.0
    only_nulls = LiveRun("train")
    only_nulls.on_event({"event": "epoch", "epoch": 1, "train_loss": None, "accuracy": None}, 1)
    assert only_nulls.traces([]) == []  # nothing to draw: no empty legend entries either
    assert train.phase == "train" and train.round == {
        "event": "round",
        "round": 1,
        "sparsity": 0.2,
    }


def test_extents_ignore_nan_and_a_state_changes_with_the_points():
    run = LiveRun()
    ring = sensors(0.0, 20)
    ring.append(2.0, {"gpu0.power_w": None, "est.cpu_power_w": 400.0})
    traces = run.traces(live_series(ring))
    t_max, y_max = extents(traces)
    assert t_max == 2.0 and y_max["power"] == 400.0 and y_max["utilisation"] == 50.0
    before = {tr.name: tr.state() for tr in traces}
    ring.append(2.1, {"gpu0.power_w": 100.0, "est.cpu_power_w": 10.0})
    after = {tr.name: tr.state() for tr in run.traces(live_series(ring))}
    assert all(before[n] != after[n] for n in before)
