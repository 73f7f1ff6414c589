"""What every ``wattlab`` subcommand shares: user-facing errors, exit codes, the run store."""

from __future__ import annotations

import argparse
from pathlib import Path

from wattlab.core.measure.store import RunStore, StoreError

EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def store_path(args: argparse.Namespace) -> Path:
    from wattlab.core import paths
    from wattlab.core.measure.store import DB_NAME

    return (Path(args.data_dir) if args.data_dir else paths.data_dir()) / DB_NAME


def open_store(args: argparse.Namespace) -> RunStore:
    """The run store a command records into (created when there is none yet). A store already
    found damaged is refused here, before anything runs, rather than written into."""
    store = RunStore(store_path(args))
    if store.damage is not None:
        raise StoreError(store.damage)
    return store


def open_existing_store(args: argparse.Namespace) -> RunStore | None:
    """The run store for a command that only reads, or None when there is none: reading must
    not create the data folder or an empty store as a side effect."""
    path = store_path(args)
    return RunStore(path) if path.exists() else None


def check_out_dir(args: argparse.Namespace) -> None:
    """``--out`` names a folder (created when missing): refused before anything runs when it,
    or a folder above it, is a file."""
    out = getattr(args, "out", None)
    if not out:
        return
    p = Path(out)
    for candidate in (p, *p.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise CliError(f"--out must be a folder: {candidate} is a file")
            _check_writable(candidate, p)
            return


def _check_writable(existing: Path, out: Path) -> None:
    """Write (and at once remove) a probe file in the nearest existing folder of ``--out``, so
    a place that cannot hold the reports (/proc, a read-only mount, a full disk) is said before
    the run, not after it; nothing is created for a run that is then refused."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise CliError(f"--out {out} cannot hold the reports: {exc.strerror or exc}") from None


# flag -> Settings field. Precedence: the flag, then $WATTLAB_DATA_DIR (data dir only), then the
# settings file the GUI edits, then the Settings defaults.
SETTING_FLAGS = {
    "interval": "interval_s",
    "idle": "idle_s",
    "cooldown": "cooldown_s",
    "min_measure": "min_measure_s",
    "region": "region",
    "carbon_intensity": "intensity_g_per_kwh",
    "pue": "pue",
    "price": "price_per_kwh",
    "currency": "currency",
    "data_dir": "data_dir",
}


def apply_settings(args: argparse.Namespace) -> list[str]:
    """Fill the flags not given from the settings file; returns what in the file was ignored
    (each such field keeps its default), for the caller to report once."""
    import os

    from wattlab.core.paths import ENV_DATA_DIR
    from wattlab.core.settings import Settings

    s, problems = Settings.load_checked()
    for flag, field in SETTING_FLAGS.items():
        if not hasattr(args, flag) or getattr(args, flag) is not None:
            continue
        if flag == "data_dir" and os.environ.get(ENV_DATA_DIR):
            continue
        setattr(args, flag, getattr(s, field))
    return problems


def measure_settings(args: argparse.Namespace):  # noqa: ANN201 - avoids importing at start-up
    """The run's MeasureSettings from flags (after apply_settings), validated before anything
    runs or is stored: every numeric flag of the command (cli/flags.py FLAG_RANGES) and
    ``--out`` are checked here too."""
    from wattlab.core.cli.flags import check_number_flags
    from wattlab.core.measure.meter import MeasureSettings

    check_number_flags(args)
    check_out_dir(args)
    min_measure = getattr(args, "min_measure", None)
    return MeasureSettings(
        interval_s=args.interval,
        idle_s=args.idle,
        min_measure_s=MeasureSettings.min_measure_s if min_measure is None else min_measure,
    ).validate()
