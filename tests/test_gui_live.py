"""The Live tab (app/widgets/live.py) as a researcher keeps it open: a header that says what is
running and what ended, energy that says what it covers, the baseline over every panel,
legends off the data, training and RAG curves, gaps as gaps, and a layout that fits 1024x700.

No processes: ring buffers and worker events are fed by hand, as benchmarks/gui.py does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from wattlab.core.measure.sampling import RingBuffers

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

SENSORS = {
    "est.cpu_power_w": 10.0,
    "sys.cpu_util_pct": 50.0,
    "proc.rss_bytes": 2.0**30,
    "gpu0.power_w": 100.0,
    "gpu0.mem_used_bytes": 2.0**31,
}


def ring_of(start: float, seconds: float, **overrides: float | None) -> RingBuffers:
    """``seconds`` of 10 Hz samples from every kind of sensor, starting at ``start``."""
    n = round(seconds * 10)
    ring = RingBuffers(n + 100)
    for k in range(n):
        ring.append(start + 0.1 * k, {**SENSORS, **overrides})
    return ring


def step_events(w, start: float, n: int, dt: float = 0.2, loss: bool = False) -> float:
    """``n`` step events ``dt`` apart, 8 items each; returns the time of the last."""
    t = start
    for k in range(n):
        t = start + k * dt
        ev = {"event": "step", "batch": k + 1, "batches": n, "items": 8 * (k + 1)}
        w.on_event({**ev, "loss": 1.0 / (k + 1)} if loss else ev, t)
    return t


def data(curve) -> tuple[np.ndarray, np.ndarray]:
    """All of a curve's points (getData() returns only what is clipped to the view)."""
    x, y = curve.getOriginalDataset()
    return np.asarray([] if x is None else x), np.asarray([] if y is None else y)


@pytest.fixture
def plots(qtbot):
    from wattlab.app.widgets.live import LivePlots

    w = LivePlots()
    qtbot.addWidget(w)
    w.resize(1000, 700)
    with qtbot.waitExposed(w):
        w.show()
    return w


def a_baseline_then_optimized(w, mode: str = "infer") -> tuple[RingBuffers, RingBuffers]:
    """A comparison's baseline run (60 s, steps from 5 s) and the start of its optimized run
    (10 s), on a monotonic clock where the runs start 1000 s apart."""
    w.begin_session(mode)
    w.begin_run("baseline", "baseline run 1/1")
    base = ring_of(1000.0, 60.0, **{"est.cpu_power_w": 40.0})
    step_events(w, 1005.0, 100, loss=mode == "train")
    w.update_from(base, 500.0)
    w.begin_run("optimized", "optimized run 1/1")
    opt = ring_of(2000.0, 10.0)
    step_events(w, 2005.0, 20, loss=mode == "train")
    w.update_from(opt, 60.0)
    return base, opt


# -- the header ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("completed", "finished: completed"),
        ("cancelled", "stopped: cancelled"),
        ("failed", "failed"),
    ],
)
def test_finish_clears_the_stale_header_and_keeps_the_energy_with_its_run(plots, status, said):
    w = plots
    a_baseline_then_optimized(w)
    assert w.power.value == "110.0 W" and w.side.value == "optimized run 1/1"
    w.finish(status)
    assert w.power.value == "-"  # not the last reading, as if something still drew power
    assert w.side.value == said and w.side.caption == "Last run"
    assert w.side.sub == "optimized run 1/1"  # which run it was
    assert w.energy.value == "60.0 J" and w.energy.caption == "Energy, optimized run 1/1"
    w.update_from(ring_of(2000.0, 12.0), 99.0)  # one more timer tick after the end
    assert w.power.value == "-" and w.energy.value == "60.0 J"
    w.finish("completed")  # a second ending (busy_changed after finished) changes nothing
    assert w.side.value == said


def test_a_single_run_is_titled_by_the_caller_never_optimized_run_1_of_1(plots):
    w = plots
    w.begin_session("infer")
    w.begin_run("single", "run 1 of 1")
    w.update_from(ring_of(0.0, 5.0), 3.0)
    assert w.side.value == "run 1 of 1" and "optimized" not in w.side.text()
    w.finish("failed")
    assert (w.side.value, w.side.sub, w.power.value) == ("failed", "run 1 of 1", "-")


def test_energy_says_it_is_this_runs_and_the_comparison_total_survives_the_runs(plots):
    w = plots
    a_baseline_then_optimized(w)
    assert w.energy.caption == "Energy, this run" and w.energy.value == "60.0 J"
    assert "comparison so far: 560.0 J, estimated" in w.energy.sub  # 500 J + 60 J
    assert w.energy.sub.startswith("estimated, 0.0167 Wh")  # the run's figure has its label
    w.begin_run("baseline", "baseline run 2/2")
    w.begin_run("baseline", "baseline run 2/2")  # said twice: still one run's worth
    w.update_from(ring_of(3000.0, 2.0), 5.0)
    assert "comparison so far: 565.0 J" in w.energy.sub
    w.begin_session("infer")  # the user starts something new: only now does the total go
    w.begin_run("single", "run 1 of 1")
    assert w.energy.value == "-" and "so far" not in w.energy.sub
    w.update_from(ring_of(4000.0, 2.0), 7.0)
    assert w.energy.value == "7.0 J" and "so far" not in w.energy.sub
    w.begin_session("infer")  # a comparison that first trains the demo model
    w.begin_run("single", "preparation: training the demo model")
    w.update_from(ring_of(5000.0, 2.0), 20.0)
    w.begin_run("baseline", "baseline run 1/1")
    w.update_from(ring_of(6000.0, 2.0), 3.0)
    assert "session so far: 23.0 J" in w.energy.sub  # measured, but not the comparison's


def test_the_previous_runs_ring_is_not_drawn_as_the_new_run(plots):
    """Between runs the controller still hands out the finished run's ring (the next
    measurement has not started): the new run must not show it, nor count its energy."""
    w = plots
    w.begin_session("infer")
    w.begin_run("baseline", "baseline run 1/1")
    old = ring_of(1000.0, 30.0)
    w.update_from(old, 300.0)
    w.begin_run("optimized", "optimized run 1/1")
    w.update_from(old, 300.0)
    assert w.curves == {} and w.energy.value == "-" and w.power.value == "-"
    w.update_from(ring_of(2000.0, 1.0), 2.0)
    assert "comparison so far: 302.0 J" in w.energy.sub


def test_the_next_runs_ring_before_its_start_signal_does_not_replace_the_baseline(plots):
    """The controller's thread starts the next measurement before run_started reaches the GUI
    thread: a redraw in between hands out the new ring. The overlay must still be the
    baseline's whole trace, not the new run's first second under the baseline's name."""
    w = plots
    w.begin_session("infer")
    w.begin_run("baseline", "baseline run 1/1")
    w.update_from(ring_of(1000.0, 30.0), 300.0)
    w.update_from(ring_of(2000.0, 1.0), 2.0)  # the optimized run's settle phase, too early
    w.begin_run("optimized", "optimized run 1/1")
    x, _ = data(w.overlays["power:CPU power (estimated)"])
    assert x[0] == 0.0 and x[-1] > 20.0


# -- overlays, axes and legends --------------------------------------------------------------------
def test_the_baseline_overlays_every_panel_aligned_at_the_runs_start(plots):
    from wattlab.app.widgets.live import BASELINE_NAME

    w = plots
    a_baseline_then_optimized(w)
    panels_with_overlay = {name.split(":")[0] for name in w.overlays}
    assert panels_with_overlay == {"power", "memory", "throughput", "utilisation"}
    for item in w.overlays.values():
        assert item.opts["pen"].style() == Qt.DashLine
        assert item.opts["pen"].color().name() == "#999999"
    x, y = data(w.overlays["power:CPU power (estimated)"])
    assert x[0] == 0.0 and math.isclose(x[-1], 59.9) and np.all(y == 40.0)  # the baseline's
    tx, _ = data(w.overlays["throughput:items/s"])
    assert math.isclose(tx[0], 5.2)  # its steps on its own clock: 5 s after its start
    cx, _ = data(w.curves["CPU power (estimated)"])
    assert cx[0] == 0.0 and math.isclose(cx[-1], 9.9)  # this run, from its own start
    for name in panels_with_overlay:
        assert w.panels[name].legend_names().count(BASELINE_NAME) == 1
    assert len(data(w.overlay)[0]) == 600  # the window's e2e test reads this one
    w.begin_run("baseline", "baseline run 2/2")
    assert w.overlays == {} and not data(w.overlay)[0].size  # a baseline has nothing to match


def test_axes_start_again_with_each_run_and_keep_the_baselines_peak_in_view(plots):
    w = plots
    w.begin_session("infer")
    w.begin_run("baseline", "baseline run 1/1")
    w.update_from(ring_of(0.0, 300.0, **{"gpu0.power_w": 300.0}), 1.0)
    assert w.p_power.viewRange()[0][1] == 300.0
    w.begin_run("optimized", "optimized run 1/1")
    w.update_from(ring_of(1000.0, 4.0), 1.0)
    for name in ("power", "memory", "throughput", "utilisation"):
        assert w.panels[name].plot.viewRange()[0] == [0.0, 10.0], name  # one time axis
    assert w.p_power.viewRange()[1][1] >= 310.0  # the baseline's 310 W peak still in view
    assert w.p_util.viewRange()[1] == [0.0, 105.0]


def test_cached_axes_follow_a_range_step(plots):
    """Axes are drawn from a pixmap cache (a redraw-time saving): a new range must still
    repaint their tick labels, never leave the old ones on screen."""
    from PySide6.QtGui import QImage

    def axis_pixels(plot) -> np.ndarray:
        axis = plot.getPlotItem().getAxis("bottom")
        rect = plot.mapFromScene(axis.sceneBoundingRect()).boundingRect()
        img = plot.viewport().grab(rect).toImage().convertToFormat(QImage.Format.Format_RGB32)
        rows = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
        return rows[:, : img.width() * 4].copy()

    w = plots
    w.begin_session("infer")
    w.begin_run("single", "run 1 of 1")
    w.update_from(ring_of(0.0, 5.0), 1.0)
    before = axis_pixels(w.p_power)
    w.update_from(ring_of(0.0, 100.0), 1.0)
    assert w.p_power.viewRange()[0] == [0.0, 120.0]
    after = axis_pixels(w.p_power)
    assert (before < 160).sum() > 20 and (after < 160).sum() > 20  # dark tick labels drawn
    assert not np.array_equal(before, after)  # and redrawn for the new range


def test_legends_sit_outside_the_plot_area(plots):
    import pyqtgraph as pg

    w = plots
    a_baseline_then_optimized(w, "train")
    ev = {"event": "epoch", "epoch": 1, "train_loss": 0.5, "eval_loss": 0.6, "accuracy": 0.7}
    w.on_event(ev, 2010.0)
    w.update_from(ring_of(2000.0, 10.5), 61.0)
    for name, panel in w.panels.items():
        assert panel.isVisible(), name
        assert panel.plot.getPlotItem().legend is None
        scene = panel.plot.scene()
        assert not [i for i in scene.items() if isinstance(i, pg.LegendItem)], name
        assert not panel.header.geometry().intersects(panel.plot.geometry()), name
        text = panel.header.text()
        assert all(n in text for n in panel.legend_names()) and panel.legend_names(), name
    assert "CPU power (estimated)" in w.panels["power"].legend_names()
    assert "gpu0 power (measured)" in w.panels["power"].legend_names()  # every power: a label


# -- training, RAG and gaps ------------------------------------------------------------------------
def test_training_panels_show_in_train_mode_with_nulls_as_gaps(plots):
    w = plots
    w.begin_session("train")
    w.begin_run("single", "run 1 of 1")
    assert w.panels["loss"].isVisible() and w.panels["quality"].isVisible()
    step_events(w, 0.0, 10, loss=True)
    w.on_event(
        {"event": "epoch", "epoch": 1, "train_loss": 0.5, "eval_loss": 0.4, "accuracy": 0.8}, 3
    )
    w.on_event(
        {"event": "epoch", "epoch": 2, "train_loss": None, "eval_loss": None, "accuracy": None}, 6
    )
    w.update_from(ring_of(0.0, 7.0), 1.0)
    ex, ey = data(w.curves["eval loss (epoch)"])
    assert list(ex) == [3.0, 6.0] and ey[0] == 0.4 and math.isnan(ey[1])  # a gap, not a zero
    _, acc = data(w.curves["accuracy"])
    assert acc[0] == 0.8 and math.isnan(acc[1])
    assert w.panels["quality"].title == "Accuracy"
    assert len(data(w.curves["loss per step"])[1]) == 10
    assert w.p_power.viewRange()[0] == w.panels["loss"].plot.viewRange()[0]  # same time axis
    w.set_mode("infer")
    assert not w.panels["loss"].isVisible() and not w.panels["quality"].isVisible()


def test_a_causal_lm_shows_perplexity(plots):
    w = plots
    w.begin_session("train")
    w.begin_run("single", "run 1 of 1")
    w.on_event({"event": "epoch", "epoch": 1, "eval_loss": 2.3, "perplexity": 9.97}, 1.0)
    w.update_from(ring_of(0.0, 2.0), 1.0)
    assert w.panels["quality"].title == "Perplexity" and "perplexity" in w.curves


def test_rag_throughput_counts_queries(plots):
    w = plots
    w.begin_session("rag")
    w.begin_run("single", "run 1 of 1")
    step_events(w, 1.0, 10)
    w.update_from(ring_of(0.0, 5.0), 1.0)
    assert w.p_thr.getPlotItem().getAxis("left").labelText == "queries/s"
    assert "queries/s" in w.curves and w.panels["throughput"].legend_names() == ["queries/s"]
    _, v = data(w.curves["queries/s"])
    assert np.allclose(v, 40.0)  # 8 queries every 0.2 s
    w.set_mode("infer")
    assert w.p_thr.getPlotItem().getAxis("left").labelText == "items/s"


def test_a_pause_in_step_events_is_a_gap_in_the_throughput_line(plots):
    w = plots
    w.begin_session("train")
    w.begin_run("single", "run 1 of 1")
    last = step_events(w, 1.0, 20)
    for k in range(5):  # after a 40 s eval phase
        w.on_event({"event": "step", "items": 200 + 8 * k}, last + 40.0 + 0.2 * k)
    w.update_from(ring_of(0.0, 50.0), 1.0)
    x, y = data(w.curves["items/s"])
    gap = np.flatnonzero(np.isnan(y))
    assert gap.size == 1 and last < x[gap[0]] < last + 40.0
    assert np.allclose(y[np.isfinite(y)], 40.0)  # nothing averaged over the pause


def test_phase_and_lottery_round_show_under_what_is_running(plots):
    w = plots
    w.begin_session("train")
    w.begin_run("single", "run 1 of 1")
    w.on_event({"event": "phase", "name": "train"}, 1.0)
    assert w.side.sub == "phase train"
    w.on_event({"event": "round", "round": 2, "sparsity": 0.36, "final": False}, 2.0)
    assert w.side.sub == "phase train; round 2, sparsity 36%"
    w.on_event({"event": "step", "items": 8}, 3.0)  # steps between rounds feed throughput
    w.on_event({"event": "step", "items": 16}, 3.2)
    assert len(w.run.throughput.v) == 1


def test_a_hidden_view_keeps_its_energy_current_and_skips_drawing(plots):
    w = plots
    w.begin_session("infer")
    w.begin_run("single", "run 1 of 1")
    w.hide()
    w.update_from(ring_of(0.0, 5.0), 42.0)
    assert w.curves == {} and w.energy.value == "42.0 J"
    w.show()
    w.update_from(ring_of(0.0, 5.0), 43.0)
    assert "CPU power (estimated)" in w.curves


# -- size ------------------------------------------------------------------------------------------
def test_the_live_tab_fits_a_1024x700_window(plots):
    """The window's left column takes at least 380 px of 1024 and the tab bar and margins
    about 80 px of 700: the live view must make do with the rest, even with six panels and
    long texts in the header."""
    w = plots
    a_baseline_then_optimized(w, "train")
    long = "optimized run 12/20 (re-run of pair 7) with a very long explanation " * 4
    w.side.set(long, long)
    w.energy.set_caption(long)
    hint = w.minimumSizeHint()
    assert hint.width() <= 1024 - 380 - 40 and hint.height() <= 700 - 80
    w.resize(600, 600)
    for name, panel in w.panels.items():
        assert panel.plot.width() >= 150 and panel.plot.height() >= 80, name
    assert w.side.width() <= 600
