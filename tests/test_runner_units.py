"""The runner's pure parts: framing, request validation, tier settings, lock and exit reports."""

from __future__ import annotations

import logging
import signal
import socket
import struct
import threading
import time

import pytest

from orin_console.core.runner import (
    CPU_ONLY_NOTE,
    GenerateRequest,
    GenerationStats,
    LoadResult,
    RunnerConfig,
    RunnerDied,
    describe_exit,
    memlock_fix,
    pick_tail,
    tier_config,
)
from orin_console.core.runner.exits import log_level_of
from orin_console.core.runner.protocol import (
    HEADER,
    KIND_JSON,
    MAX_FRAME,
    ChannelClosed,
    FrameError,
    FrameReader,
    FrameWriter,
)
from orin_console.core.runner.tiers import (
    assess_pin,
    child_oom_score_adj,
    format_limit,
    has_ipc_lock,
    locked_bytes_from_status,
)

MB = 1024 * 1024


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


# -- protocol ---------------------------------------------------------------------------


def test_frames_round_trip(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    writer, reader = FrameWriter(a), FrameReader(b)
    writer.send({"op": "ping", "id": 1, "text": "héllo ✓"})
    writer.send_text("tok")
    writer.send_text("")
    writer.send_text("日本")
    assert reader.read() == {"op": "ping", "id": 1, "text": "héllo ✓"}
    assert [reader.read(), reader.read(), reader.read()] == ["tok", "", "日本"]
    a.shutdown(socket.SHUT_WR)
    assert reader.read() is None


def test_bad_frames_are_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    reader = FrameReader(b)
    a.sendall(HEADER.pack(MAX_FRAME + 1, KIND_JSON))
    with pytest.raises(FrameError, match="exceeds"):
        reader.read()
    for frame, why in (
        (HEADER.pack(2, ord("X")) + b"{}", "unknown frame kind"),
        (HEADER.pack(3, KIND_JSON) + b"{x}", "bad JSON"),
        (HEADER.pack(2, KIND_JSON) + b"[]", "must hold an object"),
    ):
        c, d = socket.socketpair()
        c.sendall(frame)
        with pytest.raises(FrameError, match=why):
            FrameReader(d).read()
        c.close()
        d.close()


def test_stream_ending_inside_a_frame_is_an_error(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(struct.pack(">IB", 10, KIND_JSON) + b"{}")
    a.close()
    with pytest.raises(FrameError, match="inside a frame"):
        FrameReader(b).read()


def test_writing_to_a_closed_channel_raises_channel_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    with pytest.raises(ChannelClosed):
        for _ in range(100):  # the first send may still land in the socket buffer
            FrameWriter(a).send_text("x" * 65536)


def test_text_frames_cost_far_below_the_per_token_budget(pair: tuple[socket.socket, socket.socket]) -> None:
    """Framing + socket + a reader thread handing over to the consumer: < 0.2 ms a token."""
    a, b = pair
    writer, reader = FrameWriter(a), FrameReader(b)
    n = 2000
    got: list[object] = []

    def consume() -> None:
        for _ in range(n):
            got.append(reader.read())

    t = threading.Thread(target=consume)
    t.start()
    started = time.perf_counter()
    for _i in range(n):
        writer.send_text(" token")
    t.join(30)
    per_token = (time.perf_counter() - started) / n
    assert len(got) == n and got[-1] == " token"
    assert per_token < 0.2e-3


# -- requests and results -----------------------------------------------------------------


def test_generate_request_is_validated() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GenerateRequest()
    with pytest.raises(ValueError, match="exactly one"):
        GenerateRequest(prompt="a", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(ValueError, match=r"messages\[1\]"):
        GenerateRequest(messages=[{"role": "user", "content": "b"}, {"role": "user"}])
    with pytest.raises(ValueError, match="empty"):
        GenerateRequest(messages=[])
    with pytest.raises(ValueError, match="max_tokens"):
        GenerateRequest(prompt="a", max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        GenerateRequest(prompt="a", temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        GenerateRequest(prompt="a", top_p=0)


def test_generate_request_round_trips_the_wire() -> None:
    req = GenerateRequest(messages=[{"role": "user", "content": "hi"}], stop="\n", seed=3, max_tokens=5)
    assert req.stop == ("\n",)
    wire = req.to_wire()
    assert wire["messages"] == [{"role": "user", "content": "hi"}] and wire["stop"] == ["\n"]
    assert GenerateRequest.from_wire({**wire, "future_field": 1}) == req


def test_results_rebuild_from_the_wire() -> None:
    stats = GenerationStats(3, 5, 0.01, 50.0, 0.1, "length")
    assert GenerationStats.from_wire(stats.__dict__) == stats
    wire = {
        "pid": 1, "load_seconds": 0.1, "gpu_offload_supported": False, "gpu_layers": 0,
        "n_layers": 2, "mlock_requested": True, "pinned": True, "pin_problem": None,
        "locked_bytes": 10, "model_bytes": 10, "memlock_limit": None, "oom_score_adj": 500,
        "n_ctx": 64, "n_ctx_train": 256, "n_threads": 1, "has_chat_template": True,
        "notes": [CPU_ONLY_NOTE],
    }  # fmt: skip
    res = LoadResult.from_wire(wire)
    assert res.notes == (CPU_ONLY_NOTE,) and res.memlock_limit is None


# -- tiers --------------------------------------------------------------------------------


def test_tier_settings_follow_the_design_table() -> None:
    ram = tier_config("ram", "/m.gguf", n_ctx=1024, n_threads=2)
    assert (ram.n_gpu_layers, ram.use_mlock, ram.use_mmap, ram.oom_score_adj) == (-1, True, True, 500)
    assert ram.tier == "ram" and ram.n_ctx == 1024 and ram.n_threads == 2
    assert tier_config("ram", "/m.gguf", gpu_offload=False).n_gpu_layers == 0
    swap = tier_config("swap", "/m.gguf")
    assert (swap.n_gpu_layers, swap.use_mlock, swap.use_mmap, swap.oom_score_adj) == (0, False, True, 800)
    with pytest.raises(ValueError, match="no runner"):
        tier_config("disk", "/m.gguf")
    with pytest.raises(ValueError, match="unknown tier"):
        tier_config("gpu", "/m.gguf")
    assert RunnerConfig.from_wire({**ram.to_wire(), "extra": 1}) == ram
    with pytest.raises(ValueError, match="oom_score_adj"):
        RunnerConfig("/m.gguf", oom_score_adj=1001)


def test_runner_oom_score_adj_stays_above_the_console() -> None:
    assert child_oom_score_adj(500, 0) == 500
    assert child_oom_score_adj(500, 700) == 701
    assert child_oom_score_adj(800, 1000) == 1000
    assert child_oom_score_adj(500, None) == 500


def test_proc_status_parsing() -> None:
    status = "Name:\tpython\nVmLck:\t    6164 kB\nCapEff:\t000001fffeffffff\n"
    assert locked_bytes_from_status(status) == 6164 * 1024
    assert locked_bytes_from_status("Name:\tx\n") == 0
    assert has_ipc_lock(status)
    assert not has_ipc_lock("CapEff:\t0000000000000000\n")


def test_lock_assessment_never_pretends() -> None:
    common = {"model_bytes": 30 * MB, "memlock_limit": 8 * MB}
    assert assess_pin(requested=False, locked_bytes=0, gpu_layers=0, mlock_failed=False, **common) == (False, None)
    assert assess_pin(requested=True, locked_bytes=30 * MB, gpu_layers=0, mlock_failed=False, **common) == (True, None)
    pinned, problem = assess_pin(requested=True, locked_bytes=6 * MB, gpu_layers=0, mlock_failed=False, **common)
    assert not pinned and problem is not None
    assert problem.startswith("resident, not pinned: only 6.0 MB of 30.0 MB locked")
    assert memlock_fix(8 * MB) in problem
    # With GPU offload only the CPU-side rest is locked: llama.cpp's failure report decides.
    assert assess_pin(requested=True, locked_bytes=MB, gpu_layers=-1, mlock_failed=False, **common)[0]
    assert not assess_pin(requested=True, locked_bytes=MB, gpu_layers=-1, mlock_failed=True, **common)[0]
    # A failed mlock is believed even when the bytes look right.
    assert not assess_pin(requested=True, locked_bytes=30 * MB, gpu_layers=0, mlock_failed=True, **common)[0]


def test_the_fix_names_the_limit_and_every_remedy() -> None:
    fix = memlock_fix(8 * MB)
    assert fix.startswith("RLIMIT_MEMLOCK is 8.0 MB:")
    for remedy in ("ulimit -l unlimited", "LimitMEMLOCK=infinity", "CAP_IPC_LOCK"):
        assert remedy in fix
    assert format_limit(None) == "unlimited" and format_limit(1536 * MB) == "1.5 GB"
    assert format_limit(512) == "0.5 KB" and format_limit(64 * 1024) == "64.0 KB"


# -- exits --------------------------------------------------------------------------------


def test_exit_reasons_are_for_humans() -> None:
    reason, sig = describe_exit(-signal.SIGKILL)
    assert sig == "SIGKILL" and "killed (SIGKILL)" in reason and "OOM killer" in reason and "dmesg" in reason
    reason, sig = describe_exit(-signal.SIGABRT)
    assert sig == "SIGABRT" and "aborted" in reason
    reason, sig = describe_exit(-signal.SIGBUS)
    assert sig == "SIGBUS" and "bus error" in reason and "truncated while mapped" in reason
    assert describe_exit(-signal.SIGUSR1) == ("was killed by SIGUSR1", "SIGUSR1")
    assert describe_exit(3) == ("exited with status 3", None)
    assert describe_exit(0)[0] == "exited unexpectedly (status 0)"


def test_tail_prefers_the_lines_that_explain_a_death() -> None:
    lines = [f"load_tensors: line {i}" for i in range(50)]
    lines[45] = "ggml.c:1234: GGML_ASSERT(n_tokens <= n_batch) failed"
    lines[47] = "llama_decode: failed to decode, ret = -3"
    tail = pick_tail(lines)
    assert tail == [lines[45], lines[47], lines[49]]
    assert pick_tail(["a", "b", "c", "d", "e"]) == ["b", "c", "d", "e"]
    assert pick_tail([]) == []
    assert pick_tail(["set_abort_callback: call", "x", "y", "z", "w"]) == ["x", "y", "z", "w"]
    died = RunnerDied("m", "aborted (SIGABRT)", -6, "SIGABRT", tail)
    assert str(died).startswith("runner for `m` aborted (SIGABRT); last output: ggml.c:1234: GGML_ASSERT")


def test_runner_output_lines_get_log_levels() -> None:
    assert log_level_of("ggml.c:12: GGML_ASSERT(x) failed") == logging.ERROR
    assert log_level_of("llama_model_load: error loading model: bad") == logging.ERROR
    assert log_level_of("warning: failed to mlock 4194304-byte buffer") == logging.WARNING
    assert log_level_of("set_abort_callback: call") == logging.DEBUG
    assert log_level_of("load_tensors: layer 0 assigned to device CPU") == logging.DEBUG
