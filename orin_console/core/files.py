"""Crash-safe file replacement: write a temp file beside the target, fsync, rename, fsync dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old or the new file.

    The temp file lives in the same folder (a rename across file systems is not atomic), is
    flushed and fsynced before the rename, and the folder is fsynced after it so the rename
    itself survives a power cut. The original file's permission bits are kept.

    Args:
        path: the file to replace (created when absent).
        text: the complete new contents.
        encoding: text encoding.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    data = text.encode(encoding)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
