"""Runner processes below a process, as an operator would find them (by their command line):
shared by the tests and the ``stress`` checks."""

from __future__ import annotations

import psutil

RUNNER_MODULE = "orin_console.core.runner.child"
"""What every runner's command line holds (``python -m orin_console.core.runner.child``)."""


def runner_processes(root: int | None = None) -> list[psutil.Process]:
    """Live runner processes (spares included) below process ``root`` (default: this one)."""
    found = []
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        try:
            if RUNNER_MODULE in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found
