"""One core per machine: an exclusive lock on ``<state_dir>/console.lock``.

Two consoles on the same state folder (two ``serve``, ``serve`` and the TUI, ``serve`` and
``run``) would each believe they own the memory budgets and load models past them. The
first takes an exclusive :func:`fcntl.flock` on the lock file and writes who it is (JSON
``{"pid", "started", "address", "kind"}``); a second one fails to take the lock and refuses
to start with :class:`InstanceLocked`, naming the holder (its pid, its command and, when it
serves, its address).

The kernel drops a ``flock`` when its process ends, however it ends (SIGKILL included), so a
stale lock file never blocks a new console: its contents are only a description. The file
is never deleted (deleting it while another process waits on it would let two hold "the"
lock at once). The descriptor is not inherited by runner processes (Python opens files
non-inheritable), so a runner that outlives its console holds nothing.

Commands that load nothing (``plan``, ``models list``) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orin_console.core.errors import OrinError
from orin_console.core.text import sanitize, sanitize_path

__all__ = ["LOCK_NAME", "Holder", "InstanceLock", "InstanceLocked", "hold_instance", "read_holder"]

LOCK_NAME = "console.lock"
_MAX_LOCK_FILE = 4096


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as it wrote itself down."""

    pid: int | None
    started: float | None
    address: str | None
    kind: str | None

    def describe(self) -> str:
        """``"serve (pid 1234, started 2026-01-01 12:00:00, serving http://127.0.0.1:8000)"``."""
        parts = [f"pid {self.pid}" if self.pid is not None else "pid unknown"]
        if self.started is not None:
            parts.append("started " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)))
        if self.address:
            parts.append(f"serving {self.address}")
        return f"{self.kind or 'a console'} ({', '.join(parts)})"


class InstanceLocked(OrinError):
    """Another console holds this state folder's lock.

    Attributes:
        holder: who holds it (None when it has not written itself down yet).
        path: the lock file.
    """

    def __init__(self, path: Path, holder: Holder | None) -> None:
        self.path = path
        self.holder = holder
        who = holder.describe() if holder is not None else "a console that is starting"
        message = (f"another Orin Console already runs on this machine's state folder: {who} holds "
                   f"{sanitize_path(path)}. One console owns the memory budgets; stop it first")
        if holder is not None and holder.address:
            message += f", or use its API at {holder.address}"
        message += ", or give this one another state folder (state_dir / ORIN_STATE_DIR)"
        super().__init__(message)


def _holder_from(text: str) -> Holder | None:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pid, started, address, kind = (data.get(k) for k in ("pid", "started", "address", "kind"))
    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        started=float(started) if isinstance(started, int | float) and not isinstance(started, bool) else None,
        address=sanitize(address)[:200] if isinstance(address, str) else None,
        kind=sanitize(kind)[:40] if isinstance(kind, str) else None,
    )


def read_holder(state_dir: str | os.PathLike[str]) -> Holder | None:
    """What the lock file says (None: no file, or nothing readable in it). Says nothing about
    whether the lock is held: see :meth:`InstanceLock.acquire`."""
    path = Path(state_dir).expanduser() / LOCK_NAME
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_LOCK_FILE)
    except OSError:
        return None
    return _holder_from(raw.decode("utf-8", "replace"))


class InstanceLock:
    """The exclusive lock of one state folder.

    Args:
        state_dir: the settings' ``state_dir`` (created if missing).
        kind: the command holding it (``serve``, ``run``, ``tui``).
        address: the API's address when serving (shown to a refused second console).
    """

    def __init__(self, state_dir: str | os.PathLike[str], kind: str, address: str | None = None) -> None:
        self.path = Path(state_dir).expanduser() / LOCK_NAME
        self.kind = kind
        self.address = address
        self.started = time.time()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> InstanceLock:
        """Take the lock (without waiting) and write who holds it.

        Raises:
            InstanceLocked: another process holds it (the message names it).
            OrinError: the state folder or the lock file cannot be created.
        """
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise OrinError(f"cannot open the console lock {sanitize_path(self.path)}: "
                            f"{sanitize(exc.strerror or str(exc))}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, _MAX_LOCK_FILE, 0)
            os.close(fd)
            raise InstanceLocked(self.path, _holder_from(raw.decode("utf-8", "replace"))) from None
        except OSError as exc:
            os.close(fd)
            raise OrinError(f"cannot lock {sanitize_path(self.path)}: {sanitize(exc.strerror or str(exc))}") from None
        self._fd = fd
        self._write()
        return self

    def set_address(self, address: str | None) -> None:
        """Record the API's address (once the server knows its port)."""
        self.address = address
        if self._fd is not None:
            self._write()

    def _write(self) -> None:
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "started": round(self.started, 3), "address": self.address,
                           "kind": self.kind}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Drop the lock (the file stays; its contents are only a description)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def hold_instance(state_dir: str | os.PathLike[str], kind: str, address: str | None = None) -> Iterator[InstanceLock]:
    """``with hold_instance(settings.state_dir, "serve", "http://127.0.0.1:8000"):`` holds the
    machine's one-console lock for the block (raises :class:`InstanceLocked` when taken)."""
    lock = InstanceLock(state_dir, kind, address)
    with lock:
        yield lock
