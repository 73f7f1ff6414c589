"""Markers: what a user's own script tells a measuring ``wattlab profile`` parent about its work.

A script that calls ``wattlab.track`` (or the Hugging Face callback) under ``wattlab profile``
must not start a second sampler: the parent already measures its whole process tree. It streams
its phases, steps and metrics to the parent instead, as JSON lines on a socket the parent
created and the child inherited; ``ENV_FD`` names the descriptor and ``ENV_INODE`` the socket's
inode, so a grandchild that inherited only the variable (subprocess closes other descriptors)
finds a descriptor that is not that socket and stays quiet rather than writing into a stranger.

A socket pair and not ``os.pipe()``: ``MSG_NOSIGNAL`` means a gone parent can never kill the
script with SIGPIPE (even one that restored SIGPIPE's default), and ``MSG_DONTWAIT`` means a
stalled parent can never block the training loop: what cannot be sent is dropped and counted.

Events (one JSON object per line, the vocabulary of ``protocol`` where it has one), each with
``mono`` (the script's ``time.monotonic()``, the parent's clock on Linux) and ``pid``:
  {"event": "phase", "name": NAME}                       a phase boundary; "post" ends the work
  {"event": "step", "steps": N, "items": N|null, "tokens": N|null}   running totals of this pid
  {"event": "metric", "name": NAME, "value": number|string|bool|null}
Steps are throttled (a few per second, and always before a phase or metric), and carry running
totals rather than increments, so a dropped line loses no count.

Shared by both sides: stdlib only, so ``import wattlab`` stays light.
"""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.protocol import END_PHASE, IDLE_PHASE, PHASE, PRE_PHASE, SETTLE_PHASE, STEP

ENV_FD = "WATTLAB_MARKER_FD"
ENV_INODE = "WATTLAB_MARKER_INODE"
METRIC = "metric"
MARKER_EVENTS = (PHASE, STEP, METRIC)
# The phase a tracked block starts in, before (or without) any phase of its own.
TRACK_PHASE = "tracked"
# The phase a profiled command is in before its script marks anything (start-up, imports).
COMMAND_PHASE = "run"
# Names WattLab gives phases itself: a user's phase of the same name would merge with them.
RESERVED_PHASES = (SETTLE_PHASE, IDLE_PHASE, PRE_PHASE, END_PHASE, COMMAND_PHASE, TRACK_PHASE)
STEP_INTERVAL_S = 0.2
MAX_NAME_CHARS = 200
# What a stalled parent may leave unsent before the script stops trying (markers turn off).
MAX_PENDING_BYTES = 1 << 20

MetricValue = float | int | str | bool | None


def check_phase_name(name: object) -> str:
    """A phase name a user gave, or ValueError with the one-line reason."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a phase name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a phase name must be at most {MAX_NAME_CHARS} characters")
    if name in RESERVED_PHASES:
        raise ValueError(
            f"phase name {name!r} is WattLab's own ({', '.join(RESERVED_PHASES)}): pick another"
        )
    return name


def check_metric(name: object, value: object) -> tuple[str, MetricValue]:
    """A metric a user gave, cleaned for JSON (a NaN is unknown: None), or ValueError."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a metric name must be a non-empty string (<= 200 chars), got {name!r}")
    if value is None or isinstance(value, (str, bool, int)):
        return name, value
    if isinstance(value, float):
        return name, value if math.isfinite(value) else None
    try:  # numpy and torch scalars
        return name, check_metric(name, value.item())[1]  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        pass
    raise ValueError(
        f"metric {name!r} must be a number, a string, a bool or None, got {type(value).__name__}"
    )


def check_count(what: str, value: object) -> int | None:
    """A step's items or tokens: None (not counted) or a whole number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value.item())  # type: ignore[attr-defined]  # numpy/torch integers
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{what} must be a whole number, got {value!r}") from None
        value = as_int
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


# -- the script's side ---------------------------------------------------------------------------
class MarkerSocket:
    """The script's end: sends events, never raises, never blocks. Once the parent is gone
    (EPIPE, a closed or foreign descriptor) every call is a no-op."""

    def __init__(self, sock: socket.socket | None, why_not: str | None = None) -> None:
        self._sock = sock
        self.why_not = why_not  # why markers are off (None while they work)
        self.dropped = 0
        self._pending = b""
        self._lock = threading.Lock()
        self._steps = 0
        self._items: int | None = None
        self._tokens: int | None = None
        self._last_step_sent = 0.0
        self._unsent_steps = False
        if hasattr(os, "register_at_fork"):
            # The reader keeps running totals per pid: a forked child that inherited this
            # object's totals would count the parent's steps again.
            os.register_at_fork(after_in_child=self._forget_totals)

    def _forget_totals(self) -> None:
        self._steps, self._items, self._tokens = 0, None, None
        self._unsent_steps = False
        self._lock = threading.Lock()

    @property
    def working(self) -> bool:
        return self._sock is not None

    # -- events ----------------------------------------------------------------------------------
    def phase(self, name: str) -> None:
        self.flush_steps()
        self.send(PHASE, name=name)

    def metric(self, name: str, value: MetricValue) -> None:
        self.flush_steps()
        self.send(METRIC, name=name, value=value)

    def step(self, items: int | None, tokens: int | None) -> None:
        with self._lock:
            self._steps += 1
            if items is not None:
                self._items = (self._items or 0) + items
            if tokens is not None:
                self._tokens = (self._tokens or 0) + tokens
            self._unsent_steps = True
            due = time.monotonic() - self._last_step_sent >= STEP_INTERVAL_S
        if due:
            self.flush_steps()

    def flush_steps(self) -> None:
        """Send the running step totals if any step is unsent (before every phase and metric,
        so each step is counted in the phase it ran in)."""
        with self._lock:
            if not self._unsent_steps:
                return
            self._unsent_steps = False
            self._last_step_sent = time.monotonic()
            totals = {"steps": self._steps, "items": self._items, "tokens": self._tokens}
        self.send(STEP, **totals)

    def send(self, event: str, **data: Any) -> None:
        if self._sock is None:
            return
        line = {"event": event, "mono": time.monotonic(), "pid": os.getpid(), **data}
        payload = (json.dumps(line, default=str) + "\n").encode()
        with self._lock:
            self._send_locked(payload)

    def _send_locked(self, payload: bytes) -> None:
        if self._sock is None:
            return
        data = self._pending + payload
        try:
            n = self._sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:  # EPIPE, ECONNRESET, EBADF: the parent is gone
            self._off(f"the measuring parent is gone ({exc.strerror or exc})")
            return
        # A partial send keeps the rest, so lines stay whole and in order.
        self._pending = data[n:]
        if len(self._pending) > MAX_PENDING_BYTES:
            self.dropped += self._pending.count(b"\n")
            self._off("the measuring parent stopped reading")

    def _off(self, why: str) -> None:
        self.why_not = why
        self._pending = b""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.detach()  # the descriptor stays open: forked children may share it
            except OSError:
                pass


def from_env(env: Mapping[str, str] | None = None) -> MarkerSocket | None:
    """The marker socket named in the environment; None when no measuring parent named one.
    A name that does not lead to that socket gives a socket that is off (and says why): the
    parent still measures this process, so the script must not start a sampler of its own."""
    env = os.environ if env is None else env
    raw = env.get(ENV_FD)
    if raw is None:
        return None
    try:
        fd = int(raw)
        st = os.fstat(fd)
    except (ValueError, OSError):
        return MarkerSocket(None, f"{ENV_FD}={raw!r} names no open descriptor")
    inode = env.get(ENV_INODE)
    if not stat.S_ISSOCK(st.st_mode) or (inode is not None and inode != str(st.st_ino)):
        return MarkerSocket(None, f"{ENV_FD}={raw} is not the measuring parent's socket")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        return MarkerSocket(None, f"{ENV_FD}={raw}: {exc.strerror or exc}")
    return MarkerSocket(sock)


# -- the parent's side ---------------------------------------------------------------------------
def child_env(sock: socket.socket, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: ``base`` (os.environ) plus the names of its marker socket."""
    env = dict(os.environ if base is None else base)
    env[ENV_FD] = str(sock.fileno())
    env[ENV_INODE] = str(os.fstat(sock.fileno()).st_ino)
    return env


@dataclass
class PhaseCount:
    steps: int = 0
    items: int | None = None
    tokens: int | None = None

    def add(self, steps: int, items: int | None, tokens: int | None) -> None:
        self.steps += steps
        if items is not None:
            self.items = (self.items or 0) + items
        if tokens is not None:
            self.tokens = (self.tokens or 0) + tokens


@dataclass
class MarkerTally:
    """What the markers said, summed: the phases in the order they were first marked, steps
    (items, tokens) per phase, and the last value of each metric. Both the profiling parent and
    an in-process ``track`` keep one, so both results read alike."""

    current: str
    phases: list[str] = field(default_factory=list)
    by_phase: dict[str, PhaseCount] = field(default_factory=dict)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    events: int = 0
    dropped_lines: int = 0
    ended: bool = False  # the last phase mark was END_PHASE

    def on_phase(self, name: str) -> None:
        self.current = name
        self.ended = name == END_PHASE
        if name != END_PHASE and name not in self.phases:
            self.phases.append(name)

    def on_steps(self, steps: int, items: int | None, tokens: int | None) -> None:
        self.by_phase.setdefault(self.current, PhaseCount()).add(steps, items, tokens)

    def reported_phases(self) -> list[str]:
        """The marked phases, after the one phase steps can be counted in unmarked: a profiled
        command's start-up, when its script counted steps before marking anything."""
        extra = [p for p, c in self.by_phase.items() if c.steps and p not in self.phases]
        return [*(p for p in extra if p != END_PHASE), *self.phases]

    def work_phases(self) -> tuple[tuple[str, ...], str]:
        """The phases that are the work, and why: those in which steps were counted; without
        steps, every marked phase; with no mark at all, the whole command."""
        with_steps = [p for p in self.reported_phases() if p in self.by_phase]
        with_steps = [p for p in with_steps if self.by_phase[p].steps]
        if with_steps:
            return tuple(with_steps), "phases with steps"
        if self.phases:
            return tuple(self.phases), "marked phases"
        return (COMMAND_PHASE,), "whole command"

    def total(self) -> PhaseCount:
        out = PhaseCount()
        for c in self.by_phase.values():
            out.add(c.steps, c.items, c.tokens)
        return out

    def to_dict(self) -> dict[str, Any]:
        tot = self.total()
        return {
            "phases": list(self.phases),
            "steps": tot.steps,
            "items": tot.items,
            "tokens": tot.tokens,
            "metrics": dict(self.metrics),
            "by_phase": {p: c.__dict__.copy() for p, c in self.by_phase.items()},
            "events": self.events,
            "dropped_lines": self.dropped_lines,
        }


class MarkerReader:
    """Turns the lines of one marker stream into calls: ``on_phase(name, mono)`` for each phase
    (the caller marks it in its Measurement), and the tally for steps and metrics. A line that
    is not a marker is counted and ignored: a script can never fail its own measurement."""

    def __init__(
        self,
        on_phase: Callable[[str, float | None], None],
        on_metric: Callable[[str, MetricValue, float | None], None] | None = None,
    ) -> None:
        self.tally = MarkerTally(COMMAND_PHASE)
        self._on_phase = on_phase
        self._on_metric = on_metric
        self._seen: dict[int, tuple[int, int, int]] = {}  # pid -> totals already counted

    def feed(self, line: str | bytes) -> None:
        try:
            ev = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            ev = None
        if not isinstance(ev, dict) or ev.get("event") not in MARKER_EVENTS:
            self.tally.dropped_lines += 1
            return
        self.tally.events += 1
        mono = ev.get("mono")
        t = float(mono) if isinstance(mono, (int, float)) and math.isfinite(mono) else None
        kind = ev["event"]
        if kind == PHASE:
            name = ev.get("name")
            # The parent's own phases are never taken from the socket: a client naming one
            # ("idle", "settle") would turn its work into the idle baseline.
            parents = (SETTLE_PHASE, IDLE_PHASE, PRE_PHASE, COMMAND_PHASE)
            if isinstance(name, str) and name and len(name) <= MAX_NAME_CHARS:
                if name in parents:
                    self.tally.dropped_lines += 1
                    return
                self.tally.on_phase(name)
                self._on_phase(name, t)
        elif kind == STEP:
            self._steps(ev)
        elif kind == METRIC and isinstance(ev.get("name"), str):
            try:
                name, value = check_metric(ev["name"], ev.get("value"))
            except ValueError:
                return
            self.tally.metrics[name] = value
            if self._on_metric is not None:
                self._on_metric(name, value, t)

    def _steps(self, ev: dict[str, Any]) -> None:
        """Running totals of one pid -> what is new since its last step line."""
        pid = ev.get("pid")
        key = pid if isinstance(pid, int) else 0
        now = [_whole(ev.get(k)) for k in ("steps", "items", "tokens")]
        before = self._seen.get(key, (0, 0, 0))
        new = [max(0, (n or 0) - b) for n, b in zip(now, before, strict=True)]
        s, i, t = (max(b, n or 0) for n, b in zip(now, before, strict=True))
        self._seen[key] = (s, i, t)
        self.tally.on_steps(
            new[0], new[1] if now[1] is not None else None, new[2] if now[2] is not None else None
        )


def _whole(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class MarkerListener:
    """The parent's reader thread: reads the socket until the command and everything that
    inherited the socket closed it, or until ``stop`` (a grandchild may hold it open). Only this
    thread closes the socket, so its descriptor number is never reused under a blocked read."""

    def __init__(self, sock: socket.socket, reader: MarkerReader) -> None:
        self._sock = sock
        self.reader = reader
        self._deadline: float | None = None
        self._buf = b""
        self._thread = threading.Thread(target=self._run, name="wattlab-markers", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._sock.settimeout(0.1)
        self._thread.start()

    def stop(self, drain_s: float = 1.0) -> None:
        """Read what is already there for up to ``drain_s`` more, then stop. Nothing is fed to
        the reader after this returns (the caller is about to finish its Measurement)."""
        self._deadline = time.monotonic() + drain_s
        self._thread.join(drain_s + 1.0)

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _run(self) -> None:
        try:
            while not self._expired():
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError:
                    if self._deadline is not None:  # the command has exited: nothing pending
                        break
                    continue
                if not chunk:
                    break
                self._lines(chunk)
            if self._buf.strip() and not self._expired():
                self.reader.feed(self._buf)
        except Exception as exc:  # noqa: BLE001 - a reader failure must not end the run
            self.error = exc
        finally:
            self._sock.close()

    def _lines(self, chunk: bytes) -> None:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.strip() and not self._expired():
                self.reader.feed(line)
