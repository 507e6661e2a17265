"""The watchdog on token gaps (issue 8, item 7): a runner that stops answering mid-generation
(SIGSTOP, swapped out, hung) fails its stream with the reason instead of hanging the caller, is
killed, and is reported through ``on_exit`` as a death, so the model is marked failed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from orin_console.core.runner import GenerateRequest, Runner, RunnerDied, tier_config
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

SLOW_TOKENS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}


class _Exits:
    def __init__(self) -> None:
        self.calls: list[RunnerDied | None] = []
        self.event = threading.Event()

    def __call__(self, _runner: Runner, died: RunnerDied | None) -> None:
        self.calls.append(died)
        self.event.set()


def _runner(model: Path, exits: _Exits | None = None, *, first: float = 10.0, gap: float = 1.0) -> Runner:
    cfg = tier_config("swap", str(model), n_ctx=256, n_threads=1)
    return Runner("sleepy", cfg, env=SLOW_TOKENS, on_exit=exits,
                  first_token_timeout_s=first, token_gap_timeout_s=gap)


def test_a_runner_stopped_mid_stream_fails_the_stream_and_is_killed(tiny_model_path: Path) -> None:
    exits = _Exits()
    runner = _runner(tiny_model_path, exits, gap=1.0)
    try:
        runner.start()
        pid = runner.pid
        assert pid is not None
        gen = runner.generate(GenerateRequest(prompt="Hello", max_tokens=200, temperature=0.0))
        # Mid-generation (by the runner's count: random output may be held back as partial UTF-8).
        wait_until(lambda: runner.ping().tokens >= 3, timeout=30, what="a few tokens")
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        with pytest.raises(RunnerDied) as info:
            for _ in gen:
                pass
        took = time.monotonic() - stopped_at
        print(f"the stream failed {took:.2f} s after SIGSTOP (limit 1 s)")
        assert 0.9 <= took < 20  # not before the limit; generous after it
        message = str(info.value)
        assert "runner for `sleepy` stopped answering for 1 s (stopped? swapped out?)" in message
        assert "it was killed, ask again to restart it" in message
        assert "OOM" not in message  # the watchdog's SIGKILL, not the kernel's
        assert exits.event.wait(10)
        died = exits.calls[-1]
        assert died is not None and "stopped answering" in died.reason  # the model is marked failed
        assert runner.died is not None and not runner.alive
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the stopped runner to be reaped")
        runner.start()  # asked again: it restarts
        assert runner.complete(GenerateRequest(prompt="Hi", max_tokens=2)).done
    finally:
        runner.shutdown()


def test_no_first_token_within_its_limit_fails_the_stream(tiny_model_path: Path) -> None:
    runner = _runner(tiny_model_path, first=1.0, gap=30.0)
    try:
        runner.start()
        assert runner.pid is not None
        os.kill(runner.pid, signal.SIGSTOP)  # before the request reaches it
        gen = runner.generate(GenerateRequest(prompt="Hello", max_tokens=20))
        with pytest.raises(RunnerDied, match="stopped answering for 1 s"):
            list(gen)
        assert not runner.alive
    finally:
        runner.shutdown()


def test_silent_tokens_and_slow_consumers_are_not_stalls(tiny_model_path: Path) -> None:
    """A non-streamed request sends no text until it ends, but the runner's ticks keep the
    watchdog quiet; a consumer that reads late is not blamed for the runner's speed."""
    runner = _runner(tiny_model_path, gap=0.4)
    try:
        runner.start()
        final = runner.complete(GenerateRequest(prompt="Hello", max_tokens=60, temperature=0.0))
        assert final.stats is not None
        print(f"non-streamed: {final.stats.tokens} tokens in {final.stats.total_s:.2f} s, gap limit 0.4 s")
        assert final.stats.total_s > 0.8  # long enough that the limit would have tripped
        gen = runner.generate(GenerateRequest(prompt="Hello", max_tokens=30, temperature=0.0))
        assert gen.wait(30)  # the runner finishes while nobody reads, for longer than the limit
        time.sleep(0.5)
        chunks = list(gen)
        assert chunks[-1].done and runner.alive
    finally:
        runner.shutdown()


def test_the_watchdog_measures_from_frames_and_costs_little_per_token() -> None:
    """Without processes: the limit runs from the last frame, ticks count as frames, and the
    stall handler's error reaches the caller; the check adds far less than the 0.2 ms budget."""
    from orin_console.core.runner.generation import Generation, Inbox

    stalls: list[tuple[int, float]] = []

    def on_stall(gen_id: int, limit: float) -> RunnerDied:
        stalls.append((gen_id, limit))
        inbox.put(RunnerDied("m", f"stopped answering for {limit:g} s", None, "SIGKILL"))
        return RunnerDied("m", "never used", None, None)

    inbox = Inbox(7, lambda _id: None, first_frame_s=0.3, frame_gap_s=0.1, on_stall=on_stall)
    gen = Generation("m", inbox)
    inbox.put("a")
    assert next(gen).text == "a"
    for _ in range(4):  # ticks every 50 ms keep a 100 ms limit from tripping
        time.sleep(0.05)
        inbox.touch()
    assert stalls == []
    with pytest.raises(RunnerDied, match=r"stopped answering for 0\.1 s"):
        next(gen)
    assert stalls == [(7, 0.1)]

    n = 20000
    inbox = Inbox(8, lambda _id: None, first_frame_s=120.0, frame_gap_s=30.0, on_stall=on_stall)
    gen = Generation("m", inbox)
    started = time.perf_counter()
    for _ in range(n):
        inbox.put("tok")
        next(gen)
    per_token = (time.perf_counter() - started) / n
    print(f"inbox put + next with the watchdog: {per_token * 1e6:.1f} us per token")
    assert per_token < 0.05e-3


def test_the_watchdog_limits_come_from_the_settings(tmp_path: Path) -> None:
    from orin_console.core.settings import load_settings
    from orin_console.testing.managers import make_manager

    write_tiny_llama(tmp_path / "alpha.gguf", n_ctx=512, ascii_output=True)
    (tmp_path / "models.toml").write_text(
        '[[models]]\nid = "alpha"\npath = "alpha.gguf"\ntasks = ["chat"]\ntier = "swap"\ncontext = 512\n')
    settings = load_settings(env={"ORIN_FIRST_TOKEN_TIMEOUT_S": "7", "ORIN_TOKEN_GAP_TIMEOUT_S": "3"},
                             catalog_path=tmp_path / "models.toml", state_dir=tmp_path / "state")
    with make_manager(tmp_path, settings=settings) as manager:
        manager.load("alpha").result(60)
        runner = manager._model("alpha").runner
        assert runner is not None
        assert (runner.first_token_timeout_s, runner.token_gap_timeout_s) == (7.0, 3.0)
