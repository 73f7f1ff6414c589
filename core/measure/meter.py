"""One measured run: sensors, sampler, idle baseline, phases, and its row in the run store.

Every kind of run (``wattlab profile`` of any command, training, inference and RAG sessions)
goes through this one harness, so settling, idle handling, phase accounting, device scoping,
contention and the result's labels are the same everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from wattlab.core.measure.energy import SourceEnergy
from wattlab.core.measure.sampling import Sampler
from wattlab.core.measure.sensors import SensorSet, discover
from wattlab.core.measure.sensors.base import weakest_label
from wattlab.core.measure.store import RunStore
from wattlab.core.protocol import IDLE_PHASE, SETTLE_PHASE
from wattlab.core.results import SCHEMA_VERSION

# Power has settled when two consecutive windows agree within this share (or 1 W).
SETTLE_TOLERANCE = 0.05
# A measured phase is "disturbed" when other processes used more than this share of the
# machine's CPUs (or the hypervisor stole it), on average over the phase.
DISTURBED_CPU_SHARE = 0.10
# Idle this much above the machine's coldest recorded idle (and at least 5 W) gets a warning.
WARM_IDLE_FACTOR = 1.5


@dataclass
class MeasureSettings:
    """How a run is measured (not what runs). Validated before any run is stored."""

    interval_s: float = 0.1
    idle_s: float = 2.0
    settle_max_s: float = 10.0
    # Inference repeats its batches until the measured phase lasts this long, on a GPU or when
    # a pass would span fewer than ten sensor updates (optimum-benchmark, AI Energy Score).
    min_measure_s: float = 2.0

    # Checked against the one table of user-given numbers (spec.RANGES), which the CLI flags
    # and the settings file go through as well.
    CHECKED = ("interval_s", "idle_s", "settle_max_s", "min_measure_s")

    def validate(self) -> MeasureSettings:
        from wattlab.core.spec import RANGES

        for name in self.CHECKED:
            RANGES[name].check(getattr(self, name))
        return self


@dataclass
class Totals:
    gross_j: float
    net_j: float | None
    label: str | None
    sources: list[str] = field(default_factory=list)


def totals(energy: list[SourceEnergy]) -> Totals:
    """Sum over the sources that count; the sum carries the weakest label of its parts."""
    counted = [e for e in energy if e.in_total]
    net = [e.net_j for e in counted]
    return Totals(
        gross_j=sum(e.gross_j for e in counted),
        net_j=sum(n for n in net if n is not None) if all(n is not None for n in net) else None,
        label=weakest_label([e.label for e in counted]),
        sources=[e.source for e in counted],
    )


@dataclass
class Snapshot:
    """Counters read at a phase boundary (from the boundary sample)."""

    t: float
    phase: str
    values: dict[str, Any]


def contention(
    before: Snapshot, after: Snapshot, logical_cpus: int, other_gpu_procs: int = 0
) -> dict[str, Any]:
    """Other processes' CPU use (and the hypervisor's steal) between two boundary samples:
    whole-machine busy CPU time less the workload's and the measuring process's own."""
    dur = after.t - before.t

    def delta(key: str) -> float | None:
        a, b = before.values.get(key), after.values.get(key)
        return b - a if a is not None and b is not None else None

    busy, tree, own, steal = (
        delta(k)
        for k in ("sys.busy_cpu_s", "proc.cpu_time_s", "self.cpu_time_s", "sys.steal_cpu_s")
    )
    out: dict[str, Any] = {"window_s": dur, "other_gpu_processes": other_gpu_procs}
    if busy is None or tree is None or dur <= 0:
        out.update(other_cpu_share=None, steal_share=None, disturbed=other_gpu_procs > 0)
        return out
    other = max(0.0, busy - tree - (own or 0.0))
    capacity = dur * max(1, logical_cpus)
    out["other_cpu_s"] = other
    out["other_cpu_share"] = other / capacity
    out["steal_share"] = (steal or 0.0) / capacity
    out["disturbed"] = bool(
        out["other_cpu_share"] > DISTURBED_CPU_SHARE
        or out["steal_share"] > DISTURBED_CPU_SHARE
        or other_gpu_procs > 0
    )
    return out


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
        self.settings = (settings or MeasureSettings()).validate()
        self.sensors = sensors or discover()
        self.run_id = store.create_run(kind, spec, label)
        self.sampler = Sampler(
            self.sensors.sensors,
            interval_s=self.settings.interval_s,
            on_batch=lambda batch: store.add_samples(self.run_id, batch),
        )
        self.work_started: float | None = None
        self.finished = False
        self.snapshots: list[Snapshot] = []
        self.excluded: dict[str, str] = {}  # source -> why it is not in the totals
        self.scope_note: str | None = None
        self.warnings: list[str] = []
        self.settle: dict[str, Any] | None = None

    def __enter__(self) -> Measurement:
        try:
            return self._start()
        except BaseException as exc:
            # __exit__ does not run when __enter__ raises: a Ctrl-C during the idle baseline
            # must still end the run as cancelled, not leave it "running" (read as interrupted).
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _start(self) -> Measurement:
        """Start sampling, let power settle, then the idle baseline."""
        self.sampler.start()
        self.sampler.wait_first_sample()
        first = self.sampler.last.values if self.sampler.last else {}
        # GPU temperature at the start, so a comparison can show heat did not favour one side.
        self.start_temp_c = {
            k.split(".")[0]: v for k, v in first.items() if k.endswith(".temp_c") and v is not None
        }
        if self.settings.idle_s > 0:
            self.settle = self._wait_until_settled()
            self.phase(IDLE_PHASE)
            time.sleep(self.settings.idle_s)
        return self

    def _wait_until_settled(self) -> dict[str, Any]:
        """Wait (bounded) until two consecutive power windows agree, so the idle baseline is
        not the tail of the previous run's heat or turbo budget."""
        self.phase(SETTLE_PHASE)
        window = max(0.2, 2 * self.settings.interval_s)
        t_prev, e_prev = self.sampler.sample_now(), self.sampler.energy_so_far((SETTLE_PHASE,))
        powers: list[float] = []
        start = t_prev
        while True:
            time.sleep(window)
            t, e = self.sampler.sample_now(), self.sampler.energy_so_far((SETTLE_PHASE,))
            powers.append((e - e_prev) / (t - t_prev) if t > t_prev else 0.0)
            t_prev, e_prev = t, e
            if len(powers) >= 2:
                a, b = powers[-2], powers[-1]
                if abs(b - a) <= max(SETTLE_TOLERANCE * abs(a), 1.0):
                    return {"settled": True, "waited_s": t - start, "power_w": b}
            if t - start >= self.settings.settle_max_s:
                self.warnings.append(
                    f"power did not settle within {self.settings.settle_max_s:g} s before the "
                    f"idle baseline (last windows {powers[-2] if len(powers) > 1 else 0:.1f} W, "
                    f"{powers[-1]:.1f} W); the idle figure may be high"
                )
                return {"settled": False, "waited_s": t - start, "power_w": powers[-1]}

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.finished:
            cancelled = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
            status = "cancelled" if cancelled else "failed"
            self.finish(status, message=_exit_message(exc_type, exc, cancelled))

    def phase(self, name: str, t: float | None = None) -> float:
        """Start phase ``name`` at ``t`` (the workload's own monotonic stamp; now if None), and
        sample at once so the boundary is read at the boundary."""
        t = self.sampler.mark_phase(name, t)
        self.sampler.sample_now()
        if name not in (IDLE_PHASE, SETTLE_PHASE) and self.work_started is None:
            self.work_started = t
        last = self.sampler.last.values if self.sampler.last else {}
        self.snapshots.append(Snapshot(t, name, dict(last)))
        self.store.add_event(self.run_id, t, "phase", {"name": name})
        return t

    def attach(self, pid: int, phase: str = "run") -> None:
        self.sensors.set_target(pid)
        self.phase(phase)

    def count_only(self, sources: set[str], why: str) -> None:
        """Keep only ``sources`` among the GPUs in the totals (the others stay visible)."""
        for ch in self.sampler.energy.channels:
            if ch.source.startswith("gpu") and ch.source not in sources:
                self.excluded[ch.source] = why
        self.scope_note = why

    def scope_to_process_tree(self) -> None:
        """``profile``: count the GPUs the command's process tree ran on, where NVML can tell;
        otherwise every visible GPU, and say which."""
        gpus = self.sensors.gpu_sources()
        if not gpus:
            return
        seen: dict[str, float | None] = {}
        for g in gpus:
            _, vals = self.sampler.ring.series(f"{g}.tree_procs")
            known = [v for v in vals if v == v]
            seen[g] = max(known) if known else None
        if all(v is None for v in seen.values()):
            self.scope_note = "NVML cannot list processes here: every visible GPU counted"
            return
        used = {g for g, v in seen.items() if v}
        if not used:
            self.scope_note = (
                "the command's processes were never seen on a GPU: every visible GPU counted"
            )
            return
        self.count_only(
            used, f"counted {', '.join(sorted(used))}, where the command's processes ran"
        )

    def window(self, phases: tuple[str, ...]) -> tuple[Snapshot, Snapshot] | None:
        """Boundary snapshots around the span of ``phases``: the first mark of one of them and
        the first later mark of any other phase."""
        start = next((i for i, s in enumerate(self.snapshots) if s.phase in phases), None)
        if start is None:
            return None
        end = next(
            (s for s in self.snapshots[start + 1 :] if s.phase not in phases),
            self.snapshots[-1] if len(self.snapshots) > start + 1 else None,
        )
        return (self.snapshots[start], end) if end is not None else None

    def contention(self, phases: tuple[str, ...]) -> dict[str, Any] | None:
        win = self.window(phases)
        if win is None:
            return None
        t0, t1 = win[0].t, win[1].t
        others = 0
        for ch in self.sampler.energy.channels:
            if ch.source.startswith("gpu") and ch.source not in self.excluded:
                ts, vals = self.sampler.ring.series(f"{ch.source}.other_procs")
                seen = [v for t, v in zip(ts, vals, strict=True) if t0 <= t <= t1 and v == v]
                others = max([others, *[int(v) for v in seen]])
        return contention(win[0], win[1], psutil.cpu_count(logical=True) or 1, others)

    def finish(self, status: str, extra: dict | None = None, message: str | None = None) -> dict:
        end = self.sampler.stop()
        self.finished = True
        self.sensors.close()
        energy = self.sampler.energy.results(end)
        for e in energy:
            if e.source in self.excluded:
                e.in_total, e.note = False, self.excluded[e.source]
        tot = totals(energy)
        warnings = list(self.warnings) + [w for e in energy if e.in_total for w in e.warnings]
        warnings += self._idle_warnings(energy)
        warnings += [w for s in self.sensors.statuses for w in s.details.get("warnings", [])]
        if self.sampler.batch_error is not None:
            warnings.append(f"some samples could not be stored: {self.sampler.batch_error}")
        st = self.sampler.stats
        result = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "status": status,
            "duration_s": (end - self.work_started) if self.work_started is not None else 0.0,
            "energy": [e.as_dict() for e in energy],
            "total": tot.__dict__,
            "scope": self.scope_note,
            "phases": self.sampler.energy.phase_durations(end),
            "phase_marks": [[t, name] for t, name in self.sampler.energy.phases],
            "sampling": {
                "interval_s": self.settings.interval_s,
                "idle_s": self.settings.idle_s,
                "ticks": st.ticks,
                "missed_slots": st.missed_slots,
                "max_lag_s": st.max_lag_s,
                "settle": self.settle,
            },
            "sensors": [s.__dict__ for s in self.sensors.statuses],
            "power_model": self.sensors.power_model.as_dict() if self.sensors.power_model else None,
            "warnings": list(dict.fromkeys(warnings)),
            "start_temp_c": getattr(self, "start_temp_c", {}),
        }
        result.update(extra or {})
        self.store.finish_run(self.run_id, status, result, message)
        return result

    def _idle_warnings(self, energy: list[SourceEnergy]) -> list[str]:
        """A warm idle baseline (far above this machine's coldest) understates net energy."""
        try:
            cold = self.store.lowest_idle_power_w()
        except Exception:  # noqa: BLE001 - a damaged store must not cost the run its result
            return []
        out = []
        for e in energy:
            low = cold.get(e.source)
            w = e.idle_power_w
            if low is not None and w is not None and w > WARM_IDLE_FACTOR * low and w - low > 5:
                out.append(
                    f"{e.source}: idle baseline {w:.1f} W is far above this machine's coldest "
                    f"recorded idle ({low:.1f} W): something else was drawing power; net of "
                    "idle understates the run"
                )
        return out


def _exit_message(exc_type: type[BaseException] | None, exc: Any, cancelled: bool) -> str | None:
    """What ended a measurement early, in the user's words: a stop is not a crash."""
    if exc_type is None:
        return None
    if cancelled:
        return f"stopped by {exc}" if str(exc) else "interrupted (Ctrl-C)"
    return f"{exc_type.__name__}: {exc}"
