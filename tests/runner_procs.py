"""Runner processes of this test process (``runner_processes``, shared with ``stress``), and a
fake machine that sees the runners it loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

from orin_console.core.memory.admission import MachineMemory
from orin_console.testing.processes import runner_processes

__all__ = ["FakeMachine", "marked_processes", "runner_processes"]

if TYPE_CHECKING:
    from orin_console.core.manager.manager import Manager

def marked_processes(mark: str) -> list[psutil.Process]:
    """Processes started with ``ORIN_TEST_MARK=mark`` in their environment (runners inherit it),
    for tests that run the console as a subprocess."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("ORIN_TEST_MARK") == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


class FakeMachine:
    """``MemAvailable`` = ``total`` minus what loaded runners hold, as the kernel would show it.

    A runner's memory becomes visible once its load has settled (the scheduler's reservation is
    no longer in flight), which is when the real ``MemAvailable`` shows it too; until then the
    scheduler must subtract it itself. Deterministic: no real measurement is involved.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.manager: Manager | None = None

    def __call__(self) -> MachineMemory:
        visible = 0
        if self.manager is not None:
            # Called under the scheduler's lock: read its reservations directly.
            visible = sum(r.bytes for r in self.manager.scheduler._held if not r.in_flight)
        return MachineMemory(mem_available=self.total - visible, swap_free=0)
