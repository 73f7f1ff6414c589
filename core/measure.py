"""One measured run: sensors, sampler, idle baseline, phases, and its row in the run store.

Every kind of run (``wattlab profile`` of any command, and later training or inference sessions)
goes through this one harness, so idle handling, phase accounting and the result's labels are
the same everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .energy import IDLE_PHASE, SourceEnergy
from .sampling import Sampler
from .sensors import SensorSet, discover
from .sensors.base import weakest_label
from .store import RunStore


@dataclass
class MeasureSettings:
    interval_s: float = 0.1
    idle_s: float = 2.0


@dataclass
class Totals:
    gross_j: float
    net_j: float | None
    label: str | None
    sources: list[str] = field(default_factory=list)


def totals(energy: list[SourceEnergy]) -> Totals:
    """Sum over sources; the sum carries the weakest label of its parts."""
    net = [e.net_j for e in energy]
    return Totals(
        gross_j=sum(e.gross_j for e in energy),
        net_j=sum(n for n in net if n is not None) if all(n is not None for n in net) else None,
        label=weakest_label([e.label for e in energy]),
        sources=[e.source for e in energy],
    )


class Measurement:
    """Use as a context manager; ``attach`` the workload's PID, mark phases, then ``finish``."""

    def __init__(
        self,
        store: RunStore,
        kind: str,
        spec: dict,
        label: str | None = None,
        settings: MeasureSettings | None = None,
        sensors: SensorSet | None = None,
    ):
        self.store = store
        self.settings = settings or MeasureSettings()
        self.sensors = sensors or discover()
        self.run_id = store.create_run(kind, spec, label)
        self.sampler = Sampler(
            self.sensors.sensors,
            interval_s=self.settings.interval_s,
            on_batch=lambda batch: store.add_samples(self.run_id, batch),
        )
        self.work_started: float | None = None
        self.finished = False

    def __enter__(self) -> Measurement:
        self.sampler.start()
        self.sampler.wait_first_sample()
        first = self.sampler.last.values if self.sampler.last else {}
        # GPU temperature at the start, so a comparison can show heat did not favour one side.
        self.start_temp_c = {
            k.split(".")[0]: v for k, v in first.items() if k.endswith(".temp_c") and v is not None
        }
        if self.settings.idle_s > 0:
            self.phase(IDLE_PHASE)
            time.sleep(self.settings.idle_s)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.finished:
            status = "cancelled" if exc_type is KeyboardInterrupt else "failed"
            self.finish(status, message=f"{exc_type.__name__}: {exc}" if exc_type else None)

    def phase(self, name: str) -> None:
        t = self.sampler.mark_phase(name)
        if name != IDLE_PHASE and self.work_started is None:
            self.work_started = t
        self.store.add_event(self.run_id, t, "phase", {"name": name})

    def attach(self, pid: int, phase: str = "run") -> None:
        self.sensors.set_target(pid)
        self.phase(phase)

    def finish(self, status: str, extra: dict | None = None, message: str | None = None) -> dict:
        end = self.sampler.stop()
        self.finished = True
        self.sensors.close()
        energy = self.sampler.energy.results(end, self.settings.interval_s)
        tot = totals(energy)
        warnings = [w for e in energy for w in e.warnings]
        if self.sampler.batch_error is not None:
            warnings.append(f"some samples could not be stored: {self.sampler.batch_error}")
        st = self.sampler.stats
        result = {
            "run_id": self.run_id,
            "status": status,
            "duration_s": (end - self.work_started) if self.work_started is not None else 0.0,
            "energy": [e.as_dict() for e in energy],
            "total": tot.__dict__,
            "phases": self.sampler.energy.phase_durations(end),
            "sampling": {
                "interval_s": self.settings.interval_s,
                "idle_s": self.settings.idle_s,
                "ticks": st.ticks,
                "missed_slots": st.missed_slots,
                "max_lag_s": st.max_lag_s,
            },
            "sensors": [s.__dict__ for s in self.sensors.statuses],
            "power_model": self.sensors.power_model.as_dict() if self.sensors.power_model else None,
            "warnings": warnings,
            "start_temp_c": getattr(self, "start_temp_c", {}),
        }
        result.update(extra or {})
        self.store.finish_run(self.run_id, status, result, message)
        return result
