"""User-facing errors: one specific sentence each, shown without a traceback.

Anything raised as one of these is the user's input or environment, not a WattLab bug: the CLI
prints it on one line with exit code 2, the worker sends it as an ``error`` event, the GUI shows
it in its message area.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors a user can fix."""


class ModelError(UserError):
    pass


class DataError(UserError):
    pass


class SpecError(UserError):
    pass
