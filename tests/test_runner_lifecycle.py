"""Runner lifecycle (issue 8, item 2): a load can be stopped from another thread, no process
outlives its console or its dropped :class:`Runner`, and every thread a runner starts is joined.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import psutil
import pytest

from orin_console.core.cancel import CancelToken
from orin_console.core.runner import (
    GenerateRequest,
    Runner,
    RunnerDied,
    RunnerError,
    RunnerLoadStopped,
    SpareRunners,
    tier_config,
)
from orin_console.core.runner.spares import launch_child
from orin_console.testing.waits import wait_until

SLOW_LOAD = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_LOAD_DELAY_S": "60"}


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class _Load:
    """``runner.start()`` on a thread of its own; records what it returned or raised."""

    def __init__(self, runner: Runner, cancel: CancelToken | None = None) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(cancel,), name="test-load")
        self.thread.start()

    def _run(self, cancel: CancelToken | None) -> None:
        try:
            self.runner.start(cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        self.ended_at = time.monotonic()

    def wait_loading(self) -> int:
        """Wait until the runner reports it is loading; return its pid."""
        r = self.runner
        wait_until(lambda: r.alive and r.ping().state == "loading", timeout=30, what="the load to begin")
        assert r.pid is not None
        return r.pid

    def join(self) -> BaseException | None:
        self.thread.join(30)
        assert not self.thread.is_alive(), "start() did not return"
        return self.error


@pytest.mark.parametrize("how", ["kill", "shutdown", "cancel"])
def test_a_load_is_stopped_from_another_thread(tiny_model_path: Path, how: str) -> None:
    exits: list[RunnerDied | None] = []
    cfg = tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1)
    runner = Runner("slow", cfg, env=SLOW_LOAD, on_exit=lambda _r, died: exits.append(died))
    token = CancelToken()
    load = _Load(runner, token)
    pid = load.wait_loading()
    stopped_at = time.monotonic()
    if how == "kill":
        runner.kill()
    elif how == "shutdown":
        runner.shutdown()
    else:
        token.cancel("the operator pressed escape")
    error = load.join()
    took = load.ended_at - stopped_at
    print(f"start() raised {took * 1000:.0f} ms after the {how}")
    assert took < 10  # generous: the load itself would take 60 s
    assert isinstance(error, RunnerLoadStopped), error
    assert "was stopped" in str(error) and "`slow`" in str(error)
    if how == "cancel":
        assert "the operator pressed escape" in str(error)
    assert _gone(pid) and not runner.alive
    assert exits == [None]  # ended by the console, not a death
    assert runner.load_result is None


def test_a_cancelled_token_starts_no_process(tiny_model_path: Path) -> None:
    token = CancelToken()
    token.cancel("gone")
    runner = Runner("never", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1))
    with pytest.raises(RunnerLoadStopped, match="cancelled: gone"):
        runner.start(cancel=token)
    assert runner.pid is None


def test_a_stop_after_the_load_is_a_plain_kill(tiny_model_path: Path) -> None:
    """A token cancelled after start() returned does nothing; the runner is loaded and usable,
    and the next start() is not stopped by an earlier kill."""
    token = CancelToken()
    runner = Runner("fine", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1))
    try:
        runner.start(cancel=token)
        token.cancel()
        assert runner.alive
        runner.kill()
        runner.start()
        assert runner.complete(GenerateRequest(prompt="hi", max_tokens=2)).done
    finally:
        runner.shutdown()


# -- the console's death ------------------------------------------------------------------

_CONSOLE = """
import os, subprocess, sys, threading, time
from orin_console.core.runner import Runner, tier_config
runner = Runner("orphan", tier_config("swap", sys.argv[1], n_ctx=128, n_threads=1))
# Started from a thread that then ends: the runner must outlive that thread (the parent-death
# signal follows the forking thread, which is why one long-lived thread forks every runner).
starter = threading.Thread(target=runner.start)
starter.start()
starter.join()
assert runner.ping().state == "idle"
holder = 0
if sys.argv[2] == "hold":
    # A process that keeps the console's end of the channel open: no end of file reaches the
    # runner, so only the parent-death signal can end it.
    fd = runner._writer._sock.fileno()
    os.set_inheritable(fd, True)
    holder = subprocess.Popen(["sleep", "120"], pass_fds=(fd,)).pid
assert runner.ping().state == "idle"
print(runner.pid, holder, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("hold", ["hold", "plain"])
def test_runners_die_with_a_console_killed_by_sigkill(tiny_model_path: Path, hold: str) -> None:
    console = subprocess.Popen([sys.executable, "-c", _CONSOLE, str(tiny_model_path), hold],
                               stdout=subprocess.PIPE, text=True)
    holder = 0
    try:
        assert console.stdout is not None
        line = console.stdout.readline()
        assert line, "the console did not start its runner"
        runner_pid, holder = (int(x) for x in line.split())
        assert not _gone(runner_pid)
        console.kill()
        console.wait()
        killed_at = time.monotonic()
        wait_until(lambda: _gone(runner_pid), timeout=5, interval=0.02, what="the orphaned runner to exit")
        print(f"runner gone {(time.monotonic() - killed_at) * 1000:.0f} ms after the console's SIGKILL")
        if holder:
            assert not _gone(holder)  # the channel really stayed open
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
        if holder:
            os.kill(holder, signal.SIGKILL)


def test_a_runner_exits_on_end_of_file_while_loading_and_as_a_spare(tiny_model_path: Path) -> None:
    """Without the parent-death signal's help (the console lives on), closing the channel
    ends a runner that is loading and a spare that waits for a model: they exit by themselves
    (status 0), not by the console's kill."""
    proc, sock = launch_child(sys.executable, (), {}, "spare", preload=True)
    sock.close()
    assert proc.wait(10) == 0
    assert proc.stdout is not None
    proc.stdout.close()

    cfg = tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1)
    runner = Runner("eof", cfg, env=SLOW_LOAD)
    load = _Load(runner)
    load.wait_loading()
    runner._writer._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    error = load.join()
    assert isinstance(error, RunnerError) and not isinstance(error, RunnerLoadStopped)
    assert runner.returncode == 0  # it left on its own


# -- threads and a dropped runner ------------------------------------------------------------


def _runner_threads(model_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"runner-{model_id}-")]


def test_shutdown_and_kill_join_the_runners_threads(tiny_model_path: Path) -> None:
    cfg = tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1)
    runner = Runner("joined", cfg)
    runner.start()
    assert len(_runner_threads("joined")) == 2  # the channel reader and the stderr reader
    runner.shutdown()
    assert _runner_threads("joined") == []
    runner.start()
    runner.kill()
    assert _runner_threads("joined") == []


def test_a_dropped_runner_takes_its_process_and_threads_with_it(tiny_model_path: Path) -> None:
    cfg = tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1)
    runner = Runner("dropped", cfg)
    runner.start()
    pid = runner.pid
    assert pid is not None
    ref = weakref.ref(runner)
    del runner
    gc.collect()
    assert ref() is None, "something still holds the dropped runner"
    wait_until(lambda: _gone(pid), timeout=5, what="the dropped runner's process to end")
    wait_until(lambda: not _runner_threads("dropped"), timeout=5, what="its threads to end")


def test_closing_the_spares_joins_the_thread_starting_one() -> None:
    spares = SpareRunners(sys.executable)
    spares.close()  # at once, while the first spare may still be starting
    assert not [t for t in threading.enumerate() if t.name == "runner-spare"]
    assert spares._spare is None
