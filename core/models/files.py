"""Reading the files of a model folder the user gave us, without trusting them.

Two promises live here, shared by every loader (Hugging Face folders, ONNX files, datasets):

- JSON from the user is parsed into a user error, never a traceback: invalid, not UTF-8, nested
  so deep that the parser recurses out (``RecursionError``), or numbers too long for ``int``
  (``ValueError``) all become one sentence naming the file.
- Every file a model folder names (shards of a sharded checkpoint, tokenizer files, ONNX external
  data) resolves inside that folder, symlinks included. A name with ``..`` or an absolute path,
  or a link to a file elsewhere, is refused: otherwise a downloaded folder could make WattLab
  read any file on the machine and present it as the model.
"""

from __future__ import annotations

import json
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


def shown(name: object) -> str:
    """A file name or value as a one-line message shows it: as is when printable, otherwise
    quoted with its newlines and control characters escaped."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception from a library, for a one-line user message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def _hub_blob(folder: Path, target: Path) -> bool:
    """True for the Hugging Face hub cache layout, where ``snapshots/<rev>/name`` is a symlink
    to ``../../blobs/<hash>``: the blobs folder belongs to the same downloaded repository."""
    root = folder.resolve().parent.parent
    if folder.resolve().parent.name != "snapshots":
        return False
    blobs = root / "blobs"
    # blobs must be the repository's own folder: a blobs that is itself a link could point at
    # /etc, and every "blob" would then be a file from anywhere on the machine.
    if blobs.is_symlink() or not blobs.is_dir():
        return False
    return target.parent == blobs


def inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name``, refused with ModelError unless it (and whatever a symlink there points
    to) lies inside ``folder``. ``what`` says who named it, for the message."""
    rel = Path(name)
    if rel.is_absolute() or rel.drive or rel.root or ".." in rel.parts:
        raise ModelError(
            f"{what} names {name!r}, a file outside the model folder: every file a model uses "
            "must be inside its folder"
        )
    path = folder / rel
    try:
        root, target = folder.resolve(), path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise ModelError(
            f"{what} names {name!r}, which cannot be opened: {first_line(exc)}"
        ) from None
    if not target.is_relative_to(root) and not _hub_blob(root, target):
        raise ModelError(
            f"{shown(name)} in {shown(folder.name)} is a link to {shown(target)}, outside the "
            "model folder; copy "
            "the file into the folder instead of linking it"
        )
    return path


def check_inside(folder: Path, path: Path, what: str) -> Path:
    """``path`` (a file in ``folder``, named by WattLab or by the folder) confined as
    :func:`inside` confines names."""
    return inside(folder, str(path.relative_to(folder)), what)
