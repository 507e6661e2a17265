"""Soak (issue 11, part 6), the short version: mixed API traffic against a live
``orin-console serve``, resource counts from /proc, no runner left after SIGTERM or SIGKILL.

Asserts correctness with generous bounds, never timing; the long run and its figures are
``python -m stress.soak --minutes 30`` (docs/reliability-soak.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orin_console.testing.waits import wait_until
from stress.soak import IDS, marked_processes, run

MiB = 1024 * 1024


def test_marked_processes_finds_children_by_their_environment_and_skips_zombies() -> None:
    mark = f"unit-{os.getpid()}"
    env = {**os.environ, "ORIN_TEST_MARK": mark}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    exited = subprocess.Popen([sys.executable, "-c", "pass"], env=env)
    try:  # not reaped yet: a zombie until wait()
        wait_until(lambda: Path(f"/proc/{exited.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   timeout=10, what="the child to exit")
        found = marked_processes(mark)
        assert [p["pid"] for p in found] == [sleeper.pid]
        assert found[0]["ppid"] == os.getpid() and found[0]["runner"] is False
    finally:
        sleeper.kill()
        sleeper.wait(10)
        exited.wait(10)
    assert marked_processes(mark) == []


def test_a_short_soak_leaks_nothing_and_leaves_no_runner(tmp_path: Path) -> None:
    figures = run(True, 11, folder=tmp_path, minutes=0.15, settle_s=1.0)
    by_kind = figures["by_kind"]
    assert figures["server_errors"] == [] and figures["server_error_count"] == 0
    assert figures["transport_errors"] == []
    assert by_kind.get("generate", {}).get("200", 0) > 0 and by_kind.get("stream", {}).get("200", 0) > 0
    assert sum(by_kind.get(k, {}).get("202", 0) for k in ("load", "move", "unload")) > 0
    assert figures["samples"] >= 5
    print("runners killed by the watchdog:", figures["watchdog_kills"])  # a figure, not a goal
    for point in ("checkpoint_warm", "checkpoint_end"):  # every model unloaded, nothing busy or queued
        if not figures[point]["settled"]:
            print("\n".join(figures["server_log_tail"]))  # the server's thread stacks (shown on failure)
        assert figures[point]["settled"], (point, figures[point]["stuck"])
    growth = figures["growth"]
    assert growth["children"] <= 0 and growth["runners"] <= 0  # no runner piles up
    assert growth["fds"] <= 4 and growth["threads"] <= 8  # generous: the long run's goal is 0
    assert growth["rss"] <= 64 * MiB
    assert figures["sigterm"]["exit_status"] == 0 and figures["sigterm"]["left"] == []
    kill = figures["sigkill"]
    assert kill["runners_before"] >= len(IDS)  # every model had a runner when the server died
    assert kill["left"] == []  # each died with its parent (PDEATHSIG), none re-parented to init
