"""``wattlab ...``: every engine feature as a headless command.

Errors a user can cause (bad paths, missing commands, bad flags, a damaged store or settings
file) end in one line on stderr and exit code 2 (``profile``: 127 for a command that does not
exist, 126 for one that cannot be executed, as shells do), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

from wattlab.core.cli.common import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    apply_settings,
    measure_settings,
    open_existing_store,
    open_store,
    store_path,
)
from wattlab.core.cli.printing import (
    print_comparison,
    print_energy_summary,
    print_session_summary,
)
from wattlab.core.errors import UserError
from wattlab.core.fileio import OutputError
from wattlab.core.measure.store import StoreError
from wattlab.core.report import text as units


# -- sensors -------------------------------------------------------------------------------------
def cmd_sensors(args: argparse.Namespace) -> int:
    from wattlab.core.measure.sensors import discover

    found = discover()
    found.close()
    statuses = [s.__dict__ for s in found.statuses]
    if args.json:
        print(json.dumps({"sensors": statuses}, indent=2, default=str))
        return 0
    for s in found.statuses:
        mark = "present" if s.available else "missing"
        print(f"{s.name:<9} {mark:<8} {s.reason or ''}".rstrip())
        if s.name == "nvml" and s.available:
            for g in s.details.get("gpus", []):
                counter = "energy counter" if g["energy_counter"] else "power only (integrated)"
                print(f"          {g['label']}: {g['name']} ({counter})")
        if s.name == "estimate" and s.available:
            m = s.details["model"]
            from wattlab.core.measure.sensors.estimate import describe_model

            print(f"          model {describe_model(m)}; covers {', '.join(s.details['covers'])}")
        for w in s.details.get("warnings", []) if s.available else []:
            print(f"          warning: {w}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from wattlab.core.report.outputs import write_run_outputs
    from wattlab.core.run.profile import (
        CommandNotExecutable,
        CommandNotFound,
        check_command,
        profile_command,
    )

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CliError("no command to profile: use `wattlab profile [OPTIONS] -- CMD ARGS...`")
    settings = measure_settings(args)  # every flag checked before anything runs or is stored
    try:
        check_command(cmd[0])  # shell exit codes, before an idle baseline is spent on it
        store = open_store(args)
        outcome = profile_command(cmd, store, settings, label=args.label)
    except CommandNotFound as exc:
        raise CliError(f"command not found: {exc}", EXIT_NOT_FOUND) from None
    except CommandNotExecutable as exc:
        raise CliError(f"cannot execute {exc}", EXIT_NOT_EXECUTABLE) from None
    print_energy_summary(outcome.result)
    if args.out:
        files = write_run_outputs(Path(args.out), outcome.result, store)
        print("wrote " + ", ".join(str(f) for f in files))
    return outcome.exit_code


# -- runs ----------------------------------------------------------------------------------------
def _energy_cell(store, run_id: int) -> str:  # noqa: ANN001 - RunStore, imported lazily
    """A run's total energy for the list; "?" when its stored result cannot be read (the
    store's ``damage`` then says why), "-" when it has none."""
    from wattlab.core.measure.store import StoreError

    try:
        res = store.result(run_id) or {}
    except StoreError as exc:
        store.damage = store.damage or str(exc)
        return "?"
    tot = res.get("total")
    tot = tot if isinstance(tot, dict) else {}
    gross = tot.get("gross_j")
    if not isinstance(gross, (int, float)) or isinstance(gross, bool):
        return "-"
    return f"{units.joules(gross)} {tot.get('label') or ''}"


def _started(t: object) -> str:
    """A run's start as local time; "?" for a value that is not a time (a damaged row)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def cmd_runs_list(args: argparse.Namespace) -> int:
    """The newest runs. No store yet: says so and creates nothing. A damaged store: the runs
    SQLite can still read, then one line saying what to do, exit 2."""
    from wattlab.core.cli.flags import check_number_flags
    from wattlab.core.measure.store import StoreError

    check_number_flags(args)
    store = open_existing_store(args)
    rows = store.runs(args.limit) if store is not None else []
    if not rows and (store is None or store.damage is None):
        print(f"no runs yet in {store_path(args)}")
        return 0
    print(f"{'id':>5}  {'kind':<8} {'status':<12} {'started':<19} {'energy':>22}  label")
    for r in rows:
        energy = _energy_cell(store, r.id)
        print(
            f"{r.id:>5}  {r.kind!s:<8} {r.status!s:<12} {_started(r.created_at):<19} "
            f"{energy:>22}  {r.label or ''}"
        )
    if store is not None and store.damage is not None:
        raise StoreError(store.damage)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    store = open_existing_store(args)
    row = store.run(args.id) if store is not None else None
    if row is None:
        raise CliError(f"no run with id {args.id} in {store_path(args)}")
    res = store.result(args.id) if store is not None else None
    if args.json:
        print(json.dumps({"run": row.__dict__, "result": res}, indent=2, default=str))
        return 0
    print(f"run {row.id} ({row.kind}) {row.status}: {row.label or ''}")
    if row.kind not in ("sweep", "bench"):  # their plan is long; their summary says it all
        print(f"spec: {json.dumps(row.spec)}")
    if row.message:
        print(f"message: {row.message}")
    if res and row.kind == "sweep":
        from wattlab.core.cli.sweep_print import print_sweep

        print_sweep(res)
    elif res and row.kind == "bench":
        from wattlab.core.cli.bench import print_bench

        print_bench(res)
    elif res and row.kind == "comparison":
        print_comparison(res)
    elif res and "measured_phase" in res:
        print_session_summary(res)
    elif res:
        print_energy_summary(res)
    else:
        print("no result stored (the run did not finish)")
    return 0


# -- parser --------------------------------------------------------------------------------------
def _usage(parser: argparse.ArgumentParser) -> int:
    """A command group given without its action: its help, and the usage exit code."""
    parser.print_help()
    return EXIT_USAGE


class OneLineParser(argparse.ArgumentParser):
    """argparse, except that a usage mistake (an unknown flag, ``--lr abc``) is one line and
    exit code 2 like every other user error, instead of the usage block and a SystemExit.
    Subcommand parsers are made with the same class."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="wattlab", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir",
        help="folder of the run store (default: $WATTLAB_DATA_DIR or the user data dir)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("sensors", help="what this machine can measure, and why not the rest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sensors)

    s = sub.add_parser("profile", help="run a command and measure its energy")
    s.add_argument("--interval", type=float, help="sampling interval, s (>= 0.01; default 0.1)")
    s.add_argument("--idle", type=float, help="idle baseline before the command, s (default 2)")
    s.add_argument("--out", help="write summary.json and samples.csv here")
    s.add_argument("--label", help="name of the run in the store")
    s.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    s.set_defaults(func=cmd_profile)

    from wattlab.core.cli import bench, rag, session, sweep

    session.register(sub)
    sweep.register(sub)
    bench.register(sub)
    rag.register(sub)
    from wattlab.core.cli import exporter as exporter_cli

    exporter_cli.register(sub)

    s = sub.add_parser("runs", help="runs in the store")
    rs = s.add_subparsers(dest="runs_command", metavar="ACTION")
    r = rs.add_parser("list", help="recent runs")
    r.add_argument("--limit", type=int, default=50)
    r.set_defaults(func=cmd_runs_list)
    r = rs.add_parser("show", help="one run's result")
    r.add_argument("id", type=int)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs_show)
    s.set_defaults(func=lambda a: _usage(s))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as exc:
        print(f"wattlab: {exc}", file=sys.stderr)
        return exc.code
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        _warn_settings(apply_settings(args))
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"wattlab: {exc}", file=sys.stderr)
        return exc.code
    except (StoreError, OutputError, UserError) as exc:
        print(f"wattlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt as exc:
        code = getattr(exc, "exit_code", 130)  # 128 + SIGTERM/SIGHUP (cli/signals.py)
        why = f"stopped by {exc}" if code != 130 else "interrupted"
        print(f"wattlab: {why}", file=sys.stderr)
        return code


def _warn_settings(problems: list[str]) -> None:
    """What the settings file had that was ignored (defaults used): one line, once per run."""
    if problems:
        from wattlab.core.settings import config_path

        print(
            f"wattlab: warning: {config_path()}: {'; '.join(problems)} (defaults used instead)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    from wattlab.core.cli.signals import stop_like_ctrl_c

    stop_like_ctrl_c()
    sys.exit(main())
