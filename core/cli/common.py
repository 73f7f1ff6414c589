"""What every ``wattlab`` subcommand shares: user-facing errors, exit codes, the run store."""

from __future__ import annotations

import argparse
from pathlib import Path

from wattlab.core.measure.store import RunStore

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
    "min_measure": "min_measure_s",
    "region": "region",
    "carbon_intensity": "intensity_g_per_kwh",
    "pue": "pue",
    "price": "price_per_kwh",
    "currency": "currency",
    "data_dir": "data_dir",
}


def apply_settings(args: argparse.Namespace) -> None:
    import os

    from wattlab.core.paths import ENV_DATA_DIR
    from wattlab.core.settings import Settings

    s = Settings.load()
    for flag, field in SETTING_FLAGS.items():
        if not hasattr(args, flag) or getattr(args, flag) is not None:
            continue
        if flag == "data_dir" and os.environ.get(ENV_DATA_DIR):
            continue
        setattr(args, flag, getattr(s, field))


def measure_settings(args: argparse.Namespace):  # noqa: ANN201 - avoids importing at start-up
    """The run's MeasureSettings from flags (after apply_settings), validated before anything
    runs or is stored; the cool-down and margin of comparisons are checked here too."""
    import math

    from wattlab.core.errors import SpecError
    from wattlab.core.measure.meter import MeasureSettings

    min_measure = getattr(args, "min_measure", None)
    ms = MeasureSettings(
        interval_s=args.interval,
        idle_s=args.idle,
        min_measure_s=MeasureSettings.min_measure_s if min_measure is None else min_measure,
    ).validate()
    cooldown = getattr(args, "cooldown", None)
    if cooldown is not None and not (math.isfinite(cooldown) and 0 <= cooldown <= 3600):
        raise SpecError(f"cool-down (--cooldown) must be between 0 and 3600 s, got {cooldown}")
    margin = getattr(args, "margin", None)
    if margin is not None and not (math.isfinite(margin) and 0 <= margin < 50):
        raise SpecError(f"--margin must be a percentage from 0 to 50, got {margin}")
    return ms
