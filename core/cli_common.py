"""What every ``wattlab`` subcommand shares: user-facing errors, exit codes, the run store."""

from __future__ import annotations

import argparse
from pathlib import Path

from .store import RunStore

EXIT_USAGE = 2
EXIT_NOT_FOUND = 127


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def open_store(args: argparse.Namespace) -> RunStore:
    return RunStore.open_default(Path(args.data_dir) if args.data_dir else None)


# flag -> Settings field. Precedence: the flag, then $WATTLAB_DATA_DIR (data dir only), then the
# settings file the GUI edits, then the Settings defaults.
SETTING_FLAGS = {
    "interval": "interval_s",
    "idle": "idle_s",
    "cooldown": "cooldown_s",
    "region": "region",
    "carbon_intensity": "intensity_g_per_kwh",
    "pue": "pue",
    "price": "price_per_kwh",
    "currency": "currency",
    "data_dir": "data_dir",
}


def apply_settings(args: argparse.Namespace) -> None:
    import os

    from .settings import Settings
    from .store import ENV_DATA_DIR

    s = Settings.load()
    for flag, field in SETTING_FLAGS.items():
        if not hasattr(args, flag) or getattr(args, flag) is not None:
            continue
        if flag == "data_dir" and os.environ.get(ENV_DATA_DIR):
            continue
        setattr(args, flag, getattr(s, field))
