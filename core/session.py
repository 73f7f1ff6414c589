"""The parent side of a session: spawn the worker, measure it, relay its events, keep the run.

Usable from the CLI (blocking) and from the GUI's controller (in a background thread, with
``on_event`` forwarding to Qt signals). ``cancel()`` asks the worker to stop at its next step,
then terminates it after ``grace_s``, then kills it; the run is kept as ``cancelled`` either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError
from .measure import Measurement, MeasureSettings
from .sensors import SensorSet
from .spec import RunSpec
from .store import RunStore

EventCallback = Callable[[dict[str, Any]], None]


class SessionFailed(Exception):
    """The worker reported an error. ``user`` is True when the input was at fault."""

    def __init__(self, message: str, user: bool, run_id: int) -> None:
        super().__init__(message)
        self.user = user
        self.run_id = run_id


def phase_energy(result: dict[str, Any], phases: tuple[str, ...]) -> dict[str, Any]:
    """Energy spent in ``phases``: gross, net of idle, and the label of the weakest source."""
    from .sensors.base import weakest_label

    durations = result.get("phases", {})
    dur = sum(durations.get(p, 0.0) for p in phases)
    gross = 0.0
    net: float | None = 0.0
    labels = []
    for e in result.get("energy", []):
        j = sum(e["by_phase_j"].get(p, 0.0) for p in phases)
        gross += j
        labels.append(e["label"])
        if e["idle_power_w"] is None or net is None:
            net = None
        else:
            net += j - e["idle_power_w"] * dur
    return {
        "phases": list(phases),
        "duration_s": dur,
        "gross_j": gross,
        "net_j": net,
        "label": weakest_label(labels),
    }


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
    ) -> None:
        self.spec = spec.validate()
        self.store = store
        self.settings = settings or MeasureSettings()
        self.on_event = on_event or (lambda e: None)
        self.sensors = sensors
        self.data_dir = data_dir or store.path.parent
        self.grace_s = grace_s
        self._proc: subprocess.Popen[str] | None = None
        self._cancel = threading.Event()
        self.run_id: int | None = None
        self.measurement: Measurement | None = None

    def cancel(self) -> None:
        """Thread-safe: the read loop notices and escalates if the worker does not stop."""
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
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

    def run(self) -> dict[str, Any]:
        spec = self.spec
        label = (
            spec.label or f"{spec.mode} {Path(spec.model).name if spec.model != 'demo' else 'demo'}"
        )
        m = Measurement(self.store, "session", spec.to_dict(), label, self.settings, self.sensors)
        self.run_id = m.run_id
        self.measurement = m  # the GUI reads live ring buffers from m.sampler
        self.on_event({"event": "run", "run_id": m.run_id})
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        rounds: list[dict[str, Any]] = []
        epochs: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="wattlab-spec-") as tmp, m:
            spec_path = Path(tmp) / "spec.json"
            spec.save(spec_path)
            env = dict(
                os.environ,
                WATTLAB_DATA_DIR=str(self.data_dir),
                HF_HUB_OFFLINE="1",
                TRANSFORMERS_OFFLINE="1",
                PYTHONUNBUFFERED="1",
            )
            stderr_path = Path(tmp) / "stderr.log"
            with open(stderr_path, "w+") as err:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "wattlab.core.worker", str(spec_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    env=env,
                    bufsize=1,
                )
                if self._cancel.is_set():
                    self.cancel()
                m.attach(self._proc.pid, phase="start")
                for line in self._proc.stdout:
                    try:
                        ev = json.loads(line)
                    except json.JSONDecodeError:
                        ev = {"event": "log", "message": line.rstrip()}
                    kind = ev.get("event")
                    if kind == "phase":
                        m.phase(ev["name"])
                    elif kind in ("epoch", "round"):
                        ev["energy_j_so_far"] = m.sampler.energy_so_far(("train", "eval"))
                        (epochs if kind == "epoch" else rounds).append(ev)
                    elif kind == "result":
                        result = ev
                    elif kind == "error":
                        error = ev
                    if kind not in ("step", "phase"):  # phases are stored by m.phase()
                        self.store.add_event(m.run_id, time.monotonic(), kind or "?", ev)
                    self.on_event(ev)
                code = self._proc.wait()
                err.seek(0)
                stderr_tail = err.read()[-4000:]
            cancelled = self._cancel.is_set() or bool(result and result.get("cancelled"))
            extra: dict[str, Any] = {"spec": spec.to_dict(), "worker_exit_code": code}
            if result is not None:
                extra["session"] = {k: v for k, v in result.items() if k not in ("event", "t")}
                for key, evs in (("epochs", epochs), ("lottery_rounds", rounds)):
                    if evs:
                        extra["session"][key] = [
                            {k: v for k, v in e.items() if k not in ("event", "t")} for e in evs
                        ]
            if error is not None:
                status, message = "failed", error.get("message")
            elif result is None:
                status = "cancelled" if cancelled else "failed"
                message = (
                    "cancelled before the session produced a result"
                    if cancelled
                    else _crash_message(code, stderr_tail)
                )
            else:
                status, message = ("cancelled" if cancelled else "completed"), None
            final = m.finish(status, extra, message)
            rag = (final.get("session") or {}).get("rag")
            if rag and rag.get("query_log"):
                from .rag.attribution import attribute_queries

                rag["energy"] = attribute_queries(
                    rag["query_log"],
                    self.store.samples(m.run_id),
                    m.sampler.energy.channels,
                    time.monotonic() - time.time(),
                )
                index_phase = phase_energy(final, ("index",))
                rag["index"]["energy_j"] = index_phase["gross_j"]
                rag["index"]["energy_label"] = index_phase["label"]
        final["message"] = message
        final["measured_phase"] = phase_energy(
            final, ("train", "eval") if spec.mode == "train" else ("infer",)
        )
        _per_item(final)
        self.store.finish_run(m.run_id, status, final, message)
        if status == "failed":
            raise SessionFailed(
                message or "the session failed",
                bool(error and error.get("kind") == "user"),
                m.run_id,
            )
        return final


def _crash_message(code: int, stderr_tail: str) -> str:
    last = [ln for ln in stderr_tail.strip().splitlines() if ln.strip()]
    why = last[-1] if last else "no output"
    if code < 0:
        return f"the worker was killed by signal {-code} ({why})"
    return f"the worker crashed with exit code {code}: {why}"


def _per_item(final: dict[str, Any]) -> None:
    s = final.get("session") or {}
    pe = final["measured_phase"]
    items, tokens = s.get("items") or 0, s.get("tokens") or 0
    final["energy_per_item_j"] = pe["gross_j"] / items if items else None
    final["energy_per_token_j"] = pe["gross_j"] / tokens if tokens else None
    final["net_energy_per_item_j"] = (
        pe["net_j"] / items if items and pe["net_j"] is not None else None
    )


__all__ = ["SessionRunner", "SessionFailed", "phase_energy", "UserError"]
