"""``wattlab bench "CMD A" "CMD B" ...``: any commands measured side by side, in the spirit of
hyperfine, with energy and compare's verdicts.

Each measured run is an ordinary ``wattlab profile`` run (its own idle baseline, stored, listed
by ``wattlab runs list``); the bench is one more store row (kind ``bench``) whose result holds
every run id, each command's figures and each command's verdicts against the first.

- Warm-up (``--warmup N``): each command N times before the first round, unmeasured, output
  discarded; ``--prepare CMD`` runs (unmeasured) before every warm-up and every measured run.
- Rounds (bench_plan.round_indices): each round runs every command once, in an order that
  alternates (and rotates with more than two commands), so drift does not favour one command.
- A run that exits non-zero (or whose ``--prepare`` failed) is reported and excluded from every
  median and every pair; the bench still finishes, and says which command failed and how often.
- Ctrl-C (or SIGTERM) ends the bench as ``cancelled`` with the runs that completed.
- The commands' own output is discarded unless ``show_output`` (as hyperfine does): a bench's
  table must stay readable, and stdout redirected to a file must hold the bench, not the runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.sensors.base import weakest_label
from wattlab.core.measure.store import RunStore
from wattlab.core.report import manifest
from wattlab.core.results import MIN_PAIRS, SCHEMA_VERSION
from wattlab.core.run import bench_stats as bs
from wattlab.core.run.bench_plan import ORDER_TEXT, BenchCommand, BenchPlan, round_indices
from wattlab.core.run.profile_hooks import ProfileHooks
from wattlab.core.run.progress import span

# (argv, label) -> the stored profile result, with "run_id", "status" and "exit_code"
Profile = Callable[[list[str], str], dict[str, Any]]
Unmeasured = Callable[[tuple[str, ...]], int]  # argv -> exit code
RUN_EVENT = "bench-run"


@dataclass(frozen=True)
class BenchProgress:
    """The run about to start and the time left (the mean measured run so far, idle baseline
    and cool-down included, times the runs left)."""

    round_index: int  # 0-based
    rounds: int
    command_index: int
    command: str
    run_number: int  # 1-based over the whole bench
    planned_runs: int
    eta_s: float | None
    warmup: bool = False  # an unmeasured warm-up run: round_index/rounds count warm-ups

    @property
    def text(self) -> str:
        if self.warmup:
            return (
                f"warm-up {self.round_index + 1}/{self.rounds} (unmeasured): "
                f"#{self.command_index + 1} {self.command}"
            )
        left = f", about {span(self.eta_s)} left" if self.eta_s is not None else ""
        return (
            f"round {self.round_index + 1}/{self.rounds}, run {self.run_number}/"
            f"{self.planned_runs}: #{self.command_index + 1} {self.command}{left}"
        )


@dataclass
class BenchState:
    """What has run: every measured run (in order), the stored results, the warm-ups."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)


def start(plan: BenchPlan, store: RunStore, cwd: str | None = None) -> int:
    """The bench's store row; its spec is the plan (and ``cwd``, the folder its commands run
    in when it is not this process's, so the app can run it again)."""
    names = " vs ".join(c.text for c in plan.commands[:3])
    more = f" (+{len(plan.commands) - 3} more)" if len(plan.commands) > 3 else ""
    spec = plan.to_dict() if cwd is None else {**plan.to_dict(), "cwd": cwd}
    return store.create_run("bench", spec, f"bench: {names}{more}"[:200])


@contextmanager
def discarded_output() -> Iterator[None]:
    """Point this process's stdout and stderr (fds 1 and 2) at /dev/null while a command runs:
    ``profile_command`` starts the command with our file descriptors, and this is how its output
    is discarded without a shell around it. Restored whatever happens."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def run_unmeasured(argv: tuple[str, ...], show_output: bool = False) -> int:
    """A warm-up or ``--prepare`` run: no sampling, nothing stored; the shell's codes when it
    cannot start."""
    out = None if show_output else subprocess.DEVNULL
    try:
        return subprocess.run(list(argv), stdout=out, stderr=out, check=False).returncode
    except FileNotFoundError:
        return 127
    except OSError:
        return 126


def profile_measure(
    store: RunStore,
    settings: MeasureSettings,
    show_output: bool,
    hooks: ProfileHooks | None = None,
    cwd: str | None = None,
) -> Profile:
    """Each measured run through ``wattlab profile``'s own function, stored as a profile run.
    ``hooks`` and ``cwd`` are passed on (the app: stop, live data, output, working folder);
    output that goes to ``hooks.on_output`` is not discarded here, it has its own pipe."""
    from wattlab.core.run.profile import profile_command

    def measure(argv: list[str], label: str) -> dict[str, Any]:
        def once() -> Any:
            return profile_command(argv, store, settings, label=label, cwd=cwd, hooks=hooks)

        if show_output or (hooks is not None and hooks.on_output is not None):
            outcome = once()
        else:
            with discarded_output():
                outcome = once()
        return {**outcome.result, "exit_code": outcome.exit_code}

    return measure


def run(
    plan: BenchPlan,
    bench_id: int,
    store: RunStore,
    settings: MeasureSettings,
    carbon: CarbonSettings,
    measure: Profile | None = None,
    unmeasured: Unmeasured | None = None,
    on_progress: Callable[[BenchProgress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Warm up, measure every round, store and return the bench's summary. Ctrl-C
    (KeyboardInterrupt) or ``should_stop`` ends it as ``cancelled`` with what completed (the
    exception is raised again once the summary is stored)."""
    state = BenchState()
    measure = measure or profile_measure(store, settings, plan.show_output)
    unmeasured = unmeasured or (lambda argv: run_unmeasured(argv, plan.show_output))
    c = carbon.resolved()
    began = time.monotonic()
    try:
        _warm_up(plan, state, unmeasured, on_progress, should_stop)
        _measure_rounds(plan, bench_id, store, state, measure, unmeasured, on_progress, should_stop)
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        why = f"{type(exc).__name__}: {exc}" if status == "failed" else "stopped (Ctrl-C)"
        _finish(plan, bench_id, store, state, settings, c, status, time.monotonic() - began, why)
        raise
    status = "cancelled" if should_stop() else "completed"
    return _finish(plan, bench_id, store, state, settings, c, status, time.monotonic() - began)


def _warm_up(
    plan: BenchPlan,
    state: BenchState,
    unmeasured: Unmeasured,
    on_progress: Callable[[BenchProgress], None] | None,
    should_stop: Callable[[], bool],
) -> None:
    for i, cmd in enumerate(plan.commands):
        for j in range(plan.warmup):
            if should_stop():
                return
            if on_progress:
                on_progress(BenchProgress(j, plan.warmup, i, cmd.text, 0, 0, None, warmup=True))
            if plan.prepare is not None:
                unmeasured(plan.prepare.argv)
            state.warmups.append({"command": i, "exit_code": unmeasured(cmd.argv)})


def _measure_rounds(
    plan: BenchPlan,
    bench_id: int,
    store: RunStore,
    state: BenchState,
    measure: Profile,
    unmeasured: Unmeasured,
    on_progress: Callable[[BenchProgress], None] | None,
    should_stop: Callable[[], bool],
) -> None:
    planned = plan.runs * len(plan.commands)
    for k in range(plan.runs):
        for i in round_indices(len(plan.commands), k):
            if should_stop():
                return
            t0 = time.monotonic()
            if state.runs and plan.cooldown_s > 0:
                time.sleep(plan.cooldown_s)
            if on_progress:
                on_progress(_progress(plan, state, k, i, planned))
            entry = _measure_one(plan, bench_id, store, state, measure, unmeasured, i, k)
            state.run_seconds.append(time.monotonic() - t0)
            if entry["status"] == "cancelled":
                raise KeyboardInterrupt(f"run {entry['run_id']} was cancelled")


def _measure_one(
    plan: BenchPlan,
    bench_id: int,
    store: RunStore,
    state: BenchState,
    measure: Profile,
    unmeasured: Unmeasured,
    i: int,
    k: int,
) -> dict[str, Any]:
    """One measured run of command ``i`` in round ``k`` (its ``--prepare`` first): recorded
    in the state and as an event of the bench row, whatever its exit code."""
    cmd = plan.commands[i]
    entry: dict[str, Any] = {
        "command": i, "round": k, "position": len(state.runs), "started_at": time.time(),
        "run_id": None, "exit_code": None, "status": "failed", "reason": None,
    }  # fmt: skip
    state.runs.append(entry)
    if plan.prepare is not None:
        prep_code = unmeasured(plan.prepare.argv)
        if prep_code != 0:
            entry["reason"] = f"--prepare exited with code {prep_code}; the command was not run"
            store.add_event(bench_id, time.time(), RUN_EVENT, dict(entry))
            return entry
    label = f"bench {bench_id} round {k + 1}/{plan.runs}: #{i + 1} {cmd.text}"[:200]
    result = measure(list(cmd.argv), label)
    state.results[int(result["run_id"])] = result
    code = result.get("exit_code")
    entry.update(run_id=int(result["run_id"]), exit_code=code, status=result.get("status"))
    if code not in (0, None) and entry["status"] != "cancelled":
        entry["reason"] = f"exited with code {code}"
    store.add_event(bench_id, time.time(), RUN_EVENT, dict(entry))
    return entry


def _progress(plan: BenchPlan, state: BenchState, k: int, i: int, planned: int) -> BenchProgress:
    done = len(state.runs)
    mean_s = sum(state.run_seconds) / len(state.run_seconds) if state.run_seconds else None
    left = planned - done
    eta = mean_s * left if mean_s is not None else None
    return BenchProgress(k, plan.runs, i, plan.commands[i].text, done + 1, planned, eta)


# -- the summary ------------------------------------------------------------------------------
def _finish(
    plan: BenchPlan,
    bench_id: int,
    store: RunStore,
    state: BenchState,
    settings: MeasureSettings,
    carbon: dict[str, Any],
    status: str,
    elapsed_s: float,
    message: str | None = None,
) -> dict[str, Any]:
    out = summarise(plan, state, carbon, settings)
    # run_id and duration_s as every stored run has them: `runs show` and `report` read them
    out.update(bench_id=bench_id, run_id=bench_id, status=status, elapsed_s=elapsed_s)
    out["duration_s"] = elapsed_s
    if status == "cancelled":
        done = sum(1 for r in state.runs if r["run_id"] is not None)
        planned = plan.runs * len(plan.commands)
        out["headline"] = f"Cancelled after {done} of {planned} runs: {out['headline']}"
    store.finish_run(bench_id, status, out, message)
    return out


def summarise(
    plan: BenchPlan,
    state: BenchState,
    carbon: dict[str, Any],
    settings: MeasureSettings,
) -> dict[str, Any]:
    """The stored answer: one row per command (medians over its counted runs, its verdicts
    against the first), every run with its figures, the warnings and the method."""
    figures = {rid: bs.run_figures(res, carbon) for rid, res in state.results.items()}
    labels = {rid: bs.command_energy(res)[2] for rid, res in state.results.items()}
    cmds = [c.to_dict() for c in plan.commands]
    rows = [bs.command_row(i, c, state.runs, figures, labels) for i, c in enumerate(cmds)]
    if rows:
        bs.vs_first(rows, state.runs, figures, plan.margin, str(carbon.get("currency") or ""))
    any_run = next(iter(state.results.values()), {})
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "bench",
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "commands": cmds,
        "plan": plan.to_dict(),
        "rounds_planned": plan.runs,
        "run_ids": [r["run_id"] for r in state.runs if r["run_id"] is not None],
        "per_run": [_per_run(r, figures, labels) for r in state.runs],
        "warmups": state.warmups,
        "rows": rows,
        "headline": bs.bench_headline(rows),
        "warnings": failure_warnings(rows, state, plan.prepare),
        "total": _total(state),
        "carbon": carbon,
        "sampling": {"interval_s": settings.interval_s, "idle_s": settings.idle_s},
        "statistics": {
            "method": method_text(plan),
            "margin": plan.margin,
            "min_pairs": MIN_PAIRS,
            "order": ORDER_TEXT,
        },
        "power_model": any_run.get("power_model"),
        "manifest": manifest.build(any_run.get("sensors")),
    }


def _per_run(
    r: dict[str, Any], figures: dict[int, dict[str, float | None]], labels: dict[int, str | None]
) -> dict[str, Any]:
    rid = r["run_id"]
    return {
        **r,
        "counted": bs.counted(r),
        "label": labels.get(rid) if rid is not None else None,
        "metrics": figures.get(rid) if rid is not None else None,
    }


def _total(state: BenchState) -> dict[str, Any]:
    """What every measured run's command window used together (``wattlab runs list`` shows
    it as the bench's energy); unknown when any run's is."""
    parts = [bs.command_energy(res) for res in state.results.values()]
    gross = [g for g, _, _ in parts]
    net = [n for _, n, _ in parts]
    return {
        "gross_j": sum(g for g in gross if g is not None) if parts and None not in gross else None,
        "net_j": sum(n for n in net if n is not None) if parts and None not in net else None,
        "label": weakest_label([lb for _, _, lb in parts if lb]),
        "what": "the commands' energy over every measured run of the bench, failed ones included",
    }


def failure_warnings(
    rows: list[dict[str, Any]], state: BenchState, prepare: BenchCommand | None
) -> list[str]:
    """One line per command with failing runs (measured or warm-up): they are in no figure."""
    out: list[str] = []
    for row in rows:
        n = row["runs_failed"]
        if n:
            codes = sorted({str(f["exit_code"]) for f in row["failures"] if f["exit_code"]})
            prep = sum(1 for f in row["failures"] if f["run_id"] is None)
            parts = [f"exit code {', '.join(codes)}"] if codes else []
            parts += [f"--prepare failed {prep}x"] if prep else []
            why = "; ".join(parts) or "no exit code"
            out.append(
                f"command #{row['index'] + 1} `{row['text']}` failed {n} of "
                f"{row['runs_attempted']} runs ({why}): those runs are "
                "excluded from every figure and verdict (--show-output shows what it printed)"
            )
    for i in sorted({w["command"] for w in state.warmups if w["exit_code"] != 0}):
        bad = [w for w in state.warmups if w["command"] == i and w["exit_code"] != 0]
        out.append(f"command #{i + 1}: {len(bad)} warm-up run(s) exited non-zero")
    return out


def method_text(plan: BenchPlan) -> str:
    return (
        f"{plan.runs} rounds after {plan.warmup} unmeasured warm-up run(s) per command; "
        f"{ORDER_TEXT}; a {plan.cooldown_s:g} s cool-down between runs, and each run measured "
        "as `wattlab profile` does (power settles, idle baseline, then the command). Energy is "
        "the command's window (settling and idle excluded). Each command pairs with the first "
        "command's run of the same round; verdicts use compare's paired 95% Student-t "
        f"interval of the mean log ratio with a {100 * plan.margin:g}% margin, and only from "
        f"{MIN_PAIRS} pairs. Runs that exited non-zero are excluded."
    )
