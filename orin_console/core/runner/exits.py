"""Why a runner ended, in an operator's words, and which of its output lines explain it."""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Sequence

from orin_console.core.text import sanitize

_NOTABLE = re.compile(
    r"GGML_ASSERT|\berror\b|out of memory|\bfatal\b|\babort(ed)?\b|\bfailed\b|\bcannot\b|\bunable\b", re.I
)
_ERROR_LINE = re.compile(r"GGML_ASSERT|\berror\b|out of memory|\bfatal\b|\babort(ed)?\b", re.I)
_WARNING_LINE = re.compile(r"warn|failed", re.I)
_OWN_ABORT = re.compile(r"failed to decode, ret = 2\b|removing memory module entries")
"""What llama.cpp logs when the runner's abort callback stops a decode (a cancel): routine."""

_SIGNAL_REASONS = {
    "SIGKILL": "was killed (SIGKILL) — possibly the kernel's OOM killer: check `dmesg`",
    "SIGABRT": "aborted (SIGABRT) — llama.cpp stops this way on a failed internal check",
    "SIGBUS": "died of a bus error (SIGBUS) — the model file changed or was truncated while mapped",
    "SIGSEGV": "crashed (SIGSEGV)",
    "SIGTERM": "was terminated (SIGTERM)",
}


def describe_exit(returncode: int | None) -> tuple[str, str | None]:
    """Return a human reason for a runner's exit status, and the signal's name if any.

    Args:
        returncode: ``Popen.returncode`` (negative: killed by that signal).

    Returns:
        ``(reason, signal_name)``, e.g. ``("was killed (SIGKILL) — ...", "SIGKILL")``.
    """
    if returncode is None:
        return "stopped answering", None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return _SIGNAL_REASONS.get(name, f"was killed by {name}"), name
    if returncode == 0:
        return "exited unexpectedly (status 0)", None
    return f"exited with status {returncode}", None


def pick_tail(lines: Sequence[str], limit: int = 4) -> list[str]:
    """Return the few output lines that best explain a failure.

    Notable lines (``GGML_ASSERT``, errors, "out of memory", ...) among the recent ones come
    first, then the very last line; without notable lines, the last ``limit`` lines. Each is
    sanitised (:func:`~orin_console.core.text.sanitize`): they end up in error messages.

    Args:
        lines: the runner's recent output, oldest first.
        limit: most lines to return.

    Returns:
        The lines, oldest first.
    """
    recent = [sanitize(line) for line in lines[-40:]]
    notable = [line for line in recent if is_notable(line)]
    if not notable:
        return recent[-limit:]
    picked = notable[-(limit - 1) :] if limit > 1 else []
    if recent[-1] not in picked:
        picked.append(recent[-1])
    return picked[-limit:]


def is_notable(line: str) -> bool:
    """Return whether an output line may explain a failure (an assert, an error, OOM...)."""
    return bool(_NOTABLE.search(line)) and not _OWN_ABORT.search(line)


def log_level_of(line: str) -> int:
    """Return the :mod:`logging` level for one line of a runner's output."""
    if _OWN_ABORT.search(line):
        return logging.DEBUG
    if _ERROR_LINE.search(line):
        return logging.ERROR
    if _WARNING_LINE.search(line):
        return logging.WARNING
    return logging.DEBUG
