"""Runner lifecycle (issue 8, item 2): a load can be stopped from another thread, no process
outlives its console or its dropped :class:`Runner`, and every thread a runner starts is joined.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from orin_console.core.cancel import CancelToken
from orin_console.core.runner import GenerateRequest, Runner, RunnerDied, RunnerLoadStopped, tier_config
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
