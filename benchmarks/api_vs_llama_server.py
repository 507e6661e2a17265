"""Benchmark: Orin Console's OpenAI-compatible API vs llama-cpp-python's own OpenAI server.

What a Jetson user would otherwise run is ``python -m llama_cpp.server --model ...``. Both
servers run as their own processes on loopback, on the same model
(``models/SmolLM2-135M-Instruct.Q4_1.gguf`` by default), with the same decode threads,
prompts and greedy parameters, and both are driven through the official ``openai`` client
over HTTP, in one run:

- **streaming**: ``--reps`` streamed chat completions of ``--tokens`` tokens each (a prompt
  prefix per repetition so neither side gets a prompt-cache hit the other did not; the
  sides alternate who goes first). TTFT = request sent -> first non-empty content chunk;
  tokens/s = chunks after the first / (last - first) (the median over repetitions).
  ``ratio`` = ours / peer (goal >= 1.0).
- **six short requests** in a row (non-streamed, 8 tokens): the wall time of all six.
- **alternating workload**: ``--switches`` completions alternating between the two demo
  models (smollm2, gemma3). The peer holds one model, so each switch stops it and starts
  it again on the other model (process start + load + the request); ours keeps both loaded
  (smollm2 in the RAM tier, gemma3 in swap). ``ratio`` = ours / peer (goal <= 0.2).

The peer needs llama-cpp-python's ``[server]`` extras (``sse_starlette``,
``starlette_context``, ``pydantic_settings``); when one is missing the peer is reported as
unavailable with the missing modules, and ours is still measured.

Usage::

    .venv/bin/python benchmarks/api_vs_llama_server.py [--threads 2] [--tokens 64] [--reps 5] [--switches 6]

The last line of output is JSON: ``{"benchmark": "api_vs_llama_server", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SMOLLM2 = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
IDS = {SMOLLM2: "smollm2", GEMMA3: "gemma3"}
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a robot on the beach."
SHORT = "Say hello in five words."
PEER_EXTRAS = ("sse_starlette", "starlette_context", "pydantic_settings")
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        time.sleep(0.02)
    raise RuntimeError(f"the server at {url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the servers -----------------------------------------------------------------------------------


def missing_peer_modules() -> list[str]:
    return [name for name in PEER_EXTRAS if importlib.util.find_spec(name) is None]


class Peer:
    """``python -m llama_cpp.server`` on one model; :meth:`switch` restarts it on another."""

    def __init__(self, threads: int, log: Path) -> None:
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.model: Path | None = None

    def start(self, model: Path) -> None:
        self.close()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_threads", str(self.threads),
                 "--n_threads_batch", str(self.threads), "--n_ctx", "2048", "--host", "127.0.0.1",
                 "--port", str(self.port), "--model_alias", IDS[model], "--verbose", "False"],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.model = model
        wait_ready(self.url, self.proc)

    def name_for(self, model: Path) -> str:
        if self.model != model:
            self.start(model)  # the peer holds one model: a switch is a restart
        return IDS[model]

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


class Ours:
    """This repository's API (``--serve-ours`` below) in its own process, both demo models loaded."""

    def __init__(self, threads: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tempfile.mkdtemp(prefix="orin-bench-state-")
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--serve-ours", "--port", str(self.port), "--threads", str(threads),
                 "--state", self.state], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        wait_ready(self.url, self.proc)

    def name_for(self, model: Path) -> str:
        return IDS[model]

    def close(self) -> None:
        stop(self.proc)


def serve_ours(port: int, threads: int, state: str) -> None:
    """The child: a core on the repository's catalog, both demo models loaded, the API on loopback."""
    import uvicorn

    from orin_console.api.app import create_app
    from orin_console.core import create_core
    from orin_console.core.settings import load_settings

    settings = load_settings(env={}, catalog_path=REPO / "models.toml", state_dir=Path(state))
    with create_core(settings, n_threads=threads, telemetry=False, optimiser=False) as core:
        core.manager.load("smollm2", "ram").result(START_TIMEOUT_S)
        core.manager.load("gemma3", "swap").result(START_TIMEOUT_S)
        uvicorn.run(create_app(core), host="127.0.0.1", port=port, log_level="warning")


# -- the measurements --------------------------------------------------------------------------------


def stream_once(client: Any, model: str, prompt: str, tokens: int) -> dict[str, float]:
    sent = time.perf_counter()
    times: list[float] = []
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=tokens, temperature=0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    if len(times) < 2:
        return {"ttft_s": (times[0] - sent) if times else float("nan"), "tok_per_s": float("nan"), "pieces": len(times)}
    return {"ttft_s": times[0] - sent, "tok_per_s": (len(times) - 1) / (times[-1] - times[0]), "pieces": len(times)}


def six_short(client: Any, model: str) -> float:
    began = time.perf_counter()
    for i in range(6):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"{i}. {SHORT}"}],
                                       max_tokens=8, temperature=0)
    return time.perf_counter() - began


def alternating(client: Any, name_for: Callable[[Path], str], switches: int) -> float:
    began = time.perf_counter()
    for i in range(switches):
        model = (SMOLLM2, GEMMA3)[i % 2]
        client.completions.create(model=name_for(model), prompt=f"{i}. The Jetson Orin Nano is", max_tokens=16,
                                  temperature=0)
    return time.perf_counter() - began


def _median(values: list[float]) -> float | None:
    clean = [v for v in values if v == v]
    return round(statistics.median(clean), 4) if clean else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


@contextlib.contextmanager
def openai_client(url: str) -> Iterator[Any]:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600)
    try:
        yield client
    finally:
        client.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    for path in (SMOLLM2, GEMMA3):
        if not path.is_file():
            raise SystemExit(f"demo model {path.name} not fetched: run `make models`")
    logs = Path(tempfile.mkdtemp(prefix="orin-bench-logs-"))
    missing = missing_peer_modules()
    out: dict[str, Any] = {"benchmark": "api_vs_llama_server", "model": SMOLLM2.name, "threads": args.threads,
                           "tokens": args.tokens, "reps": args.reps, "switches": args.switches,
                           "peer": None if missing else "llama_cpp.server",
                           "peer_unavailable": (f"llama-cpp-python[server] extras missing: {', '.join(missing)}"
                                                if missing else None)}
    ours = Ours(args.threads, logs / "ours.log")
    peer = None if missing else Peer(args.threads, logs / "peer.log")
    try:
        if peer is not None:
            peer.start(SMOLLM2)
        sides: dict[str, Any] = {"ours": ours, **({"peer": peer} if peer is not None else {})}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for side in sides.values():  # warm-up: the first request of each pays for caches
            with openai_client(side.url) as client:
                stream_once(client, "smollm2", "Hello", 4)
        for rep in range(args.reps):
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            for name in order:
                with openai_client(sides[name].url) as client:
                    runs[name].append(stream_once(client, "smollm2", f"({rep}) {PROMPT}", args.tokens))
        for name in sides:
            out[f"{name}_tok_per_s"] = _median([r["tok_per_s"] for r in runs[name]])
            out[f"{name}_ttft_ms"] = _median([r["ttft_s"] * 1000 for r in runs[name]])
            with openai_client(sides[name].url) as client:
                out[f"{name}_six_short_s"] = round(six_short(client, "smollm2"), 3)
        out["stream_ratio"] = _ratio(out.get("ours_tok_per_s"), out.get("peer_tok_per_s"))
        out["six_short_ratio"] = _ratio(out.get("ours_six_short_s"), out.get("peer_six_short_s"))
        with openai_client(ours.url) as client:
            out["ours_alternating_s"] = round(alternating(client, ours.name_for, args.switches), 3)
        if peer is not None:
            with openai_client(peer.url) as client:
                peer.start(SMOLLM2)
                out["peer_alternating_s"] = round(alternating(client, peer.name_for, args.switches), 3)
        out["alternating_ratio"] = _ratio(out.get("ours_alternating_s"), out.get("peer_alternating_s"))
        out["goals"] = {"stream_ratio >= 1.0": None if out["stream_ratio"] is None else out["stream_ratio"] >= 1.0,
                        "alternating_ratio <= 0.2": None if out["alternating_ratio"] is None
                        else out["alternating_ratio"] <= 0.2}
    finally:
        ours.close()
        if peer is not None:
            peer.close()
    out["logs"] = str(logs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--serve-ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--state", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ours:
        serve_ours(args.port, args.threads, args.state)
        return
    result = measure(args)
    for key, val in result.items():
        if key not in ("benchmark", "goals"):
            print(f"{key:>22}: {val}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
