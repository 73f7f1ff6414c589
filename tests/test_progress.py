"""The app's one overall progress (core/run/progress.py), on a fake clock: no window, no worker."""

from __future__ import annotations

from wattlab.core.run.progress import OverallProgress, step_fraction


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_bar_over_the_whole_comparison_never_refills():
    clock = Clock()
    p = OverallProgress(runs_total=4, clock=clock)
    seen = []
    for k in range(4):
        p.start_run(f"run {k + 1}")
        for phase in ("load", "train", "eval"):
            p.on_event({"event": "phase", "name": phase})
            for done in range(1, 11):
                p.on_event({"event": "step", "batch": done, "batches": 10})
                seen.append(p.fraction)
        clock.now += 30
    p.end()
    assert seen == sorted(seen)  # monotone: phases with their own counters do not refill it
    assert p.fraction == 1.0 and p.runs_done == 4


def test_time_left_is_unknown_until_a_run_ends_then_steady():
    clock = Clock()
    p = OverallProgress(runs_total=3, cooldown_s=5.0, clock=clock)
    p.start_run("baseline 1/2")
    p.on_event({"event": "phase", "name": "infer"})
    p.on_event({"event": "step", "batch": 1, "batches": 100})
    assert p.time_left_s() is None
    assert "known after the first run" in p.bar_text()
    clock.now += 60
    p.start_run("optimized 1/2")
    assert p.time_left_s() == 60 * 2 + 5  # two runs of 60 s and one cool-down between them
    clock.now += 20
    assert p.time_left_s() == 60 * 2 - 20 + 5
    assert p.bar_text() == "run 2 of 3 · about 1 min 45 s left"


def test_a_one_time_preparation_is_named_and_is_not_run_one():
    clock = Clock()
    p = OverallProgress(runs_total=2, clock=clock)
    p.prepare("training the demo model once (cached afterwards)")
    p.on_event({"event": "step", "step": 50, "total_steps": 100})
    assert p.fraction == 0.0
    assert p.bar_text() == "one-time preparation: training the demo model once (cached afterwards)"
    clock.now += 180
    p.start_run("baseline 1/1")
    assert p.runs_done == 0 and p.time_left_s() is None  # three minutes of training are no run
    assert p.bar_text().startswith("run 1 of 2")


def test_training_progress_counts_optimizer_steps_not_the_phase_counter():
    assert step_fraction({"step": 30, "total_steps": 120, "batch": 5, "batches": 10}) == 0.25
    assert step_fraction({"batch": 5, "batches": 10}) == 0.5
    assert step_fraction({"items": 3}) is None
    assert step_fraction({"batch": 3, "batches": 0}) is None
