"""The parent side of a session: spawn the worker, measure it, relay its events, keep the run.

Usable from the CLI (blocking) and from the GUI's controller (in a background thread, with
``on_event`` forwarding to Qt signals). ``cancel()`` asks the worker to stop at its next step,
then terminates it after ``grace_s``, then kills it; the run is kept as ``cancelled`` either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattlab.core import protocol
from wattlab.core.errors import UserError
from wattlab.core.measure.meter import Measurement, MeasureSettings
from wattlab.core.measure.sensors import SensorSet, discover
from wattlab.core.measure.store import RunStore
from wattlab.core.results import PhaseEnergy
from wattlab.core.run import launch
from wattlab.core.run.neighbours import Neighbours, survey
from wattlab.core.run.power_limit import GpuPowerLimit
from wattlab.core.spec import RunSpec
from wattlab.core.tempdirs import SPEC_PREFIX, owned_tempdir, remove_owned

if TYPE_CHECKING:
    from wattlab.core.measure.nodes import NodeMeter, NodesEnergy

EventCallback = Callable[[dict[str, Any]], None]


class SessionFailed(Exception):
    """The worker reported an error. ``user`` is True when the input was at fault."""

    def __init__(self, message: str, user: bool, run_id: int) -> None:
        super().__init__(message)
        self.user = user
        self.run_id = run_id


def phase_energy(
    result: dict[str, Any], phases: tuple[str, ...], warnings: list[str] | None = None
) -> PhaseEnergy:
    """Energy spent in ``phases``: gross, net of idle (over the time each source actually had
    readings), and the label of the weakest counted source. Sources outside the run's device
    scope are left out. A negative net is a warning, not a result."""
    from wattlab.core.measure.sensors.base import weakest_label

    durations = result.get("phases", {})
    dur = sum(durations.get(p, 0.0) for p in phases)
    gross = 0.0
    net: float | None = 0.0
    labels = []
    for e in result.get("energy", []):
        if not e.get("in_total", True):
            continue
        j = sum(e["by_phase_j"].get(p, 0.0) for p in phases)
        gross += j
        labels.append(e["label"])
        covered = e.get("covered_by_phase_s")
        cov = sum(covered.get(p, 0.0) for p in phases) if covered is not None else dur
        if e["idle_power_w"] is None or net is None:
            net = None
        else:
            net += j - e["idle_power_w"] * cov
    if net is not None and net < 0:
        if warnings is not None:
            warnings.append(
                f"net of idle over {'+'.join(phases)} came out negative ({net:.2f} J): the idle "
                "baseline drew more than the run; net not reported"
            )
        net = None
    return PhaseEnergy(tuple(phases), dur, gross, net, weakest_label(labels))


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class _EventLog:
    """What the worker said, gathered while its lines are read."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.device: dict[str, Any] | None = None
        self.epochs: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.nodes_started = False  # the other nodes' window opened (--nodes / --prometheus)
        self.nodes: NodesEnergy | None = None  # ... and what it read when it closed


class SessionRunner:
    def __init__(
        self,
        spec: RunSpec,
        store: RunStore,
        settings: MeasureSettings | None = None,
        on_event: EventCallback | None = None,
        sensors: SensorSet | None = None,
        data_dir: Path | None = None,
        grace_s: float = 2.0,
        check_neighbours: bool = True,
        node_meter: NodeMeter | None = None,
    ) -> None:
        self.spec = spec.validate()
        # Other nodes' energy over this run's measured phase (--nodes / --prometheus), or None.
        self.node_meter = node_meter
        self.store = store
        self.settings = (settings or MeasureSettings()).validate()
        self.on_event = on_event or (lambda e: None)
        self.sensors = sensors
        self.data_dir = data_dir or store.path.parent
        self.grace_s = grace_s
        self.check_neighbours = check_neighbours
        self._proc: subprocess.Popen[str] | None = None
        self._cancel = threading.Event()
        self.run_id: int | None = None
        self.measurement: Measurement | None = None

    def cancel(self) -> None:
        """Thread-safe: the read loop notices and escalates if the worker does not stop."""
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write("cancel\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass
            threading.Thread(target=self._escalate, args=(proc,), daemon=True).start()

    def _escalate(self, proc: subprocess.Popen[str]) -> None:
        try:
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _look_around(self) -> Neighbours | None:
        """Other sessions or busy processes on this machine, said before anything starts."""
        if not self.check_neighbours:
            return None
        crowd = survey()
        warning = crowd.warning()
        if warning:
            self.on_event({"event": protocol.LOG, "message": f"warning: {warning}"})
        return crowd

    def _measured_spec(self, sensors: SensorSet) -> RunSpec:
        """The spec as it runs: the minimum measured duration and the slowest sensor's update
        period, which the worker needs to decide whether to repeat inference batches."""
        from wattlab.core.measure.energy import EnergyAccumulator

        period = EnergyAccumulator(sensors.channels()).slowest_update_s(self.settings.interval_s)
        return dataclasses.replace(
            self.spec, min_measure_s=self.settings.min_measure_s, sensor_update_s=period
        )

    def run(self) -> dict[str, Any]:
        sensors = self.sensors or discover()
        spec = self._measured_spec(sensors)
        label = (
            spec.label or f"{spec.mode} {'demo' if spec.model == 'demo' else Path(spec.model).name}"
        )
        crowd = self._look_around()
        limit = GpuPowerLimit.for_spec(spec)  # checked (one line) before anything runs
        m = Measurement(self.store, "session", spec.to_dict(), label, self.settings, sensors)
        crowd_warning = crowd.warning() if crowd is not None else None
        if crowd_warning:
            m.warnings.append(f"at the start, {crowd_warning}")
        self.run_id = m.run_id
        self.measurement = m  # the GUI reads live ring buffers from m.sampler
        self.on_event({"event": "run", "run_id": m.run_id})
        log = _EventLog()
        with owned_tempdir(SPEC_PREFIX) as tmp, m:
            try:
                with limit or nullcontext():  # set for the worker; restored however it ends
                    code, stderr_tail = self._run_worker(spec, tmp, m, log)
            finally:
                if self.node_meter is not None:
                    self.node_meter.close()  # a window never finished: its thread stops here
            status, message = _status(log, code, stderr_tail, self._cancel.is_set())
            self._scope(m, log)
            phases = protocol.measured_phases(spec.mode)
            quality = m.contention(phases)
            final = m.finish(status, self._extra(spec, code, log), message)
            if limit is not None:
                limit.report(final)
            if quality is not None:
                final["contention"] = quality
                if quality.get("disturbed"):
                    final["warnings"].append(_disturbed_text(quality))
            self._attribute_rag(final, m)
            if log.nodes is not None:
                final["nodes"] = log.nodes.to_dict()
                final["warnings"] += [f"nodes: {w}" for w in log.nodes.warnings] + [
                    f"node {n.node}: {w}" for n in log.nodes.nodes for w in n.warnings
                ]
            final["warnings"] += _session_warnings(final.get("session") or {})
        final["message"] = message
        if crowd is not None and crowd.found:
            final["neighbours"] = crowd.to_dict()
        final["measured_phase"] = phase_energy(final, phases, final["warnings"]).to_dict()
        final["warnings"] += m.sampler.energy.window_warnings(
            final["measured_phase"]["duration_s"], self.settings.interval_s
        )
        _per_item(final)
        self.store.finish_run(m.run_id, status, final, message)
        if status == "failed":
            raise SessionFailed(
                message or "the session failed",
                bool(log.error and log.error.get("kind") == "user"),
                m.run_id,
            )
        return final

    def _run_worker(
        self, spec: RunSpec, tmp: Path, m: Measurement, log: _EventLog
    ) -> tuple[int, str]:
        """Start the worker, relay its events until it exits; (exit code, end of stderr)."""
        spec_path = tmp / "spec.json"
        spec.save(spec_path)
        env = dict(
            os.environ,
            WATTLAB_DATA_DIR=str(self.data_dir),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            # the worker exits on its own when this process is gone (see worker/lifeline.py)
            WATTLAB_PARENT_PID=str(os.getpid()),
        )
        launched = launch.launch_spec(spec)  # --nproc / ddp:nproc N: N ranks under torchrun
        with open(tmp / "stderr.log", "w+") as err:
            cpu_before = _children_cpu_s()
            self._proc = subprocess.Popen(
                launch.worker_command(launched, spec_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=launch.worker_env(launched, env, tmp),
                bufsize=1,
            )
            if self._cancel.is_set():
                self.cancel()
            m.attach(self._proc.pid, phase="start")
            assert self._proc.stdout is not None  # started with stdout=PIPE
            for line in self._proc.stdout:
                self._handle(line, m, log)
            code = self._proc.wait()
            remove_owned(self._proc.pid)  # a worker killed by a signal could not clean up
            # The kernel's exact CPU time of the reaped worker (the sampler's last read of the
            # live process can be up to a tick old).
            m.sensors.process.set_exited_cpu_time(_children_cpu_s() - cpu_before)
            err.seek(0)
            return code, launch.crash_detail(launched, tmp, err.read()[-4000:])

    def _handle(self, line: str, m: Measurement, log: _EventLog) -> None:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            ev = {"event": "log", "message": line.rstrip()}
        if not isinstance(ev, dict):
            ev = {"event": "log", "message": line.rstrip()}
        kind = ev.get("event")
        if kind == protocol.PHASE:
            m.phase(str(ev.get("name")), _worker_time(ev, m))
            self._node_window(str(ev.get("name")), log)
        elif kind in (protocol.EPOCH, protocol.ROUND):
            m.sampler.sample_now()  # energy so far is read at the boundary, not the last tick
            ev["energy_j_so_far"] = m.sampler.energy_so_far(("train", "eval"))
            (log.epochs if kind == protocol.EPOCH else log.rounds).append(ev)
        elif kind == protocol.DEVICE:
            log.device = ev
        elif kind == protocol.RESULT:
            log.result = ev
        elif kind == protocol.ERROR:
            log.error = ev
        if kind not in (protocol.STEP, protocol.PHASE):  # phases are stored by m.phase()
            self.store.add_event(m.run_id, time.monotonic(), kind or "?", ev)
        self.on_event(ev)

    def _node_window(self, phase: str, log: _EventLog) -> None:
        """The other nodes' window follows this run's measured phase: it opens at the first
        measured phase and closes at the end mark, where their energy is read."""
        meter = self.node_meter
        if meter is None:
            return
        if phase in protocol.measured_phases(self.spec.mode) and not log.nodes_started:
            meter.start()
            log.nodes_started = True
        elif phase == protocol.END_PHASE and log.nodes_started and log.nodes is None:
            log.nodes = meter.finish()

    def _scope(self, m: Measurement, log: _EventLog) -> None:
        """Count the GPU the session ran on, and only it; say what was counted and why."""
        gpus = m.sensors.gpu_sources()
        dev = log.device or {}
        device = str(dev.get("device") or "")
        if device.startswith("cuda"):
            if not gpus:
                reason = next(
                    (s.reason for s in m.sensors.statuses if s.name == "nvml" and s.reason), None
                )
                m.warnings.append(
                    f"the session ran on {device} but no GPU energy source is available"
                    + (f" ({reason})" if reason else "")
                    + ": the total covers CPU and RAM only"
                )
                return
            # One GPU per rank under DDP: the device event lists every rank's UUID.
            uuids = [str(u) for u in dev.get("uuids") or [dev.get("uuid") or ""]]
            found = [m.sensors.gpu_source_for_uuid(u) for u in uuids]
            srcs = {s for s in found if s is not None}
            if not srcs or len(srcs) < len(uuids):
                m.warnings.append(
                    f"could not match {device} to an NVML GPU by UUID: every visible GPU "
                    f"({', '.join(gpus)}) is counted"
                )
                return
            others = [g for g in gpus if g not in srcs]
            names = ", ".join(sorted(srcs))
            m.count_only(
                srcs,
                f"counted {names} ({dev.get('gpu_name', 'GPU')}), the GPU"
                + ("s the ranks" if len(srcs) > 1 else " the session")
                + " ran on"
                + (f"; {', '.join(others)} shown, not summed" if others else ""),
            )
        elif device == "cpu" and gpus:
            m.count_only(set(), f"the session ran on the CPU: {', '.join(gpus)} shown, not summed")

    @staticmethod
    def _extra(spec: RunSpec, code: int, log: _EventLog) -> dict[str, Any]:
        extra: dict[str, Any] = {"spec": spec.to_dict(), "worker_exit_code": code}
        if log.result is not None:
            extra["session"] = _strip(log.result)
            for key, evs in (("epochs", log.epochs), ("lottery_rounds", log.rounds)):
                if evs:
                    extra["session"][key] = [_strip(e) for e in evs]
        return extra

    def _attribute_rag(self, final: dict[str, Any], m: Measurement) -> None:
        rag = (final.get("session") or {}).get("rag")
        if not (rag and rag.get("query_log")):
            return
        from wattlab.core.measure.attribution import attribute_queries

        rag["energy"] = attribute_queries(
            rag["query_log"],
            self.store.samples(m.run_id),
            m.sampler.energy.channels,
            time.monotonic() - time.time(),
        )
        index_phase = phase_energy(final, ("index",))
        rag["index"]["energy_j"] = index_phase.gross_j
        rag["index"]["energy_label"] = index_phase.label


def _strip(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in ("event", "t", "mono")}


def _worker_time(ev: dict[str, Any], m: Measurement) -> float | None:
    """The worker's own monotonic stamp, if it is plausible (same clock: not in the future and
    not before the run began); otherwise None, and the mark is placed at the time of reading."""
    t = ev.get("mono")
    now = time.monotonic()
    start = m.snapshots[0].t if m.snapshots else now
    if isinstance(t, (int, float)) and start - 1.0 <= t <= now:
        return float(t)
    return None


def _status(
    log: _EventLog, code: int, stderr_tail: str, cancel_requested: bool
) -> tuple[str, str | None]:
    cancelled = cancel_requested or bool(log.result and log.result.get("cancelled"))
    if log.error is not None:
        return "failed", log.error.get("message")
    if log.result is None:
        if cancelled:
            return "cancelled", "cancelled before the session produced a result"
        return "failed", _crash_message(code, stderr_tail)
    return ("cancelled" if cancelled else "completed"), None


def _session_warnings(session: dict[str, Any]) -> list[str]:
    """What the worker found wrong with its own run, said on the run (not only in its log)."""
    out = []
    if session.get("diverged"):
        out.append(
            f"training {session['diverged']}: the run is kept with what it measured up to "
            "there; its quality figures are unknown (lower the learning rate, or use fp32)"
        )
    return out


def share_text(x: Any) -> str:
    return f"{x:.0%}" if isinstance(x, int | float) and not isinstance(x, bool) else "-"


def contention_text(q: Mapping[str, Any]) -> str:
    """What competed with a run, in words (its warning and the app's quality badge say it
    alike)."""
    parts = []
    if q.get("other_cpu_share") is not None:
        parts.append(f"other processes used {share_text(q['other_cpu_share'])} of the CPUs")
    if q.get("steal_share"):
        parts.append(f"the hypervisor stole {share_text(q['steal_share'])}")
    if q.get("other_gpu_processes"):
        parts.append(f"{q['other_gpu_processes']} other process(es) ran on the measured GPU")
    return ", ".join(parts) or "other processes competed with it"


def _disturbed_text(q: dict[str, Any]) -> str:
    return "disturbed run: " + contention_text(q) + " during the measured phase"


def _crash_message(code: int, stderr_tail: str) -> str:
    last = [ln for ln in stderr_tail.strip().splitlines() if ln.strip()]
    why = last[-1] if last else "no output"
    if code < 0:
        return f"the worker was killed by signal {-code} ({why})"
    return f"the worker crashed with exit code {code}: {why}"


def _per_item(final: dict[str, Any]) -> None:
    """Per item, per token and throughput, all over the one measured window."""
    s = final.get("session") or {}
    pe = final["measured_phase"]
    items, tokens = s.get("items") or 0, s.get("tokens") or 0
    dur = pe["duration_s"]
    final["throughput_items_per_s"] = items / dur if items and dur > 0 else None
    final["energy_per_item_j"] = pe["gross_j"] / items if items else None
    final["energy_per_token_j"] = pe["gross_j"] / tokens if tokens else None
    final["net_energy_per_item_j"] = (
        pe["net_j"] / items if items and pe["net_j"] is not None else None
    )


__all__ = ["SessionRunner", "SessionFailed", "phase_energy", "UserError"]
