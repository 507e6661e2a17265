"""Process-level guards of the ``orin-console`` command: what the environment may do to it.

A command started with a standard stream closed (``>&-``, ``<&-``), writing into a pipe whose
reader has gone (``| head``) or onto a full disk (``> /dev/full``), or with a typo in an
``ORIN_*`` variable, ends with one line saying what and how to fix it, never a traceback.
The decisions (see ``docs/input-errors.md``):

- standard output or error closed: refused before anything is done, exit status 2 (a
  closed descriptor would otherwise be taken by the next file opened, and output meant for
  the terminal would land in it);
- standard input closed: descriptor 0 is filled with ``/dev/null``; only a command that
  reads it (``run -``) refuses, exit status 2;
- the reader of standard output gone: the command stops quietly with exit status 0, as
  ``run`` already did (the reader chose to stop; ``set -o pipefail`` scripts keep working);
- a write failing for lack of space or permission: one line naming it, exit status 2;
- core warnings (logged by ``orin_console.*``) print as one sanitised line each.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from typing import Any, Final, TextIO

from rich.console import Console

from orin_console.core.text import sanitize

PROG: Final = "orin-console"

_ENVIRONMENT_ERRNOS: Final = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space (over the disk quota) or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "check the permissions",
    errno.EPERM: "check the permissions",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.ELOOP: "a symbolic link points back to itself; fix the link",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EISDIR: "the path is a folder; give a file",
}


MIN_WIDTH: Final = 20
"""Narrower than this (``COLUMNS=0`` made Rich print nothing at all, error lines included),
the console lays out for 80 columns and lets the terminal wrap."""


class CliConsole(Console):
    """A Rich console that reports a closed pipe as :class:`BrokenPipeError` (Rich's default
    redirects *standard output* and exits with status 1, even for the standard-error console)
    and never lays out for fewer than :data:`MIN_WIDTH` columns."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.width < MIN_WIDTH:
            self.width = 80

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output has gone")


_stdin_closed = False


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _fill(fd: int, flags: int) -> None:
    """Put ``/dev/null`` on descriptor ``fd`` so no file opened later takes that number."""
    null = os.open(os.devnull, flags)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def check_std_streams() -> str | None:
    """Fill closed standard descriptors with ``/dev/null``; the error when output is closed.

    Returns:
        ``None`` when standard output and error are open, else the one-line error (standard
        input closed is not an error here: the command that needs it says so).
    """
    global _stdin_closed
    closed = [fd for fd in (0, 1, 2) if not _fd_open(fd)]
    for fd in closed:
        _fill(fd, os.O_RDONLY if fd == 0 else os.O_WRONLY)
    if 0 in closed or sys.stdin is None:
        # Python leaves sys.stdin None when started with fd 0 closed; an empty reader instead
        # (not a terminal, so the console refuses cleanly), and the fact is remembered.
        _stdin_closed = True
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the process
    if sys.stdout is None:  # started with fd 1 closed: a writer on the /dev/null just put there
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - as long as the process
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - as long as the process
    for stream in (sys.stdout, sys.stderr):  # e.g. PYTHONIOENCODING=ascii and a model's "é"
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding and encoding != "utf8" and getattr(stream, "errors", "") == "strict" \
                and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    names = [name for fd, name in ((1, "output"), (2, "error")) if fd in closed]
    if not names:
        return None
    which = " and ".join(f"standard {name}" for name in names)
    return (f"{PROG}: error: {which} {'is' if len(names) == 1 else 'are'} closed (started with >&- or 2>&-); "
            "redirect to a file or to /dev/null instead")


def dash_hint(argv: list[str]) -> str:
    """For a usage error: how to pass a file whose name starts with '-' (argparse takes
    ``models add -x.gguf`` for an option and says only that the path is missing)."""
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and (
                "." in arg or os.path.exists(arg)):
            shown = sanitize(arg)[:80]
            return f"; a file name starting with '-' goes after '--' (-- {shown}) or as ./{shown}"
    return ""


def stdin_closed() -> bool:
    """Whether the command was started with standard input closed (``<&-``)."""
    return _stdin_closed


def silence_output(*, stderr: bool = True) -> None:
    """After a closed pipe or a full disk: ``/dev/null`` on standard output (and error), so the
    interpreter's final flush has nowhere to fail and nothing more is said there."""
    streams = ((1, sys.stdout), (2, sys.stderr)) if stderr else ((1, sys.stdout),)
    for fd, stream in streams:
        try:
            _fill(fd, os.O_WRONLY)
        except OSError:  # pragma: no cover - /dev/null always opens
            continue
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.flush()


def environment_error(exc: OSError) -> str | None:
    """The one-line message for an :class:`OSError` the environment caused (a full disk, a
    permission, a bad path), or ``None`` when it is not one of those."""
    fix = _ENVIRONMENT_ERRNOS.get(exc.errno or 0)
    if fix is None:
        return None
    where = f"{sanitize(os.fsdecode(exc.filename))}: " if exc.filename else "cannot write: "
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "error")
    return f"{PROG}: error: {where}{reason.lower() if reason else reason}; {fix}"


def flush_stdout() -> None:
    """Write out what is buffered for standard output now, so a failure is reported by the
    command (exit status 2) and not by the interpreter at exit."""
    if sys.stdout is not None:
        sys.stdout.flush()


class _WarningHandler(logging.Handler):
    """Core warnings as ``orin-console: warning: …``, one sanitised line each."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(logging.WARNING)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        if _handled_below(record.name):
            return  # e.g. the runners' logs, which carry a NullHandler on purpose
        stream = self._stream or sys.stderr
        try:
            text = sanitize(record.getMessage())
            stream.write(f"{PROG}: warning: {text}\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - a warning must never break the command
            pass


def _handled_below(name: str) -> bool:
    """Whether a logger between ``name`` and ``orin_console`` has a handler of its own (it
    would have kept the record from Python's last-resort handler, which this one stands for)."""
    while name.startswith("orin_console."):
        if logging.getLogger(name).handlers:
            return True
        name = name.rpartition(".")[0]
    return False


_HANDLER_NAME: Final = "orin-console-cli-warnings"


def install_log_handler(stream: TextIO | None = None) -> None:
    """Print the core's warnings on standard error, sanitised, unless logging is configured
    (a root handler exists) or the handler is already installed."""
    logger = logging.getLogger("orin_console")
    if logging.getLogger().handlers or any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        return
    handler = _WarningHandler(stream)
    handler.set_name(_HANDLER_NAME)
    logger.addHandler(handler)


class DropLogger(logging.Filter):
    """Drops the records of one logger (and its children) for as long as it is attached: a
    command that reports a failure itself keeps the core's copy of it off the screen."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.prefix = name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == self.prefix or record.name.startswith(self.prefix + "."))


def cli_handlers() -> list[logging.Handler]:
    """The handlers :func:`install_log_handler` installed (for :class:`DropLogger`)."""
    return [h for h in logging.getLogger("orin_console").handlers if h.get_name() == _HANDLER_NAME]
