"""``wattlab.track``: measure a block of the user's own Python, in the user's own process.

The block is measured by the same harness as every other run (``measure.meter.Measurement``:
sensors, sampler, settling, idle baseline, labels, the run store), attached to this process, so
a tracked block and ``wattlab profile`` of the same script read alike. Under ``wattlab profile``
the parent already measures this process tree: a track then starts no sampler and streams its
phases, steps and metrics to the parent as markers (``core.markers``).

Importing this module is cheap (stdlib and ``core.markers``): the sampler, the store and numpy
are imported when a block starts, so ``import wattlab`` costs nothing measurable.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wattlab.core import markers
from wattlab.core.errors import SpecError
from wattlab.core.markers import TRACK_PHASE, MarkerSocket, MarkerTally, MetricValue
from wattlab.core.protocol import END_PHASE

if TYPE_CHECKING:
    from wattlab.core.measure.meter import Measurement
    from wattlab.core.measure.sensors import SensorSet
    from wattlab.core.measure.store import RunStore

F = TypeVar("F", bound=Callable[..., Any])

TRACK_KIND = "track"


class TrackError(SpecError, ValueError):
    """A mistake in how ``wattlab.track`` was called: one sentence, no WattLab traceback
    needed. A ValueError too, so plain Python code can catch it as one."""


@dataclass(frozen=True)
class EnergySoFar:
    """The running total of a tracked block, readable mid-block. ``energy_j`` is None under a
    measuring parent (``wattlab profile``): the parent has the figures, this process has none."""

    energy_j: float | None  # gross, every source sampled so far, up to the last sample
    label: str | None  # measured | integrated | estimated (the weakest source's)
    duration_s: float | None
    items: int | None
    energy_per_item_j: float | None


# -- one marker socket and one active block per process -------------------------------------------
_state_lock = threading.Lock()
_active: Track | None = None
_socket: MarkerSocket | None = None
_socket_read = False


def _marker_socket() -> MarkerSocket | None:
    """The measuring parent's socket, resolved once per process (the environment does not
    change under a running script; a forked child shares its parent's)."""
    global _socket, _socket_read
    with _state_lock:
        if not _socket_read:
            _socket, _socket_read = markers.from_env(), True
        return _socket


def current() -> Track | None:
    """The block being tracked in this process, if any: a decorated function reaches its own
    track with ``wattlab.current()``."""
    return _active


# -- the block ------------------------------------------------------------------------------------
class Track:
    """One measured block (``with``), or a function measured per call (decorator). See
    ``track`` for the arguments."""

    def __init__(
        self,
        label: str | None = None,
        out: str | os.PathLike[str] | None = None,
        *,
        interval_s: float | None = None,
        idle_s: float | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        store: RunStore | None = None,
        sensors: SensorSet | None = None,
        function: str | None = None,
    ) -> None:
        if label is not None and not isinstance(label, str):
            raise TrackError(f"label must be a string, got {type(label).__name__}")
        self.label = label
        self.out = Path(out) if out is not None else None
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise TrackError(f"out={str(self.out)!r} is a file, not a folder")
        self._interval_s, self._idle_s, self._data_dir = interval_s, idle_s, data_dir
        self._store, self._sensors, self._function = store, sensors, function
        self._m: Measurement | None = None
        self._owned_store: RunStore | None = None
        self._remote: MarkerSocket | None = None
        self._tally = MarkerTally(TRACK_PHASE)
        self._lock = threading.Lock()
        self._state = "new"  # new -> open -> closed
        self._started_mono: float | None = None
        self.run_id: int | None = None
        self.result: dict[str, Any] | None = None

    # -- what the block can ask ------------------------------------------------------------------
    @property
    def measuring(self) -> bool:
        """True when this process measures the block; False under a measuring parent."""
        return self._m is not None

    @property
    def is_open(self) -> bool:
        """True between entering and leaving the block."""
        return self._state == "open"

    @property
    def why_not_measuring(self) -> str | None:
        if self._remote is None:
            return None
        return self._remote.why_not or "wattlab profile measures this process: markers go to it"

    @property
    def energy_j(self) -> float | None:
        """Joules so far (gross, up to the last sample); None under a measuring parent."""
        return self.total().energy_j

    def total(self) -> EnergySoFar:
        """The running total with its label, readable at any time inside the block."""
        with self._lock:
            items = self._tally.total().items
            with_steps, _ = self._tally.work_phases()
            phases = tuple(self._tally.phases)
        m = self._m
        if m is None or self._state != "open":
            if self.result is not None:  # the block has ended: its final figures
                tot = self.result.get("total") or {}
                return EnergySoFar(
                    tot.get("gross_j"),
                    tot.get("label"),
                    self.result.get("duration_s"),
                    items,
                    self.result.get("energy_per_item_j"),
                )
            elapsed = time.monotonic() - self._started_mono if self._started_mono else None
            return EnergySoFar(None, None, elapsed, items, None)
        from wattlab.core.measure.sensors.base import weakest_label

        energy = m.sampler.energy_so_far(phases)
        worked = m.sampler.energy_so_far(with_steps) if items else None
        last = m.sampler.last
        start = m.work_started
        return EnergySoFar(
            energy,
            weakest_label([c.label for c in m.sampler.energy.channels]),
            (last.t - start) if last is not None and start is not None else None,
            items,
            worked / items if worked is not None and items else None,
        )

    # -- what the block tells ---------------------------------------------------------------------
    def phase(self, name: str) -> None:
        """Start phase ``name`` now (the previous one ends here): its energy is reported on its
        own, and steps counted in it are charged to it."""
        try:
            markers.check_phase_name(name)
        except ValueError as exc:
            raise TrackError(str(exc)) from None
        with self._lock:
            self._require_open("phase")
            self._tally.events += 1
            self._tally.on_phase(name)
            if self._remote is not None:
                self._remote.phase(name)
            elif self._m is not None:
                self._m.phase(name)

    def step(self, items: int | None = None, tokens: int | None = None) -> None:
        """One step of work (a batch): ``items`` (samples) and ``tokens`` it processed, when
        known. Energy per item is the energy of the phases with steps over the items counted."""
        try:
            n_items = markers.check_count("items", items)
            n_tokens = markers.check_count("tokens", tokens)
        except ValueError as exc:
            raise TrackError(str(exc)) from None
        with self._lock:
            self._require_open("step")
            self._tally.events += 1
            self._tally.on_steps(1, n_items, n_tokens)
        if self._remote is not None:
            self._remote.step(n_items, n_tokens)

    def metric(self, name: str, value: MetricValue) -> None:
        """A figure of the work (accuracy, loss): its last value is stored with the run."""
        try:
            name, value = markers.check_metric(name, value)
        except ValueError as exc:
            raise TrackError(str(exc)) from None
        with self._lock:
            self._require_open("metric")
            self._tally.events += 1
            self._tally.metrics[name] = value
            if self._remote is not None:
                self._remote.metric(name, value)
            elif self._m is not None:
                data = {"name": name, "value": value}
                self._m.store.add_event(self._m.run_id, time.monotonic(), markers.METRIC, data)

    def _require_open(self, what: str) -> None:
        if self._state != "open":
            when = "before" if self._state == "new" else "after"
            raise TrackError(f"t.{what}() was called {when} its tracked block")

    # -- the context manager --------------------------------------------------------------------
    def __enter__(self) -> Track:
        global _active
        with _state_lock:
            if self._state != "new":
                raise TrackError("a track measures one block: make a new wattlab.track(...)")
            if _active is not None:
                raise TrackError(
                    f"a block is already being tracked in this process ({_active._name()}): "
                    "mark parts of it with t.phase() instead of nesting tracks"
                )
            _active, self._state = self, "open"
        try:
            sock = _marker_socket()
            if sock is not None:
                self._remote = sock
                self._started_mono = time.monotonic()
                self._tally.on_phase(TRACK_PHASE)
                sock.phase(TRACK_PHASE)
            else:
                self._enter_local()
        except BaseException:
            self._state = "closed"
            _active = None
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        global _active
        try:
            if self._state != "open":
                return
            with self._lock:
                self._state = "closed"
            if self._remote is not None:
                self._remote.phase(END_PHASE)
            elif self._m is not None:
                self._finish_local(exc_type, exc)
        finally:
            with _state_lock:
                if _active is self:
                    _active = None

    def _name(self) -> str:
        return f"run {self.run_id}" if self.run_id is not None else repr(self.label or "track")

    def _enter_local(self) -> None:
        from wattlab.core.measure.meter import Measurement

        settings = self._settings()
        store = self._store or _open_store(self._data_dir)
        self._owned_store = store if self._store is None else None
        spec = {
            "argv": list(sys.argv),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "function": self._function,
            "interval_s": settings.interval_s,
            "idle_s": settings.idle_s,
        }
        label = self.label or self._function or _script_name()
        try:
            m = Measurement(store, TRACK_KIND, spec, label, settings, self._sensors)
            self.run_id = m.run_id
            m.__enter__()  # settle, idle baseline; a failure there ends the run itself
        except BaseException:
            self._close_store()
            raise
        m.attach(os.getpid(), phase=TRACK_PHASE)
        self._started_mono = m.work_started
        self._tally.on_phase(TRACK_PHASE)
        self._m = m

    def _settings(self) -> Any:
        from wattlab.core.measure.meter import MeasureSettings
        from wattlab.core.settings import Settings

        saved = Settings.load()
        interval, idle = self._interval_s, self._idle_s
        try:
            return MeasureSettings(
                interval_s=float(saved.interval_s if interval is None else interval),
                idle_s=float(saved.idle_s if idle is None else idle),
            ).validate()
        except (TypeError, ValueError) as exc:
            raise TrackError(f"interval_s and idle_s must be numbers ({exc})") from None
        except SpecError as exc:
            raise TrackError(str(exc)) from None

    def _finish_local(
        self, exc_type: type[BaseException] | None, exc: BaseException | None
    ) -> None:
        """Stop sampling, store the run with its marked figures, write ``out``. A failure here
        never hides the block's own exception."""
        from wattlab.core.run.marked import add_marked_figures

        m = self._m
        assert m is not None  # only called for a locally measured block
        status, message = _exit_status(exc_type, exc)
        try:
            m.scope_to_process_tree()
            result = m.finish(status, {"label": self.label, "function": self._function}, message)
            result["message"] = message
            interval = m.settings.interval_s
            add_marked_figures(
                result, self._tally, lambda d: m.sampler.energy.window_warnings(d, interval)
            )
            m.store.finish_run(m.run_id, status, result, message)
            self.result = result
            if self.out is not None:
                self._write_outputs(result, m.store)
        except Exception as err:
            if not m.finished:
                try:
                    m.finish("failed", message=f"could not finish the run: {err}")
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            if exc_type is None:
                raise
            warnings.warn(f"wattlab.track: run {m.run_id} not fully stored: {err}", stacklevel=3)
        finally:
            self._close_store()

    def _close_store(self) -> None:
        """Close the store this block opened (a decorated function opens one per call)."""
        store, self._owned_store = self._owned_store, None
        if store is not None:
            store.close()

    def _write_outputs(self, result: dict[str, Any], store: RunStore) -> None:
        from wattlab.core.report.outputs import write_run_outputs

        assert self.out is not None
        try:
            write_run_outputs(self.out, result, store)
        except OSError as exc:
            raise TrackError(
                f"run {result['run_id']} is stored, but out={str(self.out)!r} could not be "
                f"written: {exc.strerror or exc}"
            ) from None

    # -- the decorator --------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        """``@wattlab.track(...)``: each call is its own measured run. A call made while a
        block is already tracked (recursion, a call inside ``with wattlab.track()``) runs
        unmeasured inside that block."""
        if not callable(func):
            raise TrackError("@wattlab.track(...) decorates a function")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TrackError(
                f"{func.__qualname__} is a generator: track the loop that consumes it instead"
            )

        def fresh() -> Track:
            return Track(
                self.label,
                self.out,
                interval_s=self._interval_s,
                idle_s=self._idle_s,
                data_dir=self._data_dir,
                store=self._store,
                sensors=self._sensors,
                function=func.__qualname__,
            )

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if current() is not None:
                    return await func(*args, **kwargs)
                t = async_wrapper.last_track = fresh()  # type: ignore[attr-defined]
                with t:
                    return await func(*args, **kwargs)

            async_wrapper.last_track = None  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current() is not None:
                return func(*args, **kwargs)
            t = wrapper.last_track = fresh()  # type: ignore[attr-defined]
            with t:
                return func(*args, **kwargs)

        wrapper.last_track = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def track(
    label: str | None = None,
    out: str | os.PathLike[str] | None = None,
    *,
    interval_s: float | None = None,
    idle_s: float | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Track:
    """Measure a block (``with wattlab.track(label="finetune") as t:``) or a function per call
    (``@wattlab.track(label=...)``), stored as a run of kind ``track``.

    ``out``: a folder for the run's summary.json and samples.csv (as ``wattlab profile --out``).
    ``interval_s``, ``idle_s``: sampling interval and idle baseline (default: the settings file,
    as the CLI and the app); ``data_dir``: the run store's folder (default: $WATTLAB_DATA_DIR,
    the settings file, the user data dir).

    Under ``wattlab profile`` none of these apply: the parent measures and stores the command
    (and writes its own ``--out``); the block's phases, steps and metrics go to it as markers,
    ``t.measuring`` is False and ``t.energy_j`` and ``t.result`` are None."""
    return Track(label, out, interval_s=interval_s, idle_s=idle_s, data_dir=data_dir)


# -- helpers --------------------------------------------------------------------------------------
def _open_store(data_dir: str | os.PathLike[str] | None) -> RunStore:
    from wattlab.core import paths
    from wattlab.core.measure.store import DB_NAME, RunStore, StoreError
    from wattlab.core.settings import Settings

    if data_dir is not None:
        folder = Path(data_dir).expanduser()
    elif os.environ.get(paths.ENV_DATA_DIR):
        folder = paths.data_dir()
    else:
        saved = Settings.load().data_dir
        folder = Path(saved).expanduser() if saved else paths.data_dir()
    store = RunStore(folder / DB_NAME)
    if store.damage is not None:
        raise StoreError(store.damage)
    return store


def _script_name() -> str:
    main = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-") else ""
    return Path(main).name or "track"


def _exit_status(
    exc_type: type[BaseException] | None, exc: BaseException | None
) -> tuple[str, str | None]:
    """How the block ended: completed, cancelled (Ctrl-C), or failed with the exception's line.
    ``sys.exit(0)`` inside the block is a normal end."""
    if exc_type is None:
        return "completed", None
    if issubclass(exc_type, KeyboardInterrupt):
        return "cancelled", "interrupted (Ctrl-C)"
    if issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (0, None):
        return "completed", None
    return "failed", f"{exc_type.__name__}: {exc}"


__all__ = ["EnergySoFar", "Track", "TrackError", "current", "track"]
