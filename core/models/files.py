"""Reading the files of a model folder the user gave us, without trusting them.

Two promises live here, shared by every loader (Hugging Face folders, ONNX files, datasets):

- JSON from the user is parsed into a user error, never a traceback (``fileio.read_json``).
- Every file a model folder names (shards of a sharded checkpoint, tokenizer files, ONNX external
  data) resolves inside that folder, symlinks included. A name with ``..`` or an absolute path,
  or a link to a file elsewhere, is refused: otherwise a downloaded folder could make WattLab
  read any file on the machine and present it as the model.
"""

from __future__ import annotations

from pathlib import Path

from wattlab.core.errors import ModelError
from wattlab.core.fileio import first_line


def shown(name: object) -> str:
    """A file name or value as a one-line message shows it: as is when printable, otherwise
    quoted with its newlines and control characters escaped."""
    text = str(name)
    return text if text.isprintable() else repr(text)


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
