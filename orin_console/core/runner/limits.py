"""The runner process's own limits: its ``oom_score_adj`` and its ``RLIMIT_MEMLOCK``.

Set by the runner (:mod:`.host`) before it loads a model; a refusal is a note for the
operator, never fatal. What the values should be is decided in :mod:`.tiers`; the console
reads its own ``oom_score_adj`` here too (a runner's is always above it).
"""

from __future__ import annotations

import contextlib
import resource

from orin_console.core.runner.tiers import format_limit


def set_oom_score_adj(value: int) -> tuple[int | None, str | None]:
    """Write ``/proc/self/oom_score_adj``; return the value read back and any problem."""
    problem = None
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as f:
            f.write(str(value))
    except OSError as exc:
        problem = f"could not set oom_score_adj to {value}: {exc.strerror or exc}"
    read_back = read_oom_score_adj()
    if read_back is None:
        return None, problem or "oom_score_adj is not readable on this system"
    return read_back, problem


def read_oom_score_adj() -> int | None:
    """This process's ``oom_score_adj`` (the console's, or a runner's); None when unreadable."""
    try:
        with open("/proc/self/oom_score_adj", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def raise_memlock(target: int | None) -> str | None:
    """Raise ``RLIMIT_MEMLOCK``: to the hard limit, or to ``target`` bytes (-1: unlimited).

    Returns:
        A note for the operator when the requested raise was refused, else None.
    """
    inf = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if target is None:
        if soft != inf and (hard == inf or soft < hard):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        return None
    want = inf if target < 0 else target
    new_hard = hard if hard == inf or (want != inf and want <= hard) else want
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (want, new_hard))
    except (ValueError, OSError) as exc:
        shown = format_limit(None if want == inf else want)
        return f"could not raise RLIMIT_MEMLOCK to {shown} (needs CAP_SYS_RESOURCE): {exc}"
    return None


def memlock_soft_limit() -> int | None:
    """The ``RLIMIT_MEMLOCK`` soft limit in bytes; None when unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)

