"""Live series for a running measurement, computed from the sampler's ring buffers.

Kept in core (no Qt) so the GUI only draws: it asks for named series and gets numpy arrays with
their unit and label. CPU power is ``measured`` from RAPL counter differences where RAPL exists,
else the ``estimated`` model's instantaneous figure; GPU power is NVML's reading.

Also here, for the same reason: what the worker's events add to the live view (throughput from
step events, training losses and accuracy from step and epoch events), the session's running
energy total, and one run's traces aligned at its start so the baseline overlays the next run.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattlab.core.measure.sampling import RingBuffers
from wattlab.core.measure.sensors.base import weakest_label


@dataclass
class Series:
    name: str
    unit: str
    label: str  # measured | estimated | reading
    t: np.ndarray
    v: np.ndarray


def _counter_power(ring: RingBuffers, key: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    t, v = ring.series(key)
    if t.size < 2:
        return np.empty(0), np.empty(0)
    dt = np.diff(t)
    dv = np.diff(v) * scale
    ok = (dt > 0) & np.isfinite(dv) & (dv >= 0)
    return t[1:][ok], dv[ok] / dt[ok]


def live_series(ring: RingBuffers) -> list[Series]:
    keys = set(ring.keys())
    out: list[Series] = []
    gpus = sorted({k.split(".")[0] for k in keys if k.startswith("gpu") and "." in k})
    for g in gpus:
        if f"{g}.power_w" in keys:
            t, v = ring.series(f"{g}.power_w")
            out.append(Series(f"{g} power", "W", "reading", t, v))
        if f"{g}.mem_used_bytes" in keys:
            t, v = ring.series(f"{g}.mem_used_bytes")
            out.append(Series(f"{g} memory", "MiB", "reading", t, v / 2**20))
    rapl = sorted(k for k in keys if k.startswith("rapl.package"))
    if rapl:
        parts = [_counter_power(ring, k, 1e-6) for k in rapl]
        t = parts[0][0]
        total = sum(p[1][: t.size] for p in parts if p[1].size >= t.size)
        out.append(Series("CPU power", "W", "measured", t, np.asarray(total)))
    elif "est.cpu_power_w" in keys:
        t, v = ring.series("est.cpu_power_w")
        out.append(Series("CPU power", "W", "estimated", t, v))
    if "sys.cpu_util_pct" in keys:
        t, v = ring.series("sys.cpu_util_pct")
        out.append(Series("CPU utilisation", "%", "reading", t, v))
    if "proc.rss_bytes" in keys:
        t, v = ring.series("proc.rss_bytes")
        out.append(Series("process memory", "MiB", "reading", t, v / 2**20))
    return out


# A pause longer than this many typical intervals between points is drawn as a gap: a line across
# it would invent values nobody measured (the eval phase between epochs sends no step events).
GAP_INTERVALS = 5
_RECENT_INTERVALS = 16  # the typical interval is the median of this many recent ones
_MIN_INTERVALS = 3  # fewer known intervals than this: no rhythm yet, so no pause is called

# The panels of the live view, in reading order; every trace names the one it belongs to.
PANELS = ("power", "memory", "throughput", "utilisation", "loss", "quality")


def _num(value: object) -> float:
    """An event's number, or NaN (drawn as a gap) for a missing, null or non-numeric one."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan  # type: ignore[arg-type]


class Cadence:
    """The usual interval between a stream's points, to tell a pause from its rhythm.

    The median of the recent intervals, not a fixed threshold: step events come every 0.2 s
    from a fast loop and every few seconds from a big model, and both have pauses to show."""

    def __init__(self, factor: float = GAP_INTERVALS) -> None:
        self.factor = factor
        self._dts: deque[float] = deque(maxlen=_RECENT_INTERVALS)

    def is_pause(self, dt: float) -> bool:
        if len(self._dts) < _MIN_INTERVALS:
            return False
        recent = sorted(self._dts)
        mid = len(recent) // 2
        median = recent[mid] if len(recent) % 2 else (recent[mid - 1] + recent[mid]) / 2
        return dt > self.factor * median

    def note(self, dt: float) -> None:
        """Count an interval into the rhythm (never a pause's, which would stretch it)."""
        if dt > 0:
            self._dts.append(dt)


class GapSeries:
    """Points fed one at a time whose pauses stay pauses on screen: a point arriving after a
    pause is preceded by a NaN (pyqtgraph's ``connect="finite"`` breaks the line there).

    Kept in growing numpy buffers, not lists: the view redraws ten times a second, and turning
    an hour of step events into arrays each time cost a millisecond."""

    def __init__(self) -> None:
        self._t = np.empty(256)
        self._v = np.empty(256)
        self._n = 0
        self.cadence = Cadence()
        self._last_t: float | None = None

    @property
    def t(self) -> np.ndarray:
        return self._t[: self._n]

    @property
    def v(self) -> np.ndarray:
        return self._v[: self._n]

    def add(self, t: float, v: float) -> None:
        if self._last_t is not None:
            dt = t - self._last_t
            if self.cadence.is_pause(dt):
                self.break_line((self._last_t + t) / 2)
            else:
                self.cadence.note(dt)
        self._last_t = t
        self.append(t, v)

    def append(self, t: float, v: float) -> None:
        """One point as it is, no pause check (the caller has made it)."""
        if self._n == self._t.size:
            self._t = np.concatenate([self._t, np.empty(self._n)])
            self._v = np.concatenate([self._v, np.empty(self._n)])
        self._t[self._n], self._v[self._n] = t, v
        self._n += 1

    def break_line(self, t: float) -> None:
        """End the line here (one NaN, at a time between the points it separates)."""
        if self._n and not math.isnan(self._v[self._n - 1]):
            self.append(t, math.nan)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(t, v) without copying: the points already there never change."""
        return self.t, self.v

    def __len__(self) -> int:
        return self._n


class ThroughputTracker:
    """items/s from the worker's step events (never guessed from time alone).

    A rate is the items between two step events over the time between them; across a pause
    (an eval phase, a stall) that would average the pause in, so the line breaks there instead
    and the next rate starts after it. A counter that went backwards (a new training pass)
    restarts the rate without a point."""

    def __init__(self) -> None:
        self.series = GapSeries()
        self._last: tuple[float, int] | None = None

    @property
    def t(self) -> np.ndarray:
        return self.series.t

    @property
    def v(self) -> np.ndarray:
        return self.series.v

    def add(self, t: float, items: int) -> None:
        last = self._last
        self._last = (t, items)
        if last is None or t <= last[0]:
            return
        dt = t - last[0]
        if self.series.cadence.is_pause(dt):
            self.series.break_line((last[0] + t) / 2)
        elif items >= last[1]:
            self.series.cadence.note(dt)
            self.series.append(t, (items - last[1]) / dt)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.series.arrays()

    def reset(self) -> None:
        self.series, self._last = GapSeries(), None


def quality_of(ev: dict[str, Any]) -> tuple[str | None, float]:
    """An epoch's quality figure, the one ``report.text.epoch_text`` prints: perplexity for a
    causal LM, accuracy for a classifier; NaN when a diverged epoch sent null."""
    if "perplexity" in ev and not isinstance(ev.get("accuracy"), (int, float)):
        return "perplexity", _num(ev.get("perplexity"))
    if "accuracy" in ev:
        return "accuracy", _num(ev.get("accuracy"))
    return None, math.nan


class TrainingCurves:
    """Loss and quality as training goes: per step (step events carry the batch's loss) and
    per epoch (train and eval loss, accuracy or perplexity). Null stays a gap."""

    def __init__(self) -> None:
        self.step_loss = GapSeries()
        self.epoch_t: list[float] = []
        self.train_loss: list[float] = []
        self.eval_loss: list[float] = []
        self.quality: list[float] = []
        self.quality_name: str | None = None

    def add_step(self, t: float, ev: dict[str, Any]) -> None:
        if "loss" in ev:  # inference and RAG steps carry none
            self.step_loss.add(t, _num(ev["loss"]))

    def add_epoch(self, t: float, ev: dict[str, Any]) -> None:
        name, value = quality_of(ev)
        self.quality_name = self.quality_name or name
        self.epoch_t.append(t)
        self.train_loss.append(_num(ev.get("train_loss")))
        self.eval_loss.append(_num(ev.get("eval_loss")))
        self.quality.append(value if name == self.quality_name else math.nan)

    def __bool__(self) -> bool:
        return bool(len(self.step_loss) or self.epoch_t)


def throughput_unit(mode: str) -> str:
    """What a step event's ``items`` count: queries in a RAG session, items elsewhere."""
    return "queries/s" if mode == "rag" else "items/s"


@dataclass(frozen=True)
class Trace:
    """One line of the live view: its legend name, its panel (one of PANELS), and its points
    in seconds since the run's first sample (so two runs line up at their starts)."""

    name: str
    panel: str
    t: np.ndarray
    v: np.ndarray
    markers: bool = False  # one point per epoch: drawn as markers, so a lone point shows

    def state(self) -> tuple[int, bytes]:
        """Changes whenever the points do (new points, a ring that wrapped, a value that
        arrived): a view can skip redrawing a trace whose state it has drawn."""
        if not self.t.size:
            return 0, b""
        return self.t.size, self.t[[0, -1]].tobytes() + self.v[-1:].tobytes()


def extents(traces: Iterable[Trace]) -> tuple[float, dict[str, float]]:
    """The latest time over all traces and each panel's highest value (NaN ignored): what
    the axes must show. ``fmax.reduce`` skips NaN without copying an hour of points."""
    t_max = 0.0
    y_max: dict[str, float] = {}
    for tr in traces:
        if not tr.t.size:
            continue
        t_max = max(t_max, float(tr.t[-1]))  # times are finite and ascending; values may be NaN
        top = float(np.fmax.reduce(tr.v))
        if math.isfinite(top):
            y_max[tr.panel] = max(y_max.get(tr.panel, top), top)
    return t_max, y_max


def panel_of(s: Series) -> str:
    if s.unit == "W":
        return "power"
    if s.unit == "MiB":
        return "memory"
    return "utilisation"


def shown_name(s: Series) -> str:
    """A series' legend name; a power curve carries its source label (an NVML power reading is
    a measurement), other series have no energy label to carry."""
    if s.unit == "W":
        return f"{s.name} ({'measured' if s.label == 'reading' else s.label})"
    return s.name if s.label == "reading" else f"{s.name} ({s.label})"


def power_now(series: Iterable[Series]) -> tuple[float | None, str | None]:
    """Total power at the latest sample, and its label (the weakest of its parts).

    Unknown (None) when any power series has no value at its latest sample: a total without
    one of its parts would be an undercount shown as a fact."""
    powers = [s for s in series if s.unit == "W" and s.t.size]
    if not powers or not all(np.isfinite(s.v[-1]) for s in powers):
        return None, None
    labels = ["measured" if s.label == "reading" else s.label for s in powers]
    return float(sum(float(s.v[-1]) for s in powers)), weakest_label(labels)


def energy_label(ring: RingBuffers) -> str | None:
    """The label of the sampler's energy total, from which sensors fed the ring: RAPL and NVML
    energy counters are measured, NVML power without a counter is integrated, the model is
    estimated; a total is as good as its weakest part."""
    keys = ring.keys()
    labels: list[str] = []
    if any(k.startswith("rapl.") and k.endswith("energy_uj") for k in keys):
        labels.append("measured")
    if any(k.startswith("est.") for k in keys):
        labels.append("estimated")
    for k in keys:
        if k.startswith("gpu") and k.endswith(".power_w"):
            counter = k.removesuffix("power_w") + "energy_mj"
            read = counter in keys and bool(np.isfinite(ring.series(counter)[1]).any())
            labels.append("measured" if read else "integrated")
    return weakest_label(labels)


class EnergyTally:
    """Energy across the runs of one session (a comparison's baselines and optimized runs).

    The sampler's energy starts again at zero with every run (each run is its own
    measurement); the total adds each finished run's last reading to the current one's, and
    only ``begin_session`` clears it."""

    def __init__(self) -> None:
        self.begin_session()

    def begin_session(self) -> None:
        self.done_j = 0.0
        self.runs_done = 0
        self.run_j: float | None = None
        self._labels: list[str] = []
        self._run_label: str | None = None

    def begin_run(self) -> None:
        """Close the current run (its last reading joins the total). Idempotent: a run that
        read no energy adds nothing, so a second call in a row changes nothing."""
        if self.run_j is not None:
            self.done_j += self.run_j
            self.runs_done += 1
            if self._run_label:
                self._labels.append(self._run_label)
        self.run_j, self._run_label = None, None

    def update(self, energy_j: float | None, label: str | None) -> None:
        if energy_j is not None and math.isfinite(energy_j):
            self.run_j = float(energy_j)
            self._run_label = label

    @property
    def run_label(self) -> str | None:
        return self._run_label

    @property
    def runs(self) -> int:
        return self.runs_done + (self.run_j is not None)

    @property
    def total_j(self) -> float | None:
        if not self.runs:
            return None
        return self.done_j + (self.run_j or 0.0)

    @property
    def total_label(self) -> str | None:
        return weakest_label(self._labels + ([self._run_label] if self._run_label else []))


class LiveRun:
    """One run's live data: the sampler's series (read on each redraw) and what the worker's
    events said, on one clock (``time.monotonic``) and aligned at the run's first sample."""

    def __init__(self, mode: str = "infer") -> None:
        self.mode = mode
        self.t0: float | None = None
        self._t0_from_ring = False
        self.throughput = ThroughputTracker()
        self.training = TrainingCurves()
        self.phase: str | None = None
        self.round: dict[str, Any] | None = None

    def on_event(self, ev: dict[str, Any], t_mono: float) -> None:
        """Take one worker event (``t_mono``: when it was received, the sampler's clock)."""
        kind = ev.get("event")
        if kind in ("step", "epoch") and self.t0 is None:
            self.t0 = t_mono
        if kind == "step":
            items = _num(ev.get("items"))
            if math.isfinite(items):
                self.throughput.add(t_mono, int(items))
            self.training.add_step(t_mono, ev)
        elif kind == "epoch":
            self.training.add_epoch(t_mono, ev)
        elif kind == "phase":
            self.phase = ev.get("name")
        elif kind == "round":
            self.round = ev

    def _align(self, series: list[Series]) -> float | None:
        """The run's time zero: its first sample (an event's time until one arrives)."""
        if not self._t0_from_ring:
            firsts = [float(s.t[0]) for s in series if s.t.size]
            if firsts:
                self.t0 = min([*firsts, *([self.t0] if self.t0 is not None else [])])
                self._t0_from_ring = True
        return self.t0

    def traces(self, series: list[Series]) -> list[Trace]:
        """Everything drawable for this run, in seconds since its start."""
        t0 = self._align(series)
        if t0 is None:
            return []
        out = [Trace(shown_name(s), panel_of(s), s.t - t0, s.v) for s in series if s.t.size]
        if len(self.throughput.series):
            t, v = self.throughput.arrays()
            out.append(Trace(throughput_unit(self.mode), "throughput", t - t0, v))
        out.extend(self._training_traces(t0))
        return out

    def _training_traces(self, t0: float) -> list[Trace]:
        tr = self.training
        out: list[Trace] = []
        if len(tr.step_loss):
            t, v = tr.step_loss.arrays()
            out.append(Trace("loss per step", "loss", t - t0, v))
        if tr.epoch_t:
            te = np.asarray(tr.epoch_t) - t0
            per_epoch = [
                ("train loss (epoch)", "loss", tr.train_loss),
                ("eval loss (epoch)", "loss", tr.eval_loss),
                (tr.quality_name, "quality", tr.quality),
            ]
            for name, panel, values in per_epoch:
                v = np.asarray(values)
                if name and np.isfinite(v).any():  # a figure no epoch had: no legend entry
                    out.append(Trace(name, panel, te, v, markers=True))
        return out
