"""Atomic file writes: readers never see a half-written file, and a failure leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give (0666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` with a temp file beside ``path``, then ``os.replace`` it into place.

    The parent folder is created if needed. The file gets the usual permissions of a new file (mkstemp
    alone would leave it 0600).
    """
    path = Path(path)
    if path.is_dir():
        from difftool.errors import DifftoolError

        raise DifftoolError(f"cannot write {path}: it is a folder (give a file name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
