"""Shared helpers of the chaos and soak checks: tiny models and their catalog, a live server on
loopback (in this process, or ``orin-console serve`` as a child process), process counts,
percentiles, and the command-line entry every ``stress.<module>`` uses.

Example:
    >>> specs = [ModelSpec("alpha"), ModelSpec("beta", seed=7, tier="swap")]   # doctest: +SKIP
    >>> with live_server(tmp / "w", specs, settings={"token_gap_timeout_s": 1.0}) as live:
    ...     httpx.get(live.url + "/system/health")                             # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from orin_console.core import Core
from orin_console.testing.managers import make_core, settings_for
from orin_console.testing.processes import RUNNER_MODULE, runner_processes
from orin_console.testing.tiny_models import write_tiny_llama

__all__ = [
    "RUNNER_MODULE",
    "STREAM_ROUTES",
    "Live",
    "ModelSpec",
    "ServeProcess",
    "StreamOutcome",
    "free_port",
    "live_server",
    "module_main",
    "percentile",
    "process_counts",
    "runner_processes",
    "serve_process",
    "stream_body",
    "stream_request",
    "summary",
    "write_catalog",
    "write_models",
]

"""What a runner process's command line holds (``python -m orin_console.core.runner.child``)."""


@dataclass(frozen=True)
class ModelSpec:
    """One generated model and its catalog entry. The size follows ``n_embd``/``n_layers``/``n_ff``
    (the defaults give a ~0.3 MB model that loads in milliseconds)."""

    id: str
    tasks: tuple[str, ...] = ("chat",)
    tier: str = "ram"
    context: int = 512
    seed: int = 0
    n_layers: int = 2
    n_embd: int = 64
    n_ff: int = 128
    pin: bool = False
    priority: int = 50


def write_models(folder: Path, specs: Sequence[ModelSpec]) -> Path:
    """Write ``<id>.gguf`` for each spec (skipped when already there) and ``models.toml``;
    returns the catalog's path. Every model streams printable text to ``max_tokens``."""
    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        path = folder / f"{spec.id}.gguf"
        if not path.is_file():
            write_tiny_llama(path, n_layers=spec.n_layers, n_embd=spec.n_embd, n_ff=spec.n_ff,
                             n_ctx=max(spec.context, 256), seed=spec.seed, name=spec.id, ascii_output=True)
    return write_catalog(folder, specs)


def write_catalog(folder: Path, specs: Iterable[ModelSpec]) -> Path:
    """Write ``folder/models.toml`` listing ``specs`` (their files are ``<id>.gguf``)."""
    entries = []
    for s in specs:
        tasks = ", ".join(json.dumps(t) for t in s.tasks)
        entries.append(f'[[models]]\nid = "{s.id}"\npath = "{s.id}.gguf"\ntasks = [{tasks}]\n'
                       f'tier = "{s.tier}"\ncontext = {s.context}\npriority = {s.priority}\n'
                       f'pin = {"true" if s.pin else "false"}\n')
    catalog = folder / "models.toml"
    catalog.write_text("\n".join(entries))
    return catalog


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    """A server on loopback: its base URL, and (in-process) the core behind it."""

    url: str
    folder: Path
    core: Core | None = None
    process: subprocess.Popen[str] | None = None
    notes: list[str] = field(default_factory=list)


@contextmanager
def live_server(folder: Path, specs: Sequence[ModelSpec], *, settings: Mapping[str, Any] | None = None,
                app_options: Mapping[str, Any] | None = None, **core_options: Any) -> Iterator[Live]:
    """Write the models, build a core over them (test defaults: see
    :func:`~orin_console.testing.managers.make_core`; ``core_options`` such as ``budgets=``
    override them), serve ``create_app(core)`` with uvicorn on a free loopback port in a thread,
    and yield a :class:`Live`. On exit the server stops, then the core closes (every runner ends).

    ``settings`` are :class:`~orin_console.core.settings.Settings` overrides (e.g. the
    watchdog's ``token_gap_timeout_s``); ``model_folders`` defaults to ``[folder]``.
    """
    import uvicorn

    from orin_console.api.app import create_app

    write_models(folder, specs)
    overrides = {"model_folders": [folder], **(settings or {})}
    core = make_core(folder, settings=settings_for(folder, **overrides), **core_options).start()
    try:
        app = create_app(core, **(app_options or {}))
        config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="stress-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live API server did not start")
            time.sleep(0.01)
        try:
            yield Live(url=f"http://127.0.0.1:{config.port}", folder=folder, core=core)
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        core.close()


_SERVING = re.compile(r"serving (http://\S+)")


@dataclass
class ServeProcess:
    """``orin-console serve`` in a child process (its own process group)."""

    process: subprocess.Popen[str]
    url: str
    folder: Path
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the console process only (not its group: runners must notice alone)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)


@contextmanager
def serve_process(folder: Path, specs: Sequence[ModelSpec], *, env: Mapping[str, str] | None = None,
                  config: Mapping[str, Any] | None = None, startup_timeout: float = 30.0) -> Iterator[ServeProcess]:
    """Write the models and a config file, start ``python -m orin_console serve --port 0`` over
    them (state in ``folder/state``, no developer config or ``ORIN_*`` variables), wait for its
    "serving http://..." line and yield a :class:`ServeProcess`. On exit: SIGTERM, then SIGKILL
    after 15 s. ``config`` adds settings to the config file (TOML scalars, e.g.
    ``{"telemetry_interval_s": 0.5}``)."""
    write_models(folder, specs)
    lines = [f"catalog_path = {json.dumps(str(folder / 'models.toml'))}",
             f"state_dir = {json.dumps(str(folder / 'state'))}",
             f"model_folders = [{json.dumps(str(folder))}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (config or {}).items()]
    config_file = folder / "config.toml"
    config_file.write_text("\n".join(lines) + "\n")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ORIN_")}
    child_env.update({"ORIN_CONFIG": str(config_file), "PYTHONUNBUFFERED": "1", **(env or {})})
    proc = subprocess.Popen([sys.executable, "-m", "orin_console", "serve", "--port", "0", "--log-level", "warning"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=child_env, cwd=folder, start_new_session=True)
    assert proc.stderr is not None
    served = ServeProcess(proc, "", folder)
    found = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            served.stderr_lines.append(line.rstrip("\n"))
            match = _SERVING.search(line)
            if match and not found.is_set():
                served.url = match.group(1)
                found.set()

    threading.Thread(target=read_stderr, name="serve-stderr", daemon=True).start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not found.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(served.stderr_lines[-10:])
                raise RuntimeError(f"orin-console serve did not start (exit {proc.poll()}):\n{tail}")
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def process_counts(pid: int | None = None) -> dict[str, int]:
    """Resource counts of process ``pid`` (default: this one): ``rss`` bytes, open ``fds``,
    ``threads``, live ``children`` (recursive, zombies excluded) and ``runners`` among them."""
    proc = psutil.Process(pid)
    children = [c for c in proc.children(recursive=True) if _alive(c)]
    return {"rss": proc.memory_info().rss, "fds": proc.num_fds(), "threads": proc.num_threads(),
            "children": len(children), "runners": len(runner_processes(proc.pid))}


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float], *, scale: float = 1000.0, digits: int = 1) -> dict[str, float | None]:
    """``{"p50", "p99", "max"}`` of ``values`` (seconds) in milliseconds (``scale``)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)

    return {"p50": r(percentile(values, 50)), "p99": r(percentile(values, 99)),
            "max": r(max(values) if values else None)}


def module_main(run: Callable[..., dict[str, Any]], argv: Sequence[str] | None = None, *,
                name: str = "stress") -> int:
    """The command line of ``python -m stress.<module>``: ``--quick``, ``--seed N``,
    ``--set KEY=VALUE`` (JSON values, passed to ``run`` as keyword options), ``--json`` (only the
    figures' JSON line on stdout; otherwise it is also pretty-printed). The work happens in a
    fresh temporary folder unless ``--set folder=...`` names one. Exit 0 when ``goal_met``."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}")
    parser.add_argument("--quick", action="store_true", help="the short version (what the tests run)")
    parser.add_argument("--seed", type=int, default=11, help="seed of every random choice (default 11)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for run() (a JSON value, or a plain string)")
    parser.add_argument("--json", action="store_true", help="print only the figures' JSON line")
    args = parser.parse_args(argv)
    opts: dict[str, Any] = {}
    for pair in args.set:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--set {pair!r}: expected KEY=VALUE, e.g. --set faults=20")
        try:
            opts[key] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key] = raw
    with tempfile.TemporaryDirectory(prefix=f"{name.replace('.', '-')}-") as tmp:
        opts.setdefault("folder", tmp)
        opts["folder"] = Path(opts["folder"])
        figures = run(args.quick, args.seed, **opts)
    if not args.json:
        print(json.dumps(figures, indent=2), file=sys.stderr)
    print(json.dumps(figures), flush=True)
    return 0 if figures.get("goal_met") else 1


# -- streaming clients ---------------------------------------------------------------------------

STREAM_ROUTES: tuple[str, ...] = ("/generate", "/chat", "/quick/generate", "/v1/chat/completions", "/v1/completions")
"""Every streaming generation route: the seed's SSE routes, then OpenAI's."""


def stream_body(route: str, model: str, max_tokens: int, prompt: str = "Tell me a story") -> dict[str, Any]:
    """The JSON body of a streamed request for ``model`` on ``route`` (greedy, so it runs to
    ``max_tokens`` on the tiny models)."""
    if route in ("/chat", "/v1/chat/completions"):
        body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    else:
        body = {"prompt": prompt}
    body.update({"model": model, "max_tokens": max_tokens, "stream": True, "temperature": 0})
    if route.startswith("/v1"):
        return body
    body["mode"] = "manual"
    return body


@dataclass
class StreamOutcome:
    """How one streamed request ended, from the client's side.

    ``kind``: ``done`` (the last event of a finished answer), ``error`` (an error event in the
    stream), ``http`` (an HTTP error status before the stream; ``status`` set), ``transport``
    (the connection failed or broke), ``dropped`` (the client hung up on purpose), ``eof`` (the
    stream ended without a last event). ``error_type``/``message`` come from the error body.
    """

    kind: str
    route: str
    model: str
    tokens: int = 0
    status: int | None = None
    error_type: str | None = None
    message: str = ""
    started: float = 0.0
    first_token: float | None = None
    ended: float = 0.0


def _error_of(data: Any) -> tuple[str | None, str]:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, str(data)[:500]
    return str(error.get("type") or error.get("code")), str(error.get("message", ""))


def stream_request(client: Any, route: str, model: str, *, max_tokens: int = 32,
                   on_token: Callable[[int], bool] | None = None, timeout: float = 60.0) -> StreamOutcome:
    """Stream one request with ``client`` (an ``httpx.Client`` on the server's base URL).

    ``on_token(n)`` is called after the n-th piece; returning True drops the connection there
    (the outcome is then ``dropped``, ``ended`` the moment the socket was closed).
    """
    import httpx

    outcome = StreamOutcome("eof", route, model, started=time.monotonic())
    openai = route.startswith("/v1")
    event = ""
    try:
        with client.stream("POST", route, json=stream_body(route, model, max_tokens), timeout=timeout) as resp:
            if resp.status_code != 200:
                resp.read()
                outcome.kind, outcome.status = "http", resp.status_code
                try:
                    outcome.error_type, outcome.message = _error_of(resp.json())
                except ValueError:
                    outcome.message = resp.text[:500]
                outcome.ended = time.monotonic()
                return outcome
            for line in resp.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                raw = line[5:].strip()
                if raw == "[DONE]":
                    outcome.kind = "done"
                    break
                data = json.loads(raw)
                if (openai and isinstance(data, dict) and "error" in data) or event == "error":
                    outcome.kind = "error"
                    outcome.error_type, outcome.message = _error_of(data)
                    break
                if event == "done":
                    outcome.kind = "done"
                    break
                piece = event == "token" or (openai and bool(data.get("choices")) and _has_text(data))
                if piece:
                    outcome.tokens += 1
                    if outcome.first_token is None:
                        outcome.first_token = time.monotonic()
                    if on_token is not None and on_token(outcome.tokens):
                        outcome.kind = "dropped"
                        break
    except httpx.HTTPError as exc:
        outcome.kind, outcome.message = "transport", f"{type(exc).__name__}: {exc}"
    outcome.ended = time.monotonic()
    return outcome


def _has_text(data: dict[str, Any]) -> bool:
    choice = data["choices"][0]
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return bool(text)
