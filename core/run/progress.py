"""One overall progress for a whole session or comparison: run k of n and the time left.

The app used to show each phase's batch counter: a bar that refilled six times per comparison,
an ETA that jumped from 1192 s to 6 s when a phase with few batches began, and a one-time model
training shown as "prepare 0%" for minutes. This object is what the app (and any front end)
reads instead. It is Qt-free and clock-injected so it is tested without a window or a worker.

The time left is estimated from whole runs (their mean duration times the runs still to go),
the only unit whose length is stable; before the first run ends it is unknown, and shown so,
rather than extrapolated from a phase that is not representative of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]


def step_fraction(ev: dict[str, Any]) -> float | None:
    """How far a run is, from one worker ``step`` event: optimizer steps for training (eval is
    short beside them), batches for inference; None when the event says neither."""
    for done_key, total_key in (("step", "total_steps"), ("batch", "batches")):
        done, total = ev.get(done_key), ev.get(total_key)
        if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
            return max(0.0, min(1.0, done / total))
    return None


@dataclass
class OverallProgress:
    """Progress over ``runs_total`` measured runs, plus any one-time preparation before them."""

    runs_total: int
    cooldown_s: float = 0.0
    clock: Clock = time.monotonic
    runs_done: int = 0
    run_title: str = ""
    phase: str = ""
    preparation: str | None = None  # names a one-time job (the demo's training) while it runs
    _durations_s: list[float] = field(default_factory=list)
    _run_started: float | None = None
    _within: float = 0.0  # the current run's own fraction, from its step events

    def prepare(self, what: str) -> None:
        """A one-time job before the measured runs: named, and never counted as run 1."""
        self.preparation = what
        self.phase = ""
        self._within = 0.0

    def start_run(self, title: str) -> None:
        """A measured run begins (the previous one, if any, ended just before)."""
        now = self.clock()
        if self._run_started is not None and self.preparation is None:
            self._finish(now)
        self.preparation = None
        self.run_title = title
        self.phase = ""
        self._run_started = now
        self._within = 0.0

    def end(self) -> None:
        """The session or comparison is over (completed, stopped or failed)."""
        if self._run_started is not None and self.preparation is None:
            self._finish(self.clock())
        self._run_started = None

    def _finish(self, now: float) -> None:
        assert self._run_started is not None
        self._durations_s.append(now - self._run_started)
        self.runs_done = min(self.runs_total, self.runs_done + 1)
        self._run_started = None
        self._within = 0.0

    def on_event(self, ev: dict[str, Any]) -> None:
        """Worker events: phases name the current phase; steps move the current run along."""
        kind = ev.get("event")
        if kind == "phase":
            self.phase = str(ev.get("name") or "")
        elif kind == "step":
            frac = step_fraction(ev)
            if frac is not None:
                self._within = max(self._within, frac) if self.phase else frac

    @property
    def fraction(self) -> float:
        """0..1 over the measured runs; a preparation keeps it at the runs already done."""
        if self.runs_total <= 0:
            return 0.0
        within = 0.0 if self.preparation else self._within
        return min(1.0, (self.runs_done + within) / self.runs_total)

    def time_left_s(self) -> float | None:
        """Mean finished-run duration times what is left, plus the cool-downs between runs;
        None (unknown) until a run has finished: a first guess from one phase misleads."""
        if not self._durations_s:
            return None
        mean_s = sum(self._durations_s) / len(self._durations_s)
        running = self._run_started is not None and self.preparation is None
        elapsed = self.clock() - self._run_started if running and self._run_started else 0.0
        left_runs = self.runs_total - self.runs_done
        left_s = mean_s * left_runs - min(elapsed, mean_s if left_runs else 0.0)
        gaps = max(0, left_runs - 1)
        return max(0.0, left_s + gaps * self.cooldown_s)

    def bar_text(self) -> str:
        """The overall bar's own words: "run 3 of 10 · about 2 min 10 s left"."""
        if self.preparation:
            return f"one-time preparation: {self.preparation}"
        current = min(self.runs_total, self.runs_done + (1 if self._run_started else 0))
        left = self.time_left_s()
        when = (
            "time left: known after the first run" if left is None else f"about {span(left)} left"
        )
        return f"run {max(current, 1)} of {self.runs_total} · {when}"

    def phase_text(self) -> str:
        """The line under the bar: what runs now, in which phase, how far."""
        what = self.preparation or self.run_title or "starting"
        if not self.phase:
            return what
        pct = f" {100 * self._within:.0f}%" if self._within else ""
        return f"{what} · {self.phase}{pct}"


def span(seconds: float) -> str:
    """A duration a reader takes in at a glance: 45 s, 3 min 05 s, 1 h 02 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
