"""The app's Script workload: a researcher's own script or command line, measured as
``wattlab profile`` measures it (run once) or as ``wattlab bench`` compares two (the first is the
baseline). The window's fields become argv here, and every refusal is decided here, before an
idle baseline is spent or anything is stored.

- A first word ending in ``.py`` runs with this interpreter: the app's own Python is the one
  whose environment has ``wattlab`` installed, so the script's markers (``wattlab.track``)
  reach the app. A frozen app has no Python of its own: then ``python3`` on PATH.
- Words are split as a POSIX shell splits them, but no shell runs (as in ``wattlab bench``):
  ``sh -c '...'`` for pipes and variables.
- An empty working folder means the script's folder for a ``.py`` file, else the app's own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from wattlab.core.errors import UserError
from wattlab.core.run.bench_plan import BenchCommand, BenchPlan

SCRIPT_SUFFIX = ".py"
MAX_LABEL_CHARS = 200
# The fields of the window's Script workload; a refusal names the one to fix.
FIELDS = ("command", "arguments", "folder", "compare")


class ScriptInputError(UserError):
    """A Script workload that cannot run as given; ``field`` is the one to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def interpreter() -> str:
    """The Python that runs a picked ``.py`` file (see the module's docstring)."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return shutil.which("python3") or "python3"
    return sys.executable


def split_words(text: str, field: str) -> list[str]:
    """``text`` as argv words, split as a POSIX shell would (no shell runs)."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ScriptInputError(field, f"cannot split {text!r}: {str(exc).lower()}") from None


def command_argv(text: str, arguments: str = "", field: str = "command") -> tuple[str, ...]:
    """The argv of a command line (and its extra ``arguments``): a ``.py`` file first runs with
    ``interpreter()``."""
    words = split_words(text, field)
    if not words:
        raise ScriptInputError(
            field, "no script or command given: type one, or pick a .py file (Open script...)"
        )
    if words[0].endswith(SCRIPT_SUFFIX):
        words = [interpreter(), *words]
    return (*words, *split_words(arguments, "arguments"))


def shown(argv: tuple[str, ...]) -> str:
    """A command as a person reads it: this interpreter shown as ``python``."""
    words = ["python" if i == 0 and a == interpreter() else a for i, a in enumerate(argv)]
    return shlex.join(words)


@dataclass(frozen=True)
class ScriptPlan:
    """What the Script workload runs: ``argv`` (the baseline when comparing), the folder it
    runs in, and ``compare`` (the second command line) when two are compared."""

    argv: tuple[str, ...]
    cwd: str
    compare: tuple[str, ...] | None = None

    @property
    def text(self) -> str:
        return shown(self.argv)

    @property
    def title(self) -> str:
        """What the live view calls the run: the script's file name, else the program's."""
        return short_name(self.argv)

    @property
    def label(self) -> str:
        """The stored run's name: the command without the interpreter's path."""
        return self.text[:MAX_LABEL_CHARS]

    def bench_plan(self, rounds: int, cooldown_s: float) -> BenchPlan:
        """The two command lines as ``wattlab bench`` compares them: no warm-up, ``rounds``
        interleaved rounds, the first command the reference."""
        if self.compare is None:
            raise ScriptInputError("compare", "nothing to compare with: type a second command")
        cmds = [BenchCommand(shown(a), a) for a in (self.argv, self.compare)]
        return BenchPlan(cmds, runs=rounds, warmup=0, cooldown_s=cooldown_s)


def short_name(argv: tuple[str, ...]) -> str:
    """A command in a word or two: its .py file's name, ``python -m MODULE``'s module, else
    the program's name."""
    script = _script_of(argv)
    if script is not None:
        return Path(script).name
    if len(argv) > 2 and argv[1] == "-m" and Path(argv[0]).name.startswith("python"):
        return f"-m {argv[2].rsplit('.', 1)[-1]}"
    return Path(argv[0]).name


def bench_run_title(command_index: int, round_index: int, rounds: int) -> str:
    """A bench run as the live view names it: the command's number (#1 is the baseline) and
    the round; the command itself is in the Log and the Results."""
    role = "baseline" if command_index == 0 else "compared"
    return f"#{command_index + 1} ({role}), round {round_index + 1}/{rounds}"


def working_folder(text: str, argv: tuple[str, ...]) -> str:
    """The folder the command runs in: the one given, else the ``.py`` file's, else ours."""
    if text.strip():
        folder = Path(text.strip()).expanduser()
        if not folder.is_dir():
            raise ScriptInputError("folder", f"{folder} is not a folder")
        return str(folder.resolve())
    script = _script_of(argv)
    if script is not None and Path(script).is_absolute():
        return str(Path(script).parent)
    return os.getcwd()


def _script_of(argv: tuple[str, ...]) -> str | None:
    """The ``.py`` file an interpreter is given first, if any."""
    if len(argv) > 1 and Path(argv[0]).name.startswith("python") and argv[1].endswith(".py"):
        return argv[1]
    return None


def check_runnable(argv: tuple[str, ...], cwd: str, field: str) -> None:
    """Refuse, before anything is measured, a program that does not exist or cannot be run,
    and a ``.py`` file given to Python that is not there (Python would fail at once, and the
    run would be stored as failed for a typo)."""
    from wattlab.core.run.profile import CommandNotExecutable, CommandNotFound, check_command

    prog = argv[0]
    if ("/" in prog) and not Path(prog).is_absolute():
        prog = str(Path(cwd) / prog)  # the command runs in cwd: a relative path is from there
    try:
        check_command(prog)
    except CommandNotFound as exc:
        raise ScriptInputError(field, f"command not found: {exc}") from None
    except CommandNotExecutable as exc:
        raise ScriptInputError(field, f"cannot execute {exc}") from None
    script = _script_of(argv)
    if script is not None and not (Path(cwd) / script).is_file():
        raise ScriptInputError(field, f"script not found: {script} (in {cwd})")


def build_plan(command: str, arguments: str, folder: str, compare: str | None = None) -> ScriptPlan:
    """The fields as a ScriptPlan, every check made; ``compare`` is None for a single run and
    the second command line (it must not be empty) when two are compared."""
    argv = command_argv(command, arguments)
    cwd = working_folder(folder, argv)
    check_runnable(argv, cwd, "command")
    other = None
    if compare is not None:
        if not compare.strip():
            raise ScriptInputError(
                "compare", "nothing to compare with: type the second command line"
            )
        other = command_argv(compare, field="compare")
        check_runnable(other, cwd, "compare")
    return ScriptPlan(argv, cwd, other)


@dataclass(frozen=True)
class StoredScript:
    """A stored profile or bench run as the Script workload's fields, to run it again."""

    command: str
    folder: str
    compare: str | None = None  # a bench's second command line
    rounds: int | None = None  # a bench's rounds


def from_stored(kind: str, spec: dict) -> StoredScript:
    """The fields that run a stored ``profile`` or two-command ``bench`` again (a bench of more
    commands is repeated from the command line: the app compares two)."""
    folder = str(spec.get("cwd") or "")
    if kind == "profile" and spec.get("command"):
        return StoredScript(shlex.join(str(a) for a in spec["command"]), folder)
    commands = (spec.get("commands") or []) if kind == "bench" else []
    if len(commands) != 2:
        what = f"a bench of {len(commands)} commands" if kind == "bench" else f"a {kind} run"
        raise ScriptInputError(
            "command", f"{what} cannot be run again here: use Copy command (wattlab bench)"
        )
    first, second = (shlex.join(str(a) for a in c["argv"]) for c in commands)
    return StoredScript(first, folder, second, int(spec.get("runs") or 1))
