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
