"""What ``wattlab bench`` runs: the commands (after ``-L`` parameter lists are expanded), the
order of each round, and the checks made before anything is measured.

Commands are split with ``shlex`` and run without a shell (no pipes, globs, ``&&`` or
variables): what is measured is the command itself, not a shell around it, and a command that
does not exist is refused with the shell's codes (127 not found, 126 not executable) before any
idle baseline is spent on it. A command that needs a shell can be given as ``sh -c '...'``.

Parameter lists follow hyperfine's ``--parameter-list``: ``-L NAME v1,v2`` replaces ``{NAME}``
in every command that uses it, one command per value; several lists multiply out (the first
``-L`` varies slowest). ``{{`` and ``}}`` stand for literal braces, so ``python -c
"print({{1}})"`` runs ``print({1})``. A ``{word}`` with no list of that name, or a list no
command uses, is a mistake the user hears about before anything runs.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from wattlab.core.errors import UserError
from wattlab.core.run.sweep_plan import BASELINE, round_order

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# "{{" and "}}" are escapes; "{name}" a placeholder; any other brace is left as it is.
TOKEN_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
ORDER_TEXT = (
    "rounds: each round runs every command once; with two commands round k runs A B when k "
    "is even and B A when it is odd; with more, the first command runs first in even rounds and "
    "last in odd ones and the others rotate by one each round (the order of `wattlab sweep`), "
    "so drift is shared within a round and spread over the commands"
)


class BenchInputError(UserError):
    """A bench the user described wrongly (a placeholder, a list, a command string)."""


@dataclass(frozen=True)
class BenchCommand:
    """One command of the bench: the text shown to the user, its argv and, when it came from
    ``-L`` lists, the values that made it."""

    text: str
    argv: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "argv": list(self.argv), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchCommand:
        return cls(str(d["text"]), tuple(str(a) for a in d["argv"]), dict(d.get("params") or {}))


@dataclass
class BenchPlan:
    """Everything a bench needs; stored as the bench row's spec."""

    commands: list[BenchCommand]
    runs: int = 5
    warmup: int = 0
    prepare: BenchCommand | None = None
    cooldown_s: float = 3.0
    margin: float = 0.03
    show_output: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "commands": [c.to_dict() for c in self.commands],
            "runs": self.runs,
            "warmup": self.warmup,
            "prepare": self.prepare.to_dict() if self.prepare else None,
            "cooldown_s": self.cooldown_s,
            "margin": self.margin,
            "show_output": self.show_output,
            "order": ORDER_TEXT,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchPlan:
        prep = d.get("prepare")
        return cls(
            [BenchCommand.from_dict(c) for c in d["commands"]],
            int(d["runs"]),
            int(d.get("warmup") or 0),
            BenchCommand.from_dict(prep) if prep else None,
            float(d.get("cooldown_s") or 0.0),
            float(d.get("margin") or 0.0),
            bool(d.get("show_output")),
        )


def parameter_lists(given: list[tuple[str, str]] | None) -> list[tuple[str, list[str]]]:
    """``-L NAME v1,v2,...`` pairs as (name, values), each checked: a valid name, given once,
    no empty value (``a,,b`` is almost always a typo)."""
    out: list[tuple[str, list[str]]] = []
    for name, text in given or []:
        if not NAME_RE.match(name):
            raise BenchInputError(
                f"-L {name}: a parameter name is letters, digits and _ (not starting with a digit)"
            )
        if any(name == n for n, _ in out):
            raise BenchInputError(f"-L {name} is given twice: give all its values in one list")
        values = text.split(",")
        if any(not v for v in values):
            raise BenchInputError(f"-L {name} {text!r}: an empty value (values are a,b,c)")
        out.append((name, values))
    return out


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders of a command, in order, each once."""
    found = [m.group(1) for m in TOKEN_RE.finditer(template) if m.group(1)]
    return list(dict.fromkeys(found))


def substitute(template: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values[m.group(1)]

    return TOKEN_RE.sub(one, template)


def split_command(text: str, what: str = "command") -> tuple[str, ...]:
    """A command string as argv, split the way a POSIX shell splits words (no shell runs)."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise BenchInputError(f"{what} {text!r}: {str(exc).lower()}") from None
    if not argv:
        raise BenchInputError(f"{what} {text!r} is empty")
    return argv


def expand_commands(templates: list[str], lists: list[tuple[str, list[str]]]) -> list[BenchCommand]:
    """Every command, in the order given; a template using lists becomes one command per
    combination of their values (the first ``-L`` varying slowest)."""
    if not templates:
        raise BenchInputError(
            'no command to benchmark: give one or more, e.g. wattlab bench "python a.py" '
            '"python b.py"'
        )
    by_name = dict(lists)
    used: set[str] = set()
    out: list[BenchCommand] = []
    for n, template in enumerate(templates, 1):
        names = placeholders(template)
        unknown = [x for x in names if x not in by_name]
        if unknown:
            raise BenchInputError(
                f"command {n} {template!r} uses {{{unknown[0]}}} but no -L {unknown[0]} V1,V2 "
                "was given (write {{ and }} for literal braces)"
            )
        used.update(names)
        ordered = [name for name, _ in lists if name in names]
        for combo in itertools.product(*(by_name[name] for name in ordered)):
            values = dict(zip(ordered, combo, strict=True))
            text = substitute(template, values)
            out.append(BenchCommand(text, split_command(text), values))
    unused = [name for name, _ in lists if name not in used]
    if unused:
        raise BenchInputError(f"-L {unused[0]} is used by no command (no {{{unused[0]}}} in any)")
    return out


def check_commands(plan: BenchPlan) -> None:
    """Refuse a command (or the ``--prepare`` command) that cannot start, before anything is
    measured; raises profile's CommandNotFound / CommandNotExecutable (exit 127 / 126)."""
    from wattlab.core.run.profile import check_command

    progs = [c.argv[0] for c in plan.commands]
    if plan.prepare is not None:
        progs.append(plan.prepare.argv[0])
    for prog in dict.fromkeys(progs):
        check_command(prog)


def build_plan(
    templates: list[str],
    given_lists: list[tuple[str, str]] | None = None,
    prepare: str | None = None,
    **settings: Any,
) -> BenchPlan:
    """The plan from what the user typed; every mistake is a BenchInputError."""
    commands = expand_commands(templates, parameter_lists(given_lists))
    prep = None
    if prepare is not None:
        if placeholders(prepare):
            raise BenchInputError("--prepare takes no {placeholders}: it runs before every command")
        prep = BenchCommand(prepare, split_command(prepare, "--prepare"))
    return BenchPlan(commands, prepare=prep, **settings)


def round_indices(n: int, k: int) -> list[int]:
    """Round ``k``'s order over ``n`` commands, as indices: the sweep's order (the first
    command is the sweep's baseline), which for two commands is A B, B A, A B, ..."""
    keys = [BASELINE, *(str(i) for i in range(1, n))]
    return [0 if key == BASELINE else int(key) for key in round_order(keys, k)]
