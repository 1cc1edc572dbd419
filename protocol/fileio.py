"""Output files, one rule everywhere: missing folders are created; a file is written atomically (a temporary
file in the same folder, fsync, then ``os.replace``); a path that cannot be written is an InputError naming the
path and the reason (the CLIs exit 2 with it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError


def ensure_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` and its parents when missing."""
    folder = Path(path) if str(path) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the {what} {folder}: {e.strerror or e}") from None
    return folder


def ensure_parent(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` will be written to (the CLIs call this before the work, so a path that
    cannot be written is refused before a long run, not after it)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {path}: cannot create its folder {folder}: {e.strerror or e}") from None
    return folder


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int = 0o644) -> None:
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = ensure_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
