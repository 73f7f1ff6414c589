"""``wattlab bench "CMD A" "CMD B" ...``: any commands side by side, energy and verdicts.

Progress goes to stderr (the run about to start and the time left), the table and the headline
to stdout, reports to ``--out``. A command that fails on some runs is reported (one warning line
per command) and its failed runs are excluded from every figure; the bench still exits 0, since
the bench itself worked. Mistakes in what was asked (no command, an unknown placeholder, a bad
flag) are one line and exit 2; a command that does not exist 127, one that cannot be executed
126, as ``wattlab profile``. Ctrl-C keeps what completed, prints it, and exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattlab.core.cli.common import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    CliError,
    measure_settings,
    open_store,
)
from wattlab.core.cli.flags import _margin_pct, carbon_flags, carbon_from_args
from wattlab.core.spec import NumberRange

BAR_WIDTH = 24
RUNS = NumberRange("runs (--runs)", 1, 1000, integer=True)
WARMUP = NumberRange("warm-up runs (--warmup)", 0, 1000, integer=True)


def count_flag(rng: NumberRange) -> Callable[[str], int]:
    """An integer flag checked against its range as argparse reads it, so a bad value is one
    line and exit 2 before anything runs."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        problem = rng.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _plan(args: argparse.Namespace) -> Any:
    from wattlab.core.run.bench_plan import build_plan

    return build_plan(
        list(args.commands or []),
        [tuple(pair) for pair in args.parameter_list or []],
        args.prepare,
        runs=args.runs,
        warmup=args.warmup,
        cooldown_s=3.0 if args.cooldown is None else args.cooldown,
        margin=_margin_pct(args) / 100,
        show_output=args.show_output,
    )


def _command_error(exc: Exception) -> CliError:
    """profile's CommandNotFound / CommandNotExecutable as the shell's 127 / 126."""
    from wattlab.core.run.profile import CommandNotFound

    if isinstance(exc, CommandNotFound):
        return CliError(f"command not found: {exc}", EXIT_NOT_FOUND)
    return CliError(f"cannot execute {exc}", EXIT_NOT_EXECUTABLE)


def _progress_line(p: Any) -> None:
    if p.warmup:
        print(f"== {p.text}", file=sys.stderr, flush=True)
        return
    fraction = (p.run_number - 1) / max(p.planned_runs, 1)
    filled = round(BAR_WIDTH * fraction)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    print(f"== [{bar}] {100 * fraction:3.0f}% {p.text}", file=sys.stderr, flush=True)


def print_bench(out: dict[str, Any], file: Any = None) -> None:
    """The commands, the table (every energy figure with its label), the per-pair sentences
    and the headline."""
    from wattlab.core.report import bench_text as bt

    file = file or sys.stdout
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p("")
    p(bt.status_line(out))
    for line in bt.command_lines(out):
        p(line)
    p("")
    for line in bt.table_lines(out):
        p(line)
    notes = bt.note_lines(out)
    if notes:
        p("")
        for line in notes:
            p(line)
    p("")
    p(out["headline"])


def cmd_bench(args: argparse.Namespace) -> int:
    from wattlab.core.run.profile import CommandNotExecutable, CommandNotFound

    settings = measure_settings(args)  # every flag and --out checked before anything runs
    plan = _plan(args)
    carbon = carbon_from_args(args)
    carbon.resolved()
    try:
        return _run(plan, args, settings, carbon)
    except (CommandNotFound, CommandNotExecutable) as exc:  # checked first, or gone since
        raise _command_error(exc) from None


def _run(plan: Any, args: argparse.Namespace, settings: Any, carbon: Any) -> int:
    from wattlab.core.run import bench
    from wattlab.core.run.bench_plan import check_commands

    check_commands(plan)
    store = open_store(args)
    bench_id = bench.start(plan, store)
    print(
        f"bench {bench_id}: {len(plan.commands)} command(s) x {plan.runs} round(s), "
        f"{plan.warmup} warm-up run(s) each; commands run without a shell"
        + ("" if plan.show_output else ", their output discarded (--show-output shows it)"),
        file=sys.stderr,
    )
    try:
        out = bench.run(plan, bench_id, store, settings, carbon, on_progress=_progress_line)
    except KeyboardInterrupt:
        stored = store.result(bench_id)
        if stored:
            print_bench(stored)
        print(
            f"wattlab: bench {bench_id} stopped; the runs that completed are stored "
            f"(wattlab runs show {bench_id} --json)",
            file=sys.stderr,
        )
        raise
    print_bench(out)
    for w in out["warnings"]:
        print(f"wattlab: warning: {w}", file=sys.stderr)
    if args.out:
        from wattlab.core.report.bench_report import write_bench_reports

        files = write_bench_reports(out, store, Path(args.out))
        print("\nreports: " + "\n         ".join(str(f) for f in files))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser(
        "bench",
        help="measure commands side by side (like hyperfine, with energy and verdicts)",
        description="Run each command several times, interleaved, each run measured like "
        "`wattlab profile`; compare every command with the first. Commands are split like "
        "shell words but run WITHOUT a shell (no pipes, globs, && or $VARS: use "
        "\"sh -c '...'\" for those). A failing run is reported and excluded; the bench exits 0.",
    )
    s.add_argument(
        "commands",
        nargs="*",
        metavar="CMD",
        help='a command as one string, e.g. "python infer.py --fp32"; the first is the '
        "reference every other is compared with",
    )
    s.add_argument(
        "-L",
        "--parameter-list",
        nargs=2,
        action="append",
        metavar=("NAME", "V1,V2"),
        help="one command per value for each {NAME} in a command (repeatable; lists multiply "
        "out); {{ and }} are literal braces",
    )
    s.add_argument(
        "-r",
        "--runs",
        type=count_flag(RUNS),
        default=5,
        help="measured rounds (default 5; verdicts from 3)",
    )
    s.add_argument(
        "-w",
        "--warmup",
        type=count_flag(WARMUP),
        default=0,
        help="unmeasured runs of each command before the first round (default 0)",
    )
    s.add_argument(
        "-p", "--prepare", metavar="CMD", help="run (unmeasured, no shell) before every run"
    )
    s.add_argument("--interval", type=float, help="sampling interval, s (>= 0.01; default 0.1)")
    s.add_argument("--idle", type=float, help="idle baseline before each run, s (default 2)")
    s.add_argument("--margin", type=float, help="practical-equivalence margin in %% (default 3)")
    s.add_argument("--cooldown", type=float, help="seconds between runs (default 3)")
    s.add_argument(
        "--show-output", action="store_true", help="let the commands print (default: discarded)"
    )
    carbon_flags(s)
    s.add_argument("--out", help="write bench.pdf, bench.csv, bench.json and emissions.csv here")
    s.set_defaults(func=cmd_bench)
