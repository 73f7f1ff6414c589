"""The background sampler: reads every sensor on a drift-free schedule.

Drift-free means tick k is due at ``start + k * interval``, whatever the previous tick cost; a
tick that falls behind by more than an interval skips the missed slots (counted) rather than
bursting to catch up, so the sample rate never lies. Timestamps are ``time.monotonic``.

Readings go three ways: the energy accumulator (joules per source and phase), bounded ring
buffers for live views, and batches handed to ``on_batch`` (the run store) so the store sees a
few writes per second instead of one per sample.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wattlab.core.measure.energy import EnergyAccumulator
from wattlab.core.measure.sensors.base import EnergyChannel, Reading, Sensor

MIN_INTERVAL_S = 0.01


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds
    values: Reading


class Schedule:
    """Slot arithmetic for a drift-free periodic loop, separate from threads so it is testable."""

    def __init__(self, start: float, interval_s: float) -> None:
        self.start = start
        self.interval_s = interval_s
        self.k = 0

    @property
    def due(self) -> float:
        return self.start + self.k * self.interval_s

    def advance(self, now: float) -> int:
        """Move to the next slot after the one just served; if ``now`` is already past it, jump
        to the first future slot. Returns how many slots were skipped."""
        self.k += 1
        if now <= self.due:
            return 0
        behind = math.floor((now - self.due) / self.interval_s) + 1
        self.k += behind
        return behind


class RingBuffers:
    """Fixed-capacity time series for live plots: the newest ``capacity`` samples per key."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._t = np.full(capacity, np.nan)
        self._cols: dict[str, np.ndarray] = {}
        self._n = 0  # total appended
        self._lock = threading.Lock()

    def append(self, t: float, values: Reading) -> None:
        with self._lock:
            i = self._n % self.capacity
            self._t[i] = t
            for k, v in values.items():
                col = self._cols.get(k)
                if col is None:
                    col = self._cols[k] = np.full(self.capacity, np.nan)
                col[i] = np.nan if v is None else v
            for k, col in self._cols.items():
                if k not in values:
                    col[i] = np.nan
            self._n += 1

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._cols)

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def first_t(self) -> float | None:
        """The oldest sample's time still held (None when empty): tells a later run's buffer
        from an earlier one's without copying a series."""
        with self._lock:
            if self._n == 0:
                return None
            return float(self._t[self._n % self.capacity if self._n > self.capacity else 0])

    def last_t(self) -> float | None:
        with self._lock:
            return None if self._n == 0 else float(self._t[(self._n - 1) % self.capacity])

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Oldest-first copies of (t, values); NaN where the key had no value."""
        with self._lock:
            n = min(self._n, self.capacity)
            col = self._cols.get(key)
            if n == 0:
                return np.empty(0), np.empty(0)
            start = self._n % self.capacity if self._n > self.capacity else 0
            order = (np.arange(n) + start) % self.capacity
            vals = col[order].copy() if col is not None else np.full(n, np.nan)
            return self._t[order].copy(), vals


@dataclass
class SamplerStats:
    ticks: int = 0
    missed_slots: int = 0
    max_lag_s: float = 0.0
    lags_s: list[float] = field(default_factory=list)


class Sampler:
    def __init__(
        self,
        sensors: Sequence[Sensor],
        interval_s: float = 0.1,
        channels: list[EnergyChannel] | None = None,
        ring_capacity: int = 36_000,
        on_batch: Callable[[list[Sample]], None] | None = None,
        batch_size: int = 10,
        clock: Callable[[], float] = time.monotonic,
        keep_lags: bool = False,
    ) -> None:
        if not interval_s >= MIN_INTERVAL_S:
            raise ValueError(
                f"sampling interval must be at least {MIN_INTERVAL_S} s, got {interval_s}"
            )
        self.sensors = list(sensors)
        self.interval_s = interval_s
        self.energy = EnergyAccumulator(
            channels if channels is not None else [c for s in sensors for c in s.channels()]
        )
        # Each sensor's energy keys, so a sensor whose read failed shows as a gap on its own
        # channels (and only there).
        self._energy_keys = [
            [k for c in s.channels() for k in (c.key, c.fallback_key) if k] for s in self.sensors
        ]
        self._tick_lock = threading.Lock()
        self.ring = RingBuffers(ring_capacity)
        self.stats = SamplerStats()
        self._on_batch = on_batch
        self._batch: list[Sample] = []
        self._batch_size = batch_size
        self._clock = clock
        self._keep_lags = keep_lags
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Sample | None = None
        self.batch_error: BaseException | None = None

    # -- control -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wattlab-sampler", daemon=True)
        self._thread.start()

    def wait_first_sample(self, timeout: float = 5.0) -> bool:
        return self._first.wait(timeout)

    def mark_phase(self, name: str, t: float | None = None) -> float:
        """Start phase ``name`` at monotonic time ``t`` (now if None); returns the mark's time.
        A past ``t`` (the workload's own stamp, read from a pipe a little later) is fine: the
        interval that holds it is split there."""
        with self._lock:
            t = self._clock() if t is None else t
            self.energy.mark_phase(t, name)
            return t

    def energy_so_far(self, phases: tuple[str, ...] | None = None) -> float:
        """Joules in ``phases`` (default: all but idle) up to the last tick; thread-safe."""
        with self._lock:
            return self.energy.total_j(phases)

    def stop(self) -> float:
        """Stop the thread, take one last sample so energy covers up to now, flush the batch.
        Returns the end time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        end = self.tick()
        self._flush()
        return end

    # -- the loop ----------------------------------------------------------------------------
    def tick(self) -> float:
        """Read every sensor once and route the sample; callable directly (tests, final read).

        Each sensor's reading is stamped with the midpoint of its own read, so a slow sensor
        (NVML can take milliseconds per GPU) does not shift another's timestamp."""
        with self._tick_lock:
            values: Reading = {}
            for sensor, keys in zip(self.sensors, self._energy_keys, strict=True):
                t0 = self._clock()
                try:
                    reading = sensor.read()
                except Exception:  # noqa: BLE001 - a broken sensor must not end the run
                    reading = {}
                t_read = (t0 + self._clock()) / 2
                for k in keys:
                    reading.setdefault(k, None)
                values.update(reading)
                if keys:  # a sensor without energy channels (the process tree) feeds none
                    with self._lock:
                        self.energy.add(t_read, reading)
            t = self._clock()
            sample = Sample(t, values)
            self.last = sample
            self.ring.append(t, values)
            self._batch.append(sample)
            if len(self._batch) >= self._batch_size:
                self._flush()
            self.stats.ticks += 1
            self._first.set()
            return t

    def sample_now(self) -> float:
        """Take a sample at once, off the schedule: called at every phase and epoch boundary so
        the energy at the boundary is read there, not at the last periodic tick."""
        return self.tick()

    def _flush(self) -> None:
        if not self._batch or self._on_batch is None:
            self._batch.clear()
            return
        batch, self._batch = self._batch, []
        try:
            self._on_batch(batch)
        except Exception as exc:  # noqa: BLE001 - keep measuring; the caller reports it
            self.batch_error = exc

    def _run(self) -> None:
        sched = Schedule(self._clock(), self.interval_s)
        while not self._stop.is_set():
            now = self._clock()
            if now < sched.due:
                if self._stop.wait(sched.due - now):
                    break
                continue
            lag = now - sched.due
            self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
            if self._keep_lags:
                self.stats.lags_s.append(lag)
            self.tick()
            self.stats.missed_slots += sched.advance(self._clock())
