"""A runner that dies or cannot load is a model-level error (DESIGN.md, "Model runners").

SIGKILL mid-stream, abort (test hook), a plain exit, a model file deleted or truncated before
load, the console's own death: every time the caller gets the reason at once (no hang), the
console and the other runners carry on, and the model can be started again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orin_console.core.runner import (
    GenerateRequest,
    Runner,
    RunnerDied,
    RunnerError,
    RunnerLoadError,
    tier_config,
)
from orin_console.testing.waits import wait_until

HOOKS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}
LONG = GenerateRequest(prompt="Hello", max_tokens=200, temperature=0.0)


class ExitWatch:
    """Records ``on_exit`` calls; ``wait()`` blocks on an event, not a sleep."""

    def __init__(self) -> None:
        self.calls: list[RunnerDied | None] = []
        self.event = threading.Event()

    def __call__(self, runner: Runner, died: RunnerDied | None) -> None:
        self.calls.append(died)
        self.event.set()

    def wait(self) -> RunnerDied | None:
        assert self.event.wait(10), "on_exit was not called"
        self.event.clear()
        return self.calls[-1]


def _runner(model: Path, name: str, watch: ExitWatch | None = None, hooks: bool = True) -> Runner:
    cfg = tier_config("swap", str(model), n_ctx=256, n_threads=1)
    return Runner(name, cfg, on_exit=watch, env=HOOKS if hooks else None)


def _wait_for_tokens(r: Runner, n: int) -> None:
    wait_until(lambda: r.ping().tokens >= n, timeout=10, interval=0.005, what=f"{r.model_id} to produce {n} tokens")


def test_sigkill_mid_stream_fails_the_stream_with_the_reason(tiny_model_path: Path) -> None:
    watch = ExitWatch()
    victim = _runner(tiny_model_path, "victim", watch)
    bystander = _runner(tiny_model_path, "bystander")
    try:
        victim.start()
        bystander.start()
        gen = victim.generate(LONG)
        _wait_for_tokens(victim, 2)
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        with pytest.raises(RunnerDied) as info:
            for _ in gen:
                pass
        assert time.monotonic() - killed_at < 2.0  # promptly, not after a timeout
        err = info.value
        assert err.signal_name == "SIGKILL" and err.returncode == -signal.SIGKILL
        assert "SIGKILL" in str(err) and "OOM killer" in str(err) and "dmesg" in str(err)
        assert err.model_id == "victim"
        died = watch.wait()
        assert died is not None and died.signal_name == "SIGKILL"
        assert victim.died is not None and not victim.alive
        with pytest.raises(RunnerDied, match="SIGKILL"):
            victim.generate(LONG)  # later calls get the same reason
        # The console and the other model carry on.
        assert bystander.complete(GenerateRequest(prompt="Hi", max_tokens=3)).done
        # The model can be started again.
        victim.start()
        assert victim.alive and victim.died is None
        assert victim.complete(GenerateRequest(prompt="Hi", max_tokens=3)).done
    finally:
        victim.shutdown()
        bystander.shutdown()


def test_abort_mid_stream_reports_abort_and_stderr(tiny_model_path: Path) -> None:
    watch = ExitWatch()
    r = _runner(tiny_model_path, "aborter", watch)
    try:
        r.start()
        gen = r.generate(LONG)
        _wait_for_tokens(r, 1)
        r.test_hook("abort")
        with pytest.raises(RunnerDied) as info:
            list(gen)
        err = info.value
        assert err.signal_name == "SIGABRT" and "aborted" in err.reason
        assert any("abort requested by a test hook" in line for line in err.stderr_tail)
        assert "abort requested by a test hook" in str(err)
        assert watch.wait() is not None
        r.start()
        assert r.ping().state == "idle"
    finally:
        r.shutdown()


def test_plain_exit_is_reported_with_its_status(tiny_model_path: Path) -> None:
    watch = ExitWatch()
    r = _runner(tiny_model_path, "exiter", watch)
    try:
        r.start()
        r.test_hook("exit", code=3)
        died = watch.wait()
        assert died is not None and died.returncode == 3 and died.signal_name is None
        assert "exited with status 3" in str(died)
        with pytest.raises(RunnerDied, match="status 3"):
            r.stats()
    finally:
        r.shutdown()


def test_test_hooks_are_refused_without_the_variable(tiny_model_path: Path) -> None:
    r = _runner(tiny_model_path, "no-hooks", hooks=False)
    try:
        r.start()
        with pytest.raises(RunnerError, match="test hooks are off"):
            r.test_hook("abort")
        assert r.alive and r.ping().state == "idle"
    finally:
        r.shutdown()


def test_deleted_model_file_is_a_clean_load_error(tiny_model_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "gone.gguf"
    shutil.copy(tiny_model_path, model)
    watch = ExitWatch()
    r = _runner(model, "gone", watch)
    model.unlink()
    with pytest.raises(RunnerLoadError, match="not found") as info:
        r.start()
    assert "gone.gguf" in str(info.value)
    assert watch.wait() is None and not r.alive  # ended by the console, not a death
    shutil.copy(tiny_model_path, model)
    r.start()  # the file is back: the same runner starts
    try:
        assert r.complete(GenerateRequest(prompt="Hi", max_tokens=2)).done
    finally:
        r.shutdown()


def test_truncated_model_file_is_a_clean_error(tiny_model_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "short.gguf"
    data = tiny_model_path.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    watch = ExitWatch()
    r = _runner(model, "short", watch)
    with pytest.raises(RunnerLoadError, match=r"llama.cpp could not load") as info:
        r.start()
    # llama.cpp's own words about the file, e.g. "... data is not within the file bounds".
    assert str(model) in str(info.value) and info.value.stderr_tail
    assert watch.wait() is None and not r.alive


def test_runner_exits_when_the_console_dies(tiny_model_path: Path) -> None:
    """A console killed without shutting down must not leave runners holding memory."""
    code = (
        "import os, sys\n"
        "from orin_console.core.runner import Runner, tier_config\n"
        f"r = Runner('orphan', tier_config('swap', {str(tiny_model_path)!r}, n_ctx=128, n_threads=1))\n"
        "r.start()\n"
        "print(r.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.strip())
    wait_until(lambda: not _running(pid), timeout=10, what="the orphaned runner to exit")


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (exited, waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_on_exit_may_restart_the_runner(tiny_model_path: Path) -> None:
    """The manager's "restart on death" from inside the callback, without deadlock."""
    restarted = threading.Event()

    def on_exit(r: Runner, died: RunnerDied | None) -> None:
        if died is not None:
            r.start()
            restarted.set()

    r = Runner("phoenix", tier_config("swap", str(tiny_model_path), n_ctx=128, n_threads=1), on_exit=on_exit)
    try:
        first = r.start().pid
        os.kill(first, signal.SIGKILL)
        assert restarted.wait(10)
        assert r.alive and r.pid != first
        assert r.complete(GenerateRequest(prompt="Hi", max_tokens=2)).done
    finally:
        r.shutdown()
    assert not r.alive


def test_max_tokens_holds_when_text_is_held_back(tmp_path) -> None:
    """Random bytes are held back by llama-cpp-python as incomplete UTF-8, which makes it skip
    its own max_tokens check; the runner's hook still ends the generation for length."""
    from orin_console.core.runner import GenerateRequest, Runner, tier_config
    from orin_console.testing.tiny_models import write_tiny_llama

    path = write_tiny_llama(tmp_path / "bytes.gguf", n_ctx=256, seed=3)
    with Runner("bytes", tier_config("swap", str(path), n_ctx=256, n_threads=1)) as runner:
        runner.start()
        final = runner.complete(GenerateRequest(prompt="count", max_tokens=60, temperature=0.0))
        assert final.stats is not None
        assert final.stats.finish_reason == "length"
        assert final.stats.tokens <= 60
        # Asking for more than the context holds ends at the context, not in a decode error.
        final = runner.complete(GenerateRequest(prompt="count", max_tokens=5000, temperature=0.0))
        assert final.stats is not None and final.stats.finish_reason == "length"
