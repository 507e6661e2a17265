"""Files a user can touch: bounded reads, crash-safe replacement, and a lock for edits.

Every file the console reads on its own (the catalog, the config file, the state files)
goes through :func:`read_regular_file` or :func:`read_text_file`, which refuse what is not a
regular file (a FIFO would hang the reader, ``/dev/zero`` would fill memory) and anything
over a stated size, before reading a byte of it. Every file it writes goes through
:func:`atomic_write_text`, which writes through a symbolic link to its target. Edits that
read, change and write a shared file hold :func:`exclusive_lock` so two processes never
lose each other's change.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize_path
from orin_console.core.units import MB, format_size

__all__ = [
    "CONFIG_FILE_LIMIT",
    "DISK_FULL_ERRNOS",
    "STATE_FILE_LIMIT",
    "DiskFull",
    "FileSaveError",
    "atomic_write_text",
    "exclusive_lock",
    "lock_path",
    "read_regular_file",
    "read_text_file",
    "remove_stale_temp_files",
]

CONFIG_FILE_LIMIT: Final = 1 * MB
"""The largest catalog or config file read (a thousand models with checksums take about 250 KB)."""

STATE_FILE_LIMIT: Final = 4 * MB
"""The largest state file read (usage.json, measurements.json; each is a few KB)."""

_KINDS: Final = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(
    path: str | os.PathLike[str],
    *,
    limit_bytes: int,
    what: str,
    error: type[OrinError] = OrinError,
) -> bytes:
    """Return the bytes of a regular file no larger than ``limit_bytes``.

    The file is opened with ``O_NONBLOCK`` (so a FIFO cannot hang the open), the opened
    descriptor is checked with ``fstat`` (so the check and the read concern the same file),
    and at most ``limit_bytes + 1`` bytes are read (so a file that grows meanwhile is still
    refused). A symbolic link is followed to its target.

    Args:
        path: the file.
        limit_bytes: the largest size accepted.
        what: the file in the operator's words, for messages (``"catalog"``).
        error: the :class:`OrinError` subclass to raise (``CatalogError``...).

    Raises:
        FileNotFoundError: the file does not exist (callers decide what absence means).
        OrinError: of type ``error``: not a regular file, over the limit, or unreadable.
    """
    shown = sanitize_path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{shown}: cannot open the {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(
                f"{shown}: the {what} is {_kind(st.st_mode)}, not a regular file; "
                f"point it at a regular file"
            )
        too_big = error(
            f"{shown}: the {what} is larger than the limit of {format_size(limit_bytes)} "
            f"({limit_bytes} bytes) for a {what}; point at the right file or make it smaller"
        )
        if st.st_size > limit_bytes:
            raise too_big
        chunks: list[bytes] = []
        left = limit_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise too_big
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{shown}: cannot read the {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text_file(
    path: str | os.PathLike[str],
    *,
    limit_bytes: int,
    what: str,
    error: type[OrinError] = OrinError,
) -> str:
    """Return a regular file's text, decoded as strict UTF-8 (see :func:`read_regular_file`).

    Raises:
        FileNotFoundError: the file does not exist.
        OrinError: of type ``error``: as :func:`read_regular_file`, or the bytes are not
            UTF-8 (the message names the byte offset).
    """
    data = read_regular_file(path, limit_bytes=limit_bytes, what=what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{sanitize_path(path)}: the {what} is not valid UTF-8 (byte offset {exc.start}: "
            f"{data[exc.start:exc.start + 4]!r}); save it as UTF-8"
        ) from None


def _real_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` must replace: a symbolic link's final target."""
    return Path(os.path.realpath(path))


class FileSaveError(OrinError, OSError):
    """A file could not be saved (disk full, read-only file system, no permission...).

    An :class:`OrinError` (front ends show its message, the CLI exits with status 2) and an
    :class:`OSError` (code that already treats a failed save as an ``OSError`` keeps working);
    ``errno`` is the system's error number. The file on disk is unchanged when it is raised.
    """

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


class DiskFull(FileSaveError):
    """A file (or its lock file) could not be written because the file system that holds it
    is full (``ENOSPC``) or the disk quota is used up (``EDQUOT``): the fix is to free space
    there, not to change the request. The API answers it with 507 Insufficient Storage.
    """


DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The system errors that mean "no space left" (:class:`DiskFull`)."""


_SAVE_FIXES: Final = {
    errno.ENOSPC: "no space left on the file system that holds {folder}; free some space there "
                  "(or put the {what} on another file system) and retry",
    errno.EDQUOT: "the disk quota for {folder} is used up; free some space or raise the quota, then retry",
    errno.EROFS: "{folder} is on a read-only file system; remount it read-write or put the {what} elsewhere",
    errno.EACCES: "no permission to write in {folder}; check the folder's owner and permissions",
    errno.EPERM: "the system does not permit writing in {folder}; check the folder's owner and permissions",
    errno.EFBIG: "the file system that holds {folder} refuses a file this large",
}


def _save_error(path: str | os.PathLike[str], folder: Path, what: str, exc: OSError) -> FileSaveError:
    problem = exc.strerror or str(exc)
    fix = _SAVE_FIXES.get(exc.errno or 0)
    code = errno.errorcode.get(exc.errno or 0)
    detail = f"{problem} ({code})" if code else problem
    advice = fix.format(folder=sanitize_path(folder), what=what) if fix else "check the folder and retry"
    kind = DiskFull if exc.errno in DISK_FULL_ERRNOS else FileSaveError
    return kind(
        f"{sanitize_path(path)}: cannot save the {what}: {detail}; {advice}. "
        f"The {what} on disk is unchanged (nothing was lost).",
        exc.errno,
    )


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *, what: str = "file", locked: bool = False
) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old or the new file.

    When ``path`` is a symbolic link, its target is replaced and the link stays a link
    (renaming over the link would turn it into a plain file and leave the target stale). The
    temp file lives in the target's folder (a rename across file systems is not atomic), is
    flushed and fsynced before the rename, and the folder is fsynced after it so the rename
    itself survives a power cut. The original file's permission bits are kept.

    Args:
        path: the file to replace (created when absent).
        text: the complete new contents.
        encoding: text encoding.
        what: the file in the operator's words, for messages (``"catalog"``).
        locked: the caller holds :func:`exclusive_lock` on ``path`` (as every writer of the
            catalog does): temp files that killed saves left behind are removed first (see
            :func:`remove_stale_temp_files`), so they cannot pile up.

    Raises:
        FileSaveError: the temp file could not be created, written, synced or renamed (a full
            disk, a read-only file system...): the message names the problem and the fix; the
            old file is untouched and the temp file is removed. :class:`DiskFull` (a subclass)
            when the file system is full or the quota used up.
    """
    target = _real_target(path)
    folder = target.parent
    data = text.encode(encoding)
    if locked:
        remove_stale_temp_files(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _save_error(path, folder, what, exc) from None
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
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _save_error(path, folder, what, exc) from None
        raise
    # The new file is in place; a folder that cannot be synced (some file systems refuse
    # fsync on a directory) only weakens the guarantee against a power cut.
    with suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temp_files(path: str | os.PathLike[str]) -> int:
    """Remove the temp files that interrupted saves of ``path`` left beside its real target.

    :func:`atomic_write_text` removes its temp file on every error, but a process killed
    during a save (SIGKILL, a power cut) leaves ``.NAME.XXXXXXXX.tmp`` behind, one per kill.
    Call this only while holding :func:`exclusive_lock` on ``path``: every writer of the file
    holds that lock, so any such file is an orphan. Files that cannot be removed are left.

    Returns:
        How many were removed.
    """
    target = _real_target(path)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    removed = 0
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for name in names:
        if pattern.fullmatch(name):
            with suppress(OSError):
                os.unlink(target.parent / name)
                removed += 1
    return removed


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file guarding edits of ``path``: ``.NAME.lock`` beside its real target.

    The lock is a separate file because the file itself is replaced by a rename on every
    write (a lock on the old inode would guard nothing), and it sits beside the link's
    target so that two links to one catalog share one lock.
    """
    target = _real_target(path)
    return target.parent / f".{target.name}.lock"


@contextmanager
def exclusive_lock(
    path: str | os.PathLike[str],
    *,
    what: str,
    timeout_s: float = 30.0,
    error: type[OrinError] = OrinError,
) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on :func:`lock_path` of ``path`` for a read-change-write.

    Processes (and threads with their own descriptors) that edit the same file wait for
    each other; an edit holds the lock for milliseconds. The lock file is left in place
    (removing it would race with a process about to lock it).

    Args:
        path: the file about to be edited.
        what: the file in the operator's words, for messages.
        timeout_s: how long to wait for another editor before giving up.
        error: the :class:`OrinError` subclass to raise.

    Yields:
        The lock file's path.

    Raises:
        OrinError: of type ``error``: the lock file cannot be opened, or another process
            held the lock for longer than ``timeout_s``.
        DiskFull: the lock file cannot be created because the file system is full.
    """
    lock = lock_path(path)
    shown = sanitize_path(lock)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        fix = _SAVE_FIXES.get(exc.errno or 0, "check the folder's permissions")
        message = (f"{shown}: cannot open the lock file for the {what}: "
                   f"{exc.strerror or exc}; {fix.format(folder=sanitize_path(lock.parent), what=what)}; "
                   f"the {what} is unchanged")
        if exc.errno in DISK_FULL_ERRNOS:  # no inode left: the same problem and fix as a full disk
            raise DiskFull(message, exc.errno) from None
        raise error(message) from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise error(f"{shown}: cannot lock the {what}: {exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise error(
                    f"{sanitize_path(path)}: another process has been editing the {what} for "
                    f"over {timeout_s:g} s (lock {shown}); let it finish or stop it, then retry"
                )
            time.sleep(0.02)
        yield lock
    finally:
        os.close(fd)  # closing the descriptor releases the lock
