"""Files in and out: user JSON read into one user error, and atomic writes.

JSON a user gives (config.json, settings.json, a JSONL line) is parsed into a ``UserError``,
never a traceback: invalid, not UTF-8, nested so deep that the parser recurses out
(``RecursionError``), or numbers too long for ``int`` (``ValueError``) all become one sentence
naming the file.

Atomic writes: a report is either complete on disk or not there at all.

Write to a temporary file in the destination folder, fsync, then ``os.replace`` (atomic on
POSIX and Windows). A full disk or a crash mid-write leaves the old file (or nothing), never half
a CSV that a user's script would silently read.

The file gets the mode ``open()`` would give it: an existing file's own mode, a new file
``0o666`` less the umask (``mkstemp`` alone would leave every report ``0o600``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wattlab.core.errors import ModelError, UserError


def read_json(path: Path, label: str, error: type[UserError] = ModelError) -> Any:
    """``path`` parsed as JSON, or ``error`` saying why not; ``label`` is how the message names
    the file (e.g. "config.json next to model.onnx")."""
    try:
        return loads(path.read_text(encoding="utf-8"), label, error)
    except UnicodeDecodeError as exc:
        raise error(f"{label} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise error(f"{label} could not be read: {exc.strerror or exc}") from None


def loads(text: str, label: str, error: type[UserError] = ModelError) -> Any:
    """``json.loads`` with every way user text can fail turned into ``error`` naming ``label``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{label} is nested too deeply to be read as JSON") from None
    except json.JSONDecodeError as exc:
        raise error(f"{label} is not valid JSON: {first_line(exc)}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise error(f"{label} is not usable JSON: {first_line(exc, 120)}") from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception from a library, for a one-line user message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class OutputError(OSError):
    pass


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask. Linux shows it in /proc without changing it; elsewhere it is read by
    setting and restoring it: set to 0o077 meanwhile, so a file another thread creates in that
    instant is only ever more private, never world-writable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing file's, or 0o666
    less the umask for a new one."""
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode)
    return 0o666 & ~current_umask()


def _make_parent(path: Path) -> None:
    """The destination's folder, or an OutputError naming the file that is in the way."""
    for candidate in (path.parent, *path.parent.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OutputError(f"cannot write {path}: {candidate} is a file, not a folder")
            break
    path.parent.mkdir(parents=True, exist_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        _make_parent(path)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            else:  # Windows before Python 3.13
                os.chmod(tmp, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    write_text_atomic(path, buf.getvalue())
