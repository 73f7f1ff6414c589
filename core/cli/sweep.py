"""``wattlab sweep``: which technique set to use on this model and machine, measured.

Progress goes to stderr (a bar, the run about to start and the time left); the table, the
fronts and the recommendation to stdout; reports to ``--out``. Ctrl-C keeps what completed and
prints the command that resumes it (exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from wattlab.core.cli.common import (
    EXIT_USAGE,
    CliError,
    check_out_dir,
    measure_settings,
    open_store,
)
from wattlab.core.cli.flags import _margin_pct, carbon_flags, carbon_from_args, session_flags
from wattlab.core.cli.sweep_print import print_plan, print_sweep

BAR_WIDTH = 24


def _candidate_sets(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """Each ``--candidates`` argument is one set: its techniques separated by spaces."""
    sets = [tuple(arg.replace(";", " ").split()) for arg in args.candidates or []]
    empty = [s for s in sets if not s]
    if empty:
        raise CliError('--candidates: an empty technique set; give e.g. "quantization"')
    return sets


def _plan(args: argparse.Namespace) -> Any:
    from wattlab.core.cli.session import spec_from_args
    from wattlab.core.run.sweep_plan import build_plan

    sets = _candidate_sets(args)
    if not sets and not args.auto:
        raise CliError('nothing to sweep: give --auto, --candidates "A" "B" ... or both')
    if args.max_fairness_gap is not None and not args.sensitive_column:
        raise CliError("--max-fairness-gap needs --sensitive-column COL (the groups to compare)")
    if args.technique:
        raise CliError("--technique applies to one run; a sweep takes --candidates or --auto")
    plan = build_plan(
        spec_from_args(args),
        sets,
        args.auto,
        repeats=args.repeats,
        cooldown_s=2.0 if args.cooldown is None else args.cooldown,
        margin=_margin_pct(args) / 100,
        max_accuracy_loss_points=args.max_accuracy_loss,
        max_fairness_gap_points=args.max_fairness_gap,
        rerun_disturbed=args.rerun_disturbed,
    )
    from wattlab.core.results import MIN_PAIRS

    if plan.repeats < MIN_PAIRS:
        print(
            f"wattlab: warning: {plan.repeats} round(s) give no verdict (at least {MIN_PAIRS} "
            "are needed): the sweep will describe, not recommend",
            file=sys.stderr,
        )
    if not plan.candidates:
        reasons = "; ".join(f"{r.key}: {r.reason}" for r in plan.refused)
        raise CliError(f"no candidate can run here ({reasons})")
    return plan


def _progress_line(p: Any) -> None:
    filled = round(BAR_WIDTH * p.fraction)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    print(f"== [{bar}] {100 * p.fraction:3.0f}% {p.text}", file=sys.stderr)


def _log_only(ev: dict[str, Any]) -> None:
    """A sweep runs dozens of sessions: only their notes and warnings reach the terminal."""
    if ev.get("event") == "log":
        print(f"  note: {ev.get('message')}", file=sys.stderr)


def _resume_hint(sweep_id: int, how: str) -> str:
    return (
        f"wattlab: sweep {sweep_id} {how}; what completed is stored. Resume it with: "
        f"wattlab sweep --resume {sweep_id}"
    )


def _stored_settings(plan: Any, given: Any, carbon: Any) -> tuple[Any, Any]:
    """The measurement and carbon settings the sweep started with (older plans: as given)."""
    from wattlab.core.measure.carbon import CarbonSettings
    from wattlab.core.measure.meter import MeasureSettings

    settings = MeasureSettings(**plan.measure).validate() if plan.measure else given
    return settings, CarbonSettings(**plan.carbon) if plan.carbon else carbon


def cmd_sweep(args: argparse.Namespace) -> int:
    from wattlab.core.cli.execute import ensure_demo_trained
    from wattlab.core.run import sweep
    from wattlab.core.run.client import SessionFailed

    settings = measure_settings(args)  # every flag checked before anything runs or is stored
    check_out_dir(args)
    carbon = carbon_from_args(args)
    carbon.resolved()
    store = open_store(args)
    if args.resume is not None:
        if args.auto or args.candidates:
            raise CliError("--resume continues the stored plan: give no --auto or --candidates")
        plan, state = sweep.load(store, args.resume)
        sweep_id = args.resume
        settings, carbon = _stored_settings(plan, settings, carbon)
        store.reopen(sweep_id)
        print(
            f"resuming sweep {sweep_id} after {len(state.rounds)} complete round(s), measured "
            "and priced as it started (the stored plan's settings)",
            file=sys.stderr,
        )
    else:
        plan, state = _plan(args), None
        plan.measure = {f: getattr(settings, f) for f in settings.CHECKED}
        plan.carbon = dataclasses.asdict(carbon)
        print_plan(plan, file=sys.stderr)
        for spec in [plan.base] + [c.spec(plan.base) for c in plan.candidates]:
            ensure_demo_trained(spec, args, store)  # a distilling set needs it as its teacher
        sweep_id = sweep.start(plan, store)
    try:
        out = sweep.run(
            plan, sweep_id, store, settings, carbon, state=state,
            on_event=_log_only, on_progress=_progress_line,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(_resume_hint(sweep_id, "stopped"), file=sys.stderr)
        raise
    except SessionFailed as exc:  # the baseline failed: nothing can be compared
        raise CliError(
            f"{exc} (baseline run {exc.run_id} kept as failed). {_resume_hint(sweep_id, 'ended')}",
            EXIT_USAGE if exc.user else 1,
        ) from None
    print_sweep(out)
    if args.out:
        from wattlab.core.report.sweep_report import write_sweep_reports

        files = write_sweep_reports(out, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser(
        "sweep",
        help="measure many technique sets against one baseline; Pareto front and a recommendation",
    )
    session_flags(s)
    s.add_argument(
        "--candidates",
        nargs="+",
        metavar='"TECHNIQUE SPECS"',
        help='technique sets, one per argument, e.g. "quantization" "pruning mixed-precision"',
    )
    s.add_argument(
        "--auto",
        action="store_true",
        help="every technique that applies to this model, mode and hardware, plus pairs that "
        "compose (refused ones are listed with the reason)",
    )
    s.add_argument(
        "--max-accuracy-loss",
        type=float,
        default=0.5,
        help="accuracy budget in percentage points against the baseline (default 0.5)",
    )
    s.add_argument(
        "--max-fairness-gap",
        type=float,
        help="with --sensitive-column: points the gap between the best and worst group's "
        "accuracy may grow",
    )
    s.add_argument("--repeats", type=int, default=5, help="rounds (default 5; verdicts from 3)")
    s.add_argument("--cooldown", type=float, help="seconds between runs (default 2)")
    s.add_argument("--margin", type=float, help="practical-equivalence margin in %% (default 3)")
    s.add_argument(
        "--rerun-disturbed",
        action="store_true",
        help="measure a round once more when other processes disturbed one of its runs",
    )
    s.add_argument("--resume", type=int, metavar="ID", help="continue a stopped sweep")
    carbon_flags(s)
    s.add_argument("--out", help="write sweep.pdf, sweep.csv and sweep.json here")
    s.set_defaults(func=cmd_sweep)
