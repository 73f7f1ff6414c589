"""Bridges the Qt-free engine to Qt signals. All measurement and ML work runs in a background
thread here (and the ML itself in the worker process), never in the GUI thread.

Signals are emitted from the background thread; Qt queues them to the receivers in the GUI
thread. The GUI reads live data by polling ``ring()`` on its own timer, so a fast sampler never
floods the event loop.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from wattlab.core.errors import ModelError, UserError
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.sampling import RingBuffers
from wattlab.core.measure.store import RunStore
from wattlab.core.run.client import SessionFailed, SessionRunner
from wattlab.core.settings import Settings
from wattlab.core.spec import RunSpec

if TYPE_CHECKING:
    from wattlab.core.measure.meter import Measurement
    from wattlab.core.run.bench import BenchProgress
    from wattlab.core.run.profile_hooks import ProfileHooks
    from wattlab.core.run.script import ScriptPlan

OUTPUT_KEPT = 2000  # a script's output lines waiting for the window's timer; older ones drop


class Watched:
    """A running command's measurement, as the live view reads a session's: ``profile_command``
    hands it over once its idle baseline is taken. Stopping is the controller's stop Event."""

    def __init__(self, measurement: Measurement) -> None:
        self.measurement = measurement

    def cancel(self) -> None:
        """Nothing to do: the stop Event the command was given ends it."""


def single_title(spec: RunSpec) -> str:
    """What a single run is called while it runs: never "optimized run 1/1"."""
    from wattlab.core.run.stats import describe_techniques

    return f"run with {describe_techniques(spec)}" if spec.techniques else "run (no technique)"


LIVE_SCRAPE_S = 2.0  # how often the app scrapes other nodes during a run (their live power)


class Controller(QObject):
    event = Signal(dict)  # worker events: phase, step, epoch, log, result, error
    preparing = Signal(str)  # a one-time job before the measured runs, named
    run_started = Signal(str, str)  # side (baseline | optimized | single), its title
    finished = Signal(dict)  # {"kind": "comparison"|"run", "result": ...}
    failed = Signal(str)  # one clear sentence
    model_refused = Signal(str)  # a model path core refused: it leaves Recent models
    busy_changed = Signal(bool)

    def __init__(self, store: RunStore, settings: Settings) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self._runner: SessionRunner | Watched | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.side = "single"
        self._output: deque[str] = deque(maxlen=OUTPUT_KEPT)
        self._output_dropped = 0

    # -- state read by the GUI timer -------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ring(self) -> RingBuffers | None:
        r = self._runner
        m = getattr(r, "measurement", None) if r else None
        return m.sampler.ring if m is not None else None

    def energy_so_far(self) -> float | None:
        r = self._runner
        m = getattr(r, "measurement", None) if r else None
        return m.sampler.energy_so_far() if m is not None else None

    def take_output(self) -> list[str]:
        """The script's output lines since the last call (the window's timer logs them);
        lines that overflowed in between are counted in one line."""
        lines = []
        while self._output:
            lines.append(self._output.popleft())
        if self._output_dropped:
            lines.insert(0, f"({self._output_dropped} lines of output not shown)")
            self._output_dropped = 0
        return lines

    def _keep_output(self, line: str) -> None:
        """Called in the command's output thread: one Qt signal per line of a chatty script
        would flood the event loop, so lines wait here for the timer."""
        if len(self._output) == OUTPUT_KEPT:
            self._output_dropped += 1
        self._output.append(line)

    # -- commands --------------------------------------------------------------------------------
    def measure_settings(self) -> MeasureSettings:
        s = self.settings
        return MeasureSettings(s.interval_s, s.idle_s, min_measure_s=s.min_measure_s)

    def carbon(self) -> CarbonSettings:
        s = self.settings
        return CarbonSettings(s.region, s.intensity_g_per_kwh, s.pue, s.price_per_kwh, s.currency)

    def start_run(self, spec: RunSpec) -> None:
        self._start(self._run_once, spec)

    def start_compare(self, base: RunSpec, opt: RunSpec, repeats: int) -> None:
        self._start(self._compare, base, opt, repeats)

    def start_script(self, plan: ScriptPlan) -> None:
        """The user's own command, measured once as ``wattlab profile`` measures it."""
        self._start(self._script_once, plan)

    def start_script_compare(self, plan: ScriptPlan, rounds: int) -> None:
        """Two command lines in interleaved rounds, as ``wattlab bench`` compares them."""
        self._start(self._script_bench, plan, rounds)

    def stop(self) -> None:
        """Keeps what was measured: the current run ends as cancelled within ~2 s."""
        self._stop.set()
        r = self._runner
        if r is not None:
            r.cancel()

    def wait(self, timeout_s: float) -> bool:
        """Block until the background work ends (closing the window after Stop): True when it
        did within ``timeout_s``."""
        t = self._thread
        if t is not None:
            t.join(timeout_s)
        return not self.busy

    # -- background work -------------------------------------------------------------------------
    def _start(self, fn: Any, *args: Any) -> None:
        if self.busy:
            self.failed.emit("a run is already in progress; stop it first")
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._guard, args=(fn, *args), name="wattlab-gui-work", daemon=True
        )
        self.busy_changed.emit(True)
        self._thread.start()

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ModelError as exc:  # refused before any run: the path is broken, not the run
            self.model_refused.emit(str(args[0].model))
            self.failed.emit(str(exc))
        except SessionFailed as exc:
            self.failed.emit(f"{exc} (run {exc.run_id} kept as failed)")
        except UserError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - the window must survive anything
            traceback.print_exc()
            self.failed.emit(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._runner = None
            self.busy_changed.emit(False)

    def _hook(self, runner: SessionRunner) -> None:
        self._runner = runner
        if self.settings.nodes.strip():  # other nodes' exporters, scraped over each run
            from wattlab.core.measure.nodes import NodeScraper, node_urls

            runner.node_meter = NodeScraper(node_urls(self.settings.nodes), LIVE_SCRAPE_S)
        if self._stop.is_set():
            runner.cancel()

    def nodes_live(self) -> list[tuple[str, float | None, str | None]]:
        """Other nodes' recent power for the live view: (node, watts or None, label)."""
        r = self._runner
        meter = getattr(r, "node_meter", None) if r else None
        live = getattr(meter, "live", None)
        return live() if callable(live) else []

    def _ensure_demo(self, spec: RunSpec) -> None:
        from wattlab.core.spec import demo_training_spec

        train = demo_training_spec(spec)
        if train is None:
            return
        self.preparing.emit("training the demo model once (cached afterwards)")
        self.side = "single"
        runner = SessionRunner(train, self.store, self.measure_settings(), on_event=self.event.emit)
        self._hook(runner)
        runner.run()

    def _run_once(self, spec: RunSpec) -> None:
        from wattlab.core.run import preflight

        preflight.check(spec)
        self._ensure_demo(spec)
        if self._stop.is_set():
            return
        self.side = "single"
        self.run_started.emit("single", single_title(spec))
        runner = SessionRunner(spec, self.store, self.measure_settings(), on_event=self.event.emit)
        self._hook(runner)
        res = runner.run()
        # its samples too: an hour-long run's would stall the GUI thread for a moment
        samples = self.store.samples(res["run_id"])
        self.finished.emit({"kind": "run", "result": res, "samples": samples})

    def _compare(self, base: RunSpec, opt: RunSpec, repeats: int) -> None:
        from wattlab.core.run import preflight
        from wattlab.core.run.comparison import compare
        from wattlab.core.run.stats import ComparisonProgress

        preflight.check(opt)
        self._ensure_demo(opt)  # a distilling side needs the trained demo as its teacher

        def on_progress(p: ComparisonProgress) -> None:
            self.side = p.side
            self.run_started.emit(p.side, p.text)

        comp = compare(
            base,
            opt,
            self.store,
            self.measure_settings(),
            self.carbon(),
            repeats,
            self.settings.cooldown_s,
            on_event=self.event.emit,
            on_progress=on_progress,
            runner_hook=self._hook,
            should_stop=self._stop.is_set,
        )
        self.finished.emit(
            {"kind": "comparison", "result": comp, "chart_png": self.chart_png(comp)}
        )

    def _script_hooks(self) -> ProfileHooks:
        """What a command measured off the main thread needs: the stop Event, its measurement
        for the live view, its markers as events, and its output for the Log."""
        from wattlab.core.run.profile_hooks import ProfileHooks

        def watch(m: Measurement) -> None:
            self._runner = Watched(m)

        return ProfileHooks(self._stop, watch, self.event.emit, self._keep_output)

    def _script_once(self, plan: ScriptPlan) -> None:
        from wattlab.core.run.profile import CommandNotExecutable, CommandNotFound, profile_command

        self.side = "single"
        self.event.emit({"event": "log", "message": f"command: {plan.text} (in {plan.cwd})"})
        self.run_started.emit("single", f"script {plan.title}")
        settings = self.measure_settings()
        try:
            outcome = profile_command(
                list(plan.argv),
                self.store,
                settings,
                plan.label,
                None,
                plan.cwd,
                self._script_hooks(),
            )
        except (CommandNotFound, CommandNotExecutable) as exc:  # gone since it was checked
            raise UserError(f"the command could not start: {exc} (kept as failed)") from None
        res = outcome.result
        samples = self.store.samples(res["run_id"])
        self.finished.emit({"kind": "run", "result": res, "samples": samples})

    def _script_bench(self, plan: ScriptPlan, rounds: int) -> None:
        """``wattlab bench``'s engine on the two command lines; a Stop keeps the bench as
        cancelled with the runs that completed (bench.run raises KeyboardInterrupt then)."""
        from wattlab.core.run import bench
        from wattlab.core.run.profile import CommandNotExecutable, CommandNotFound

        bplan = plan.bench_plan(rounds, self.settings.cooldown_s)
        settings = self.measure_settings()
        bench_id = bench.start(bplan, self.store, plan.cwd)
        measure = bench.profile_measure(self.store, settings, False, self._script_hooks(), plan.cwd)
        try:
            out = bench.run(
                bplan,
                bench_id,
                self.store,
                settings,
                self.carbon(),
                measure=measure,
                on_progress=self._bench_progress,
                should_stop=self._stop.is_set,
            )
        except KeyboardInterrupt:
            out = self.store.result(bench_id)
        except (CommandNotFound, CommandNotExecutable) as exc:
            raise UserError(f"a command could not start: {exc} (bench {bench_id} kept)") from None
        if out is not None:
            self.finished.emit({"kind": "bench", "result": out})

    def _bench_progress(self, p: BenchProgress) -> None:
        """Each measured run of a bench: the first command is the baseline side."""
        from wattlab.core.run.script import bench_run_title

        if p.warmup:
            return
        self.side = "baseline" if p.command_index == 0 else "optimized"
        self.event.emit({"event": "log", "message": p.text})  # the whole command, in the Log
        self.run_started.emit(self.side, bench_run_title(p.command_index, p.round_index, p.rounds))

    def chart_png(self, comp: dict[str, Any]) -> bytes | None:
        """The report's charts as PNG. matplotlib takes about a second here: the controller's
        thread calls this before emitting ``finished``, so the window never waits for it."""
        from wattlab.core.report.charts import chart_png

        try:
            return chart_png(comp, self.store)
        except Exception as exc:  # noqa: BLE001 - charts are a bonus; the table is not
            self.event.emit({"event": "log", "message": f"charts could not be drawn: {exc}"})
            return None

    def export(self, shown: dict[str, Any], out: Path) -> list[Path]:
        """Every report of what the Results tab shows: a comparison's or a bench's PDF, CSVs and
        JSON, or a single run's JSON and samples, the same files the CLI's --out writes."""
        from wattlab.core.report.outputs import write_reports, write_run_outputs

        if shown.get("kind") == "bench":
            from wattlab.core.report.bench_report import write_bench_reports

            return write_bench_reports(shown, self.store, out)
        if "verdicts" in shown:
            return write_reports(shown, self.store, out, pdf=True, csv=True, json_=True)
        return write_run_outputs(out, shown, self.store, "result.json")
