"""``orin-console serve`` as a subprocess: the bind check, health, the seed's quick start,
one core per machine (a second ``serve`` and a ``run`` refused, naming the first), and
SIGTERM: an open stream ends with a ``ShuttingDown`` error event, the process exits 0 and
no runner is left."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from orin_console.core.instance import InstanceLock, read_holder
from orin_console.testing.waits import wait_until

SLOW_TOKENS = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orin(*args: str, env: dict[str, str] | None = None, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orin_console", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False, **options)  # type: ignore[call-overload]


def test_a_public_bind_without_a_token_is_refused_with_the_fix(workdir: Path) -> None:
    done = orin("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--catalog", str(workdir / "models.toml"))
    assert done.returncode == 2, done.stderr
    assert "needs a token" in done.stderr and "ORIN_TOKEN" in done.stderr
    assert read_holder(os.environ["ORIN_STATE_DIR"]) is None  # refused before the lock


def test_serve_answers_refuses_a_second_console_and_stops_cleanly(workdir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    catalog = str(workdir / "models.toml")
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "serve", "--port", str(port), "--catalog", catalog,
                             "--log-level", "warning"], env={**os.environ, **SLOW_TOKENS},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                return httpx.get(f"{base}/system/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=60, what="serve to answer its health route")
        holder = read_holder(os.environ["ORIN_STATE_DIR"])
        assert holder is not None and holder.pid == proc.pid and holder.kind == "serve" and holder.address == base

        second = orin("serve", "--port", str(free_port()), "--catalog", catalog)
        assert second.returncode == 2, second.stderr
        assert f"pid {proc.pid}" in second.stderr and base in second.stderr, second.stderr
        refused_run = orin("--catalog", catalog, "run", "hello", "--max-tokens", "2")
        assert refused_run.returncode == 2, refused_run.stderr
        assert f"serve (pid {proc.pid}" in refused_run.stderr and base in refused_run.stderr

        quick = httpx.post(f"{base}/quick/generate", json={"prompt": "Hello world", "max_tokens": 50}, timeout=60)
        assert quick.status_code == 200, quick.text
        assert quick.json()["model"] == "alpha" and quick.json()["tokens"] > 0
        status = httpx.get(f"{base}/system/status", timeout=10).json()
        assert status["models"]["total"] == 2
        runners = psutil.Process(proc.pid).children(recursive=True)
        assert runners, "a loaded model has a runner process"
        proc.send_signal(signal.SIGUSR1)  # every thread's stack to the log; serving goes on
        assert httpx.get(f"{base}/system/health", timeout=10).status_code == 200

        frames: list[tuple[str, dict[str, object]]] = []
        first_token = threading.Event()

        def stream() -> None:
            with httpx.stream("POST", f"{base}/quick/generate", timeout=60,
                              json={"prompt": "hello", "max_tokens": 1500, "temperature": 0, "stream": True}) as answer:
                event = ""
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        frames.append((event, json.loads(line[6:])))
                        if event == "token":
                            first_token.set()

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert first_token.wait(60), frames
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "most recent call first" in err and "serve.py" in err, err[-2000:]  # the SIGUSR1 dump
        reader.join(10)
        assert not reader.is_alive()
        kinds = [kind for kind, _ in frames]
        assert kinds[0] == "routed" and "token" in kinds and kinds[-1] == "error", kinds[-3:]
        assert frames[-1][1]["error"]["type"] == "ShuttingDown"  # type: ignore[index]
        wait_until(lambda: not any(r.is_running() and r.status() != psutil.STATUS_ZOMBIE for r in runners),
                   timeout=10, what="every runner to end")
        with InstanceLock(os.environ["ORIN_STATE_DIR"], "test"):  # the lock is free again
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_the_lock_dies_with_its_process(tmp_path: Path, sig: int) -> None:
    code = ("import sys, time; from orin_console.core.instance import InstanceLock; "
            f"InstanceLock({str(tmp_path)!r}, 'serve', 'http://127.0.0.1:1').acquire(); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=rf"pid {holder.pid}.*http://127.0.0.1:1"):
            InstanceLock(tmp_path, "run").acquire()
        holder.send_signal(sig)
        holder.wait(10)
        with InstanceLock(tmp_path, "run") as lock:
            assert lock.held
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
