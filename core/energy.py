"""Turning a stream of readings into joules, per source and per phase, online.

Online because a run can last hours: the accumulator keeps one previous value per channel, not
the samples. Each interval's energy is a counter delta (unwrapped with the counter's range) or a
trapezoid of power, and is split across phase boundaries in proportion to time, so a phase
marked between two ticks gets its share rather than the whole interval.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .sensors.base import EnergyChannel, Reading, weakest_label

IDLE_PHASE = "idle"
MIN_COUNTER_UPDATES = 3


@dataclass
class _ChannelState:
    channel: EnergyChannel
    last_t: float | None = None
    last_v: float | None = None
    by_phase: dict[str, float] = field(default_factory=dict)
    covered_by_phase: dict[str, float] = field(default_factory=dict)
    gap_s: float = 0.0
    resets: int = 0


@dataclass
class SourceEnergy:
    """Energy of one source (gpu0, cpu, ram) over a run; ``net_j`` subtracts idle power."""

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

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class EnergyAccumulator:
    def __init__(self, channels: list[EnergyChannel], peak_min_dt_s: float = 0.0) -> None:
        # Peak power is read off intervals at least this long: the final tick at stop() can
        # come milliseconds after the last one, and a counter step over 5 ms is not a peak.
        self._peak_min_dt_s = peak_min_dt_s
        self._states = [_ChannelState(c) for c in channels]
        self._phase_t: list[float] = []
        self._phase_name: list[str] = []
        self._peak_w: dict[str, float] = {}

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
        cur_name = self._phase_name[i] if i >= 0 else "pre"
        j = i + 1
        while j < len(self._phase_t) and self._phase_t[j] < t1:
            pieces.append((cur_name, (self._phase_t[j] - cur_start) / (t1 - t0)))
            cur_start = self._phase_t[j]
            cur_name = self._phase_name[j]
            j += 1
        pieces.append((cur_name, (t1 - cur_start) / (t1 - t0)))
        return [(n, f) for n, f in pieces if f > 0]

    def add(self, t: float, reading: Reading) -> None:
        tick_w: dict[str, float] = {}
        for st in self._states:
            ch = st.channel
            v = reading.get(ch.key)
            if v is None:
                if st.last_t is not None:
                    st.gap_s += t - st.last_t
                    st.last_t = t  # the gap is unknown energy; resume from the next value
                st.last_v = None
                continue
            if st.last_t is not None and st.last_v is not None and t > st.last_t:
                dt = t - st.last_t
                if ch.kind == "counter":
                    d = v - st.last_v
                    if d < 0:
                        if ch.wrap:
                            d += ch.wrap
                        else:
                            st.resets += 1
                            d = 0.0
                    joules = d * ch.scale_j
                else:
                    joules = 0.5 * (st.last_v + v) * dt
                if dt >= self._peak_min_dt_s:
                    tick_w[ch.source] = tick_w.get(ch.source, 0.0) + joules / dt
                for phase, frac in self._split(st.last_t, t):
                    st.by_phase[phase] = st.by_phase.get(phase, 0.0) + joules * frac
                    st.covered_by_phase[phase] = st.covered_by_phase.get(phase, 0.0) + dt * frac
            st.last_t, st.last_v = t, v
        for source, w in tick_w.items():
            self._peak_w[source] = max(w, self._peak_w.get(source, w))

    def total_j(self, phases: tuple[str, ...] | None = None) -> float:
        """Joules so far over every source, in ``phases`` (default: every phase except idle);
        for "energy to reach accuracy X" curves."""
        skip = (IDLE_PHASE, "pre")
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

    def results(self, end_t: float, sample_interval_s: float) -> list[SourceEnergy]:
        """Per-source energy over every phase except idle; idle only sets the subtracted power."""
        durations = self.phase_durations(end_t)
        work_s = sum(d for p, d in durations.items() if p != IDLE_PHASE)
        by_source: dict[str, list[_ChannelState]] = {}
        for st in self._states:
            by_source.setdefault(st.channel.source, []).append(st)
        out: list[SourceEnergy] = []
        for source, states in by_source.items():
            warnings: list[str] = []
            by_phase: dict[str, float] = {}
            idle_j = 0.0
            idle_cov = 0.0
            for st in states:
                for p, j in st.by_phase.items():
                    if p == IDLE_PHASE:
                        idle_j += j
                        idle_cov += st.covered_by_phase.get(p, 0.0)
                    elif p != "pre":
                        by_phase[p] = by_phase.get(p, 0.0) + j
                if st.gap_s > 0:
                    warnings.append(
                        f"{st.channel.key}: no readings for {st.gap_s:.2f} s "
                        "(sensor lost or failing); energy there is unknown"
                    )
                if st.resets:
                    warnings.append(f"{st.channel.key}: counter went backwards {st.resets}x")
                period = max(st.channel.update_period_s, sample_interval_s)
                if 0 < work_s < MIN_COUNTER_UPDATES * period:
                    warnings.append(
                        f"{source}: the {work_s:.3f} s window is shorter than "
                        f"{MIN_COUNTER_UPDATES} sensor updates ({period:.3f} s each); "
                        "its energy is unreliable"
                    )
            gross = sum(by_phase.values())
            idle_w = None
            if idle_cov > 0:
                # Channels of one source cover the idle phase alike; average over one of them.
                idle_w = idle_j / (idle_cov / len(states))
            net = gross - idle_w * work_s if idle_w is not None else None
            out.append(
                SourceEnergy(
                    source=source,
                    label=weakest_label([s.channel.label for s in states]) or "estimated",
                    method="; ".join(dict.fromkeys(s.channel.method for s in states)),
                    gross_j=gross,
                    duration_s=work_s,
                    idle_power_w=idle_w,
                    net_j=net,
                    mean_power_w=gross / work_s if work_s > 0 else None,
                    peak_power_w=self._peak_w.get(source),
                    by_phase_j=by_phase,
                    warnings=list(dict.fromkeys(warnings)),
                )
            )
        return out
