"""Turning a stream of readings into joules, per source and per phase, online.

Online because a run can last hours: the accumulator keeps one previous value per channel, not
the samples. Each interval's energy is a counter delta (unwrapped with the counter's range) or a
trapezoid of power, and is split across phase boundaries in proportion to time, so a phase
marked between two ticks gets its share rather than the whole interval.

A cumulative counter that fails to read keeps counting in the hardware, so when it reads again
the delta across the gap is its energy: nothing is lost (Zeus and CodeCarbon lose both
intervals). While it is missing, the channel's ``fallback_key`` (a power reading of the same
device) is integrated into a pending amount; if the counter never comes back, that pending
energy is kept and the source is labelled ``integrated`` from then on.

Each sensor's reading carries its own timestamp (the sampler stamps each sensor when it was
read), so ``add`` updates only the channels whose key the reading holds.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from wattlab.core.measure.sensors.base import EnergyChannel, Reading, weakest_label
from wattlab.core.protocol import IDLE_PHASE, PRE_PHASE, SETTLE_PHASE

# Phases outside the workload: the wait for power to settle, the idle baseline, and the time
# before the workload's first mark. A run's totals never include them (settling used to be
# counted: 0.8 J of a 1.4 J `wattlab profile -- python -c pass`).
NOT_WORK = (SETTLE_PHASE, IDLE_PHASE, PRE_PHASE)

# A window spanning fewer counter updates than this gets a warning on its figure.
MIN_COUNTER_UPDATES = 10
# Peak power is the highest average over any window at least this long: one 5 ms counter step is
# a quantisation artefact, not a peak (NVML and RAPL refresh at their own pace).
PEAK_WINDOW_S = 0.5


@dataclass
class _ChannelState:
    channel: EnergyChannel
    last_t: float | None = None
    last_v: float | None = None
    by_phase: dict[str, float] = field(default_factory=dict)
    covered_by_phase: dict[str, float] = field(default_factory=dict)
    gap_s: float = 0.0  # time with no usable reading: energy unknown there
    bridged_s: float = 0.0  # counter gaps closed by the delta across them
    resets: int = 0
    # An open counter gap: when it started, and what the fallback power integrated meanwhile.
    gap_from: float | None = None
    gap_until: float | None = None
    fallback_last: tuple[float, float] | None = None
    pending_by_phase: dict[str, float] = field(default_factory=dict)
    pending_cov: dict[str, float] = field(default_factory=dict)


@dataclass
class _SourceTrack:
    """A source's cumulative energy over time: enough for windowed peaks and idle spread."""

    points: deque[tuple[float, float]] = field(default_factory=deque)
    last: tuple[float, float] | None = None
    peak_w: float | None = None
    idle_w: list[float] = field(default_factory=list)


@dataclass
class SourceEnergy:
    """Energy of one source (gpu0, cpu, ram) over a run; ``net_j`` subtracts idle power over the
    time the source actually had readings. ``in_total`` is False for a device the workload did
    not use (shown, never summed)."""

    source: str
    label: str
    method: str
    gross_j: float
    duration_s: float
    idle_power_w: float | None
    net_j: float | None
    mean_power_w: float | None
    peak_power_w: float | None
    by_phase_j: dict[str, float]
    warnings: list[str]
    covered_by_phase_s: dict[str, float] = field(default_factory=dict)
    idle_power_spread_w: dict[str, float] | None = None
    in_total: bool = True
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _add_to(d: dict[str, float], key: str, value: float) -> None:
    d[key] = d.get(key, 0.0) + value


class EnergyAccumulator:
    def __init__(self, channels: list[EnergyChannel], peak_window_s: float = PEAK_WINDOW_S) -> None:
        self._peak_window_s = peak_window_s
        self._states = [_ChannelState(c) for c in channels]
        self._phase_t: list[float] = []
        self._phase_name: list[str] = []
        self._tracks: dict[str, _SourceTrack] = {}

    def mark_phase(self, t: float, name: str) -> None:
        i = bisect.bisect_right(self._phase_t, t)
        self._phase_t.insert(i, t)
        self._phase_name.insert(i, name)

    @property
    def channels(self) -> list[EnergyChannel]:
        return [st.channel for st in self._states]

    @property
    def phases(self) -> list[tuple[float, str]]:
        return list(zip(self._phase_t, self._phase_name, strict=True))

    def _split(self, t0: float, t1: float) -> list[tuple[str, float]]:
        """(phase, fraction of [t0, t1]) pieces; time before the first mark is phase 'pre'."""
        if t1 <= t0:
            return []
        pieces: list[tuple[str, float]] = []
        i = bisect.bisect_right(self._phase_t, t0) - 1
        cur_start = t0
        cur_name = self._phase_name[i] if i >= 0 else PRE_PHASE
        j = i + 1
        while j < len(self._phase_t) and self._phase_t[j] < t1:
            pieces.append((cur_name, (self._phase_t[j] - cur_start) / (t1 - t0)))
            cur_start = self._phase_t[j]
            cur_name = self._phase_name[j]
            j += 1
        pieces.append((cur_name, (t1 - cur_start) / (t1 - t0)))
        return [(n, f) for n, f in pieces if f > 0]

    def _book(
        self, energy: dict[str, float], cover: dict[str, float], t0: float, t1: float, j: float
    ) -> None:
        for phase, frac in self._split(t0, t1):
            _add_to(energy, phase, j * frac)
            _add_to(cover, phase, (t1 - t0) * frac)

    # -- feeding ---------------------------------------------------------------------------------
    def add(self, t: float, reading: Reading) -> None:
        """Take one sensor's reading at time ``t``; channels whose key is absent are untouched."""
        touched: set[str] = set()
        for st in self._states:
            ch = st.channel
            if ch.key not in reading and (ch.fallback_key or "") not in reading:
                continue
            touched.add(ch.source)
            if ch.kind == "counter":
                self._add_counter(st, t, reading.get(ch.key), reading.get(ch.fallback_key or ""))
            else:
                self._add_power(st, t, reading.get(ch.key))
        for source in touched:
            self._track(source, t)

    def _add_power(self, st: _ChannelState, t: float, v: float | None) -> None:
        if v is None or not math.isfinite(v):
            if st.last_t is not None and t > st.last_t:
                st.gap_s += t - st.last_t
                st.last_t = t  # the gap is unknown energy; resume from the next value
            st.last_v = None
            return
        if st.last_t is not None and st.last_v is not None and t > st.last_t:
            self._book(
                st.by_phase,
                st.covered_by_phase,
                st.last_t,
                t,
                0.5 * (st.last_v + v) * (t - st.last_t),
            )
        st.last_t, st.last_v = t, v

    def _add_counter(
        self, st: _ChannelState, t: float, v: float | None, fallback_w: float | None
    ) -> None:
        ch = st.channel
        if v is None or not math.isfinite(v):
            if st.last_t is None:
                return
            if st.gap_from is None:
                st.gap_from = st.last_t
            st.gap_until = t
            self._integrate_fallback(st, t, fallback_w)
            return
        if st.last_t is not None and st.last_v is not None and t > st.last_t:
            d = v - st.last_v
            if d < 0:
                if ch.wrap:
                    d += ch.wrap
                else:
                    st.resets += 1
                    d = 0.0
            self._book(st.by_phase, st.covered_by_phase, st.last_t, t, d * ch.scale_j)
        if st.gap_from is not None:  # the counter is back: its delta covered the gap exactly
            st.bridged_s += t - st.gap_from
            st.gap_from = None
            st.pending_by_phase.clear()
            st.pending_cov.clear()
        st.last_t, st.last_v = t, v
        st.fallback_last = (t, fallback_w) if fallback_w is not None else None

    def _integrate_fallback(self, st: _ChannelState, t: float, w: float | None) -> None:
        prev = st.fallback_last
        if w is not None and math.isfinite(w) and prev is not None and t > prev[0]:
            self._book(
                st.pending_by_phase, st.pending_cov, prev[0], t, 0.5 * (prev[1] + w) * (t - prev[0])
            )
        st.fallback_last = (t, w) if w is not None and math.isfinite(w) else None

    def _track(self, source: str, t: float) -> None:
        cum = sum(
            sum(st.by_phase.values()) + sum(st.pending_by_phase.values())
            for st in self._states
            if st.channel.source == source
        )
        tr = self._tracks.setdefault(source, _SourceTrack())
        if tr.last is not None and t > tr.last[0]:
            pieces = self._split(tr.last[0], t)
            if len(pieces) == 1 and pieces[0][0] == IDLE_PHASE:
                tr.idle_w.append((cum - tr.last[1]) / (t - tr.last[0]))
        tr.last = (t, cum)
        tr.points.append((t, cum))
        while len(tr.points) > 2 and t - tr.points[1][0] >= self._peak_window_s:
            tr.points.popleft()
        t0, c0 = tr.points[0]
        if t - t0 >= self._peak_window_s:
            w = (cum - c0) / (t - t0)
            tr.peak_w = w if tr.peak_w is None else max(tr.peak_w, w)

    # -- reading ---------------------------------------------------------------------------------
    def total_j(self, phases: tuple[str, ...] | None = None) -> float:
        """Joules so far over every source, in ``phases`` (default: every phase except idle);
        for "energy to reach accuracy X" curves."""
        skip = NOT_WORK
        return sum(
            j
            for st in self._states
            for p, j in st.by_phase.items()
            if (p in phases if phases else p not in skip)
        )

    def phase_durations(self, end_t: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, (t, name) in enumerate(self.phases):
            nxt = self._phase_t[k + 1] if k + 1 < len(self._phase_t) else end_t
            out[name] = out.get(name, 0.0) + max(0.0, nxt - t)
        return out

    @staticmethod
    def effective_period_s(ch: EnergyChannel, sample_interval_s: float) -> float:
        """How finely a channel resolves a window. A counter read at the window's edges is
        exact to its update period; measured or integrated power only to the sampling interval;
        an estimated power (RSS x W/GB, a constant floor) is a model, not a sensor: 0."""
        if ch.kind == "counter":
            return ch.update_period_s
        if ch.label == "estimated":
            return 0.0
        return max(ch.update_period_s, sample_interval_s)

    def slowest_update_s(self, sample_interval_s: float) -> float:
        return max(
            (self.effective_period_s(st.channel, sample_interval_s) for st in self._states),
            default=0.0,
        )

    def window_warnings(
        self, duration_s: float, sample_interval_s: float, what: str = "the measured phase"
    ) -> list[str]:
        """One warning per source whose sensor updates fewer than MIN_COUNTER_UPDATES times in
        a window of ``duration_s``."""
        out: list[str] = []
        for st in self._states:
            ch = st.channel
            period = self.effective_period_s(ch, sample_interval_s)
            if period > 0 and 0 < duration_s < MIN_COUNTER_UPDATES * period:
                out.append(
                    f"{ch.source}: {what} lasted {duration_s:.3f} s, fewer than "
                    f"{MIN_COUNTER_UPDATES} updates of its sensor ({period:.3f} s each); "
                    "its energy is unreliable"
                )
        return list(dict.fromkeys(out))

    def results(self, end_t: float) -> list[SourceEnergy]:
        """Per-source energy over every phase except idle; idle only sets the subtracted power.
        Short-window warnings are per measured phase: see ``window_warnings``."""
        durations = self.phase_durations(end_t)
        work_s = sum(d for p, d in durations.items() if p not in NOT_WORK)
        by_source: dict[str, list[_ChannelState]] = {}
        for st in self._states:
            by_source.setdefault(st.channel.source, []).append(st)
        return [self._source_result(src, sts, work_s) for src, sts in by_source.items()]

    def _source_result(
        self, source: str, states: list[_ChannelState], work_s: float
    ) -> SourceEnergy:
        warnings: list[str] = []
        labels = [s.channel.label for s in states]
        by_phase: dict[str, float] = {}
        covered: dict[str, float] = {}
        idle_j = idle_cov = 0.0
        for st in states:
            energy, cover = dict(st.by_phase), dict(st.covered_by_phase)
            if st.gap_from is not None and st.pending_by_phase:
                # The counter never came back: the fallback power's integral stands in for it.
                for p, j in st.pending_by_phase.items():
                    _add_to(energy, p, j)
                for p, c in st.pending_cov.items():
                    _add_to(cover, p, c)
                labels.append("integrated")
                warnings.append(
                    f"{st.channel.key}: the counter stopped answering "
                    f"{sum(st.pending_cov.values()):.2f} s before the end; energy after that "
                    "is integrated from power readings"
                )
            elif st.gap_from is not None:
                open_gap_s = (st.gap_until or st.gap_from) - st.gap_from
                warnings.append(
                    f"{st.channel.key}: no readings for the last {open_gap_s:.2f} s "
                    "(sensor lost or failing); energy there is unknown"
                )
            for p, j in energy.items():
                if p == IDLE_PHASE:
                    idle_j += j
                    idle_cov += cover.get(p, 0.0)
                elif p not in NOT_WORK:
                    _add_to(by_phase, p, j)
                    _add_to(covered, p, cover.get(p, 0.0) / len(states))
            if st.gap_s > 0:
                warnings.append(
                    f"{st.channel.key}: no readings for {st.gap_s:.2f} s "
                    "(sensor lost or failing); energy there is unknown"
                )
            if st.bridged_s > 0:
                warnings.append(
                    f"{st.channel.key}: reads failed for {st.bridged_s:.2f} s; the counter's "
                    "delta across the gap was used (no energy lost)"
                )
            if st.resets:
                warnings.append(f"{st.channel.key}: counter went backwards {st.resets}x")
        gross = sum(by_phase.values())
        # Channels of one source cover the idle phase alike; average over them.
        idle_w = idle_j / (idle_cov / len(states)) if idle_cov > 0 else None
        cov_s = sum(covered.values())
        net = gross - idle_w * cov_s if idle_w is not None else None
        if net is not None and net < 0:
            warnings.append(
                f"{source}: net of idle came out negative ({net:.2f} J): the idle baseline drew "
                "more than the run; net not reported"
            )
            net = None
        track = self._tracks.get(source)
        return SourceEnergy(
            source=source,
            label=weakest_label(labels) or "estimated",
            method="; ".join(dict.fromkeys(s.channel.method for s in states)),
            gross_j=gross,
            duration_s=work_s,
            idle_power_w=idle_w,
            net_j=net,
            mean_power_w=gross / work_s if work_s > 0 else None,
            peak_power_w=track.peak_w if track else None,
            by_phase_j=by_phase,
            warnings=list(dict.fromkeys(warnings)),
            covered_by_phase_s=covered,
            idle_power_spread_w=_spread(track.idle_w) if track else None,
        )


def _spread(powers: list[float]) -> dict[str, float] | None:
    """How steady the idle window was: a wide spread means the baseline is shaky."""
    if not powers:
        return None
    n = len(powers)
    mean = sum(powers) / n
    sd = math.sqrt(sum((p - mean) ** 2 for p in powers) / (n - 1)) if n > 1 else 0.0
    return {"min": min(powers), "max": max(powers), "mean": mean, "sd": sd, "n": float(n)}
