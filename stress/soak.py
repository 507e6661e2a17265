"""Soak (issue 11, part 6): minutes of mixed API traffic against a live ``orin-console serve``.

A real ``orin-console serve`` child process over three tiny models; several client threads send
a seeded mix of generations (plain and streamed, some streams dropped early), loads, tier moves,
unloads, plan reads and plan applications, status reads. Meanwhile the server's resident memory,
open file descriptors, threads and child processes are read from ``/proc`` every few seconds.

Growth is measured between two *checkpoints* taken in the same state: traffic paused, every
model unloaded, a second to settle; the first after the warm-up (a fifth of the run, at most
three minutes: allocator arenas, thread pools and caches fill up), the second at the end. Goals:

- RSS at the end within ``max(24 MiB, 10 %)`` of RSS after warm-up (``rss_bound_mb``);
- no growth of file descriptors, threads or child processes between the checkpoints;
- no 5xx answer at any time;
- no runner left after SIGTERM of the server, nor after a SIGKILL of a second server that had
  every model loaded and a stream in flight (runners die with their parent: PDEATHSIG).
  Runners are found in ``/proc`` by the mark every child of the server inherits
  (``ORIN_TEST_MARK``), so a runner re-parented to init still counts.

    python -m stress.soak --minutes 30          # the figures in docs/reliability-soak.md
    python -m stress.soak --quick               # about 15 s (what the test runs)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from stress.common import RUNNER_MODULE, ModelSpec, module_main, process_counts, serve_process

__all__ = ["SPECS", "Traffic", "marked_processes", "run"]

MiB = 1024 * 1024

SPECS = (ModelSpec("alpha", tier="ram"), ModelSpec("beta", seed=7, tier="swap", tasks=("code",)),
         ModelSpec("gamma", seed=3, tier="swap", tasks=("chat", "summarisation")))
IDS = tuple(s.id for s in SPECS)

WATCHDOG_S = 10.0
"""The soak server's runner watchdog (see :func:`_soak`); tiny models answer in milliseconds."""

WEIGHTS = {"generate": 30, "stream": 25, "load": 10, "move": 10, "unload": 5, "plan": 5, "apply": 5,
           "status": 10}
"""The traffic mix (relative weights)."""

_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "models", "move",
          "between", "tiers")


def _unloaded_meanwhile(body: str) -> bool:
    """Whether a 503 is the documented answer to a request whose model was unloaded by another
    client while it waited (``ModelUnavailable`` naming the unload), rather than a fault."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return error.get("type") == "ModelUnavailable" and "unloaded" in str(error.get("message", ""))


def marked_processes(mark: str) -> list[dict[str, Any]]:
    """Live processes (zombies excluded) whose environment holds ``ORIN_TEST_MARK=mark``, read
    straight from ``/proc``: ``{"pid", "ppid", "runner"}``."""
    needle = f"ORIN_TEST_MARK={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            if needle not in environ.split(b"\0"):
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        found.append({"pid": int(entry), "ppid": int(fields[1]), "runner": RUNNER_MODULE in cmdline})
    return found


def _wait_gone(mark: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = marked_processes(mark)
    return left


class Traffic:
    """Client threads sending the seeded mix; pausable for checkpoints."""

    def __init__(self, url: str, seed: int, clients: int) -> None:
        self.url = url
        self.seed = seed
        self.clients = clients
        self.counts: dict[str, dict[str, int]] = {}
        self.server_errors: list[str] = []
        self.server_error_count = 0
        self.unloaded_meanwhile = 0
        """503 ModelUnavailable for a request whose model another client unloaded meanwhile (the
        documented answer: "ask again to restart it"), not a fault."""
        self.transport_errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._run = threading.Event()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._run.set()
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(random.Random(self.seed * 1000 + i),),
                                      name=f"soak-client-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def pause(self) -> None:
        """Stop sending after the requests in hand end (each client reports idle once)."""
        self._run.clear()
        for _ in self._threads:
            self._idle.acquire(timeout=120)

    def resume(self) -> None:
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()
        for thread in self._threads:
            thread.join(60)

    def _note(self, kind: str, status: int | str, detail: str = "") -> None:
        with self._lock:
            by = self.counts.setdefault(kind, {})
            key = str(status)
            by[key] = by.get(key, 0) + 1
            if not isinstance(status, int) or status < 500:
                return
            if status == 503 and _unloaded_meanwhile(detail):
                self.unloaded_meanwhile += 1
            else:
                self.server_error_count += 1
                if len(self.server_errors) < 10:
                    self.server_errors.append(f"{kind} {status}: {detail[:300]}")

    def _client(self, rng: random.Random) -> None:
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while not self._stop.is_set():
            # one connection per client between pauses: closed while paused, so a checkpoint
            # counts the server's own descriptors, not the clients' idle keep-alive sockets
            with httpx.Client(base_url=self.url, timeout=60) as client:
                while self._run.is_set() and not self._stop.is_set():
                    kind = rng.choices(kinds, weights)[0]
                    try:
                        self._one(client, kind, rng)
                    except httpx.HTTPError as exc:
                        self._note(kind, type(exc).__name__)
                        with self._lock:
                            if len(self.transport_errors) < 10:
                                self.transport_errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            if not self._stop.is_set():
                self._idle.release()
                self._run.wait()

    def _one(self, client: httpx.Client, kind: str, rng: random.Random) -> None:
        model = rng.choice(IDS)
        prompt = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 20)))
        if kind == "generate":
            reply = client.post("/generate", json={"prompt": prompt, "max_tokens": rng.randint(4, 24),
                                                   "model": model, "seed": rng.randint(0, 1000)})
        elif kind == "stream":
            body = {"prompt": prompt, "max_tokens": rng.randint(4, 32), "model": model, "stream": True}
            drop_after = rng.randint(1, 6) if rng.random() < 0.2 else None
            with client.stream("POST", "/generate", json=body) as reply:
                if reply.status_code == 200:
                    event = ""
                    for n, line in enumerate(reply.iter_lines()):
                        if drop_after is not None and n >= drop_after:
                            break  # a client that goes away mid-stream
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif event == "error" and line.startswith("data:"):
                            # a failure after the stream started: its status is in the frame
                            status = json.loads(line[5:]).get("error", {}).get("status", 500)
                            self._note("stream_error", int(status), line[5:])
                else:
                    reply.read()
        elif kind == "load":
            reply = client.post(f"/models/{model}/load", json={"tier": rng.choice(("ram", "swap"))})
        elif kind == "move":
            reply = client.post(f"/models/{model}/move", json={"tier": rng.choice(("ram", "swap", "disk"))})
        elif kind == "unload":
            reply = client.post(f"/models/{model}/unload")
        elif kind == "plan":
            reply = client.get("/placement/plan")
        elif kind == "apply":
            reply = client.post("/placement/apply", json={})
        else:
            reply = client.get("/system/status")
        self._note(kind, reply.status_code, reply.text if reply.status_code >= 500 else "")


def _unload_all(url: str, timeout: float = 60) -> tuple[bool, list[str]]:
    """Unload every model and wait until none is loaded or in transition; whether so, and what
    was still loaded, busy or queued at the last look (what a failed checkpoint reports)."""
    busy: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            models = client.get("/models/list").json()["models"]
            busy = [m for m in models if m["state"] != "unloaded" or m.get("busy") or m.get("queued")]
            if not busy:
                return True, []
            for m in busy:
                if m["state"] in ("ready", "failed"):
                    client.post(f"/models/{m['id']}/unload")
            time.sleep(0.2)
    return False, [f"{m['id']}: {m['state']} tier={m.get('tier')} target={m.get('target_tier')} "
                   f"progress={m.get('progress')} pid={m.get('pid')} busy={m.get('busy')} queued={m.get('queued')} "
                   f"error={m.get('error')}" for m in busy]


def _checkpoint(url: str, pid: int, traffic: Traffic, settle_s: float, unload_s: float) -> dict[str, Any]:
    """Counts in a fixed state: traffic paused, its connections closed, nothing loaded, then
    ``settle_s`` for idle worker threads to expire (anyio's do after 10 s idle, pruned by the next
    sync request, which this makes); the median of 3 reads."""
    traffic.pause()
    settled, stuck = _unload_all(url, unload_s)
    time.sleep(settle_s)
    # anyio prunes workers idle for 10 s only when the next sync route takes one: ask once, so
    # the count holds exactly one idle worker instead of however many the last burst left
    httpx.get(url + "/system/status", timeout=30)
    time.sleep(0.5)
    reads = []
    for _ in range(3):
        reads.append(process_counts(pid))
        time.sleep(0.3)
    point: dict[str, Any] = {key: sorted(r[key] for r in reads)[1] for key in reads[0]}
    point["settled"] = int(settled)
    point["stuck"] = stuck
    traffic.resume()
    return point


def _dump_if_stuck(point: dict[str, Any], pid: int) -> None:
    """A checkpoint that did not settle: the server writes every thread's stack to its log
    (``serve`` dumps them on SIGUSR1), which the figures' ``server_log_tail`` carries."""
    if not point["settled"]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGUSR1)
            time.sleep(1.0)


def _series(samples: Sequence[dict[str, Any]], key: str, scale: float = 1.0) -> dict[str, float]:
    values = [s[key] / scale for s in samples]
    return {"start": round(values[0], 1), "end": round(values[-1], 1), "max": round(max(values), 1),
            "min": round(min(values), 1)}


def _soak(folder: Path, seed: int, duration_s: float, warmup_s: float, sample_s: float,
          clients: int, settle_s: float) -> dict[str, Any]:
    mark = f"soak-{uuid.uuid4().hex[:12]}"
    samples: list[dict[str, Any]] = []
    # The runner watchdog at 10 s instead of 120 s (first token) and 30 s (between tokens;
    # a load may be silent for the larger): a runner that stops answering is killed well
    # inside a checkpoint's wait, as the product does, and counted (``watchdog_kills``).
    config = {"telemetry_interval_s": 1.0, "first_token_timeout_s": WATCHDOG_S, "token_gap_timeout_s": WATCHDOG_S}
    with serve_process(folder / "serve", SPECS, env={"ORIN_TEST_MARK": mark}, config=config) as served:
        pid = served.pid
        traffic = Traffic(served.url, seed, clients)
        stop_sampling = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop_sampling.is_set():
                try:
                    samples.append({"t": round(time.monotonic() - start, 1), **process_counts(pid)})
                except Exception:  # noqa: BLE001 - the server went away: the figures say so
                    return
                stop_sampling.wait(sample_s)

        sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
        sampler.start()
        traffic.start()
        time.sleep(warmup_s)
        unload_s = 30.0 if duration_s < 120 else 120.0
        baseline = _checkpoint(served.url, pid, traffic, settle_s, unload_s)
        _dump_if_stuck(baseline, pid)
        time.sleep(max(0.0, duration_s - warmup_s))
        final = _checkpoint(served.url, pid, traffic, settle_s, unload_s)
        _dump_if_stuck(final, pid)
        traffic.stop()
        stop_sampling.set()
        sampler.join(10)
        term_started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        try:
            exit_status = served.process.wait(60)
        except Exception:  # noqa: BLE001 - reported below
            exit_status = None
        term_s = time.monotonic() - term_started
        left_after_term = _wait_gone(mark, 10)
        watchdog_kills = sum("stopped answering" in line for line in served.stderr_lines)
        stuck = not (baseline["settled"] and final["settled"])
        log_tail = served.stderr_lines[-400:] if stuck else served.stderr_lines[-20:]
    ops = {kind: sum(by.values()) for kind, by in traffic.counts.items() if kind != "stream_error"}
    bound = max(24 * MiB, baseline["rss"] // 10)
    growth = {key: final[key] - baseline[key] for key in ("rss", "fds", "threads", "children", "runners")}
    return {
        "mark": mark, "operations": sum(ops.values()),
        "ops_per_min": round(sum(ops.values()) / max(duration_s / 60, 1e-9), 1), "by_kind": traffic.counts,
        "server_errors": traffic.server_errors, "server_error_count": traffic.server_error_count,
        "unloaded_meanwhile_503": traffic.unloaded_meanwhile, "transport_errors": traffic.transport_errors,
        "samples": len(samples),
        "rss_mb": _series(samples, "rss", MiB) if samples else {},
        "fds": _series(samples, "fds") if samples else {}, "threads": _series(samples, "threads") if samples else {},
        "children": _series(samples, "children") if samples else {},
        "checkpoint_warm": baseline, "checkpoint_end": final,
        "growth": {**growth, "rss_mb": round(growth["rss"] / MiB, 1)},
        "rss_bound_mb": round(bound / MiB, 1),
        "sigterm": {"exit_status": exit_status, "seconds": round(term_s, 2), "left": left_after_term},
        "server_log_tail": log_tail,
        "watchdog_kills": watchdog_kills,
    }


def _sigkill(folder: Path) -> dict[str, Any]:
    """A second server with every model loaded and a stream in flight, SIGKILLed."""
    mark = f"soak-kill-{uuid.uuid4().hex[:12]}"
    with serve_process(folder / "kill", SPECS, env={"ORIN_TEST_MARK": mark}) as served:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            for model, tier in zip(IDS, ("ram", "swap", "swap"), strict=True):
                client.post(f"/models/{model}/load", json={"tier": tier})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = {m["id"]: m["state"] for m in client.get("/models/list").json()["models"]}
                if all(s == "ready" for s in states.values()):
                    break
                time.sleep(0.1)
        runners_before = [p for p in marked_processes(mark) if p["runner"]]
        in_flight = threading.Thread(target=_stream_quietly, args=(served.url,), daemon=True)
        in_flight.start()
        time.sleep(0.3)
        served.kill(signal.SIGKILL)
        served.process.wait(10)
        killed = time.monotonic()
        left = _wait_gone(mark, 10)
        gone_s = time.monotonic() - killed
    return {"runners_before": len(runners_before), "states": states, "left": left,
            "gone_within_s": round(gone_s, 2) if not left else None}


def _stream_quietly(url: str) -> None:
    try:
        with httpx.Client(base_url=url, timeout=30) as client, client.stream(
                "POST", "/generate", json={"prompt": "a long story", "max_tokens": 2000, "model": "alpha",
                                           "stream": True}) as reply:
            for _ in reply.iter_lines():
                pass
    except httpx.HTTPError:
        pass  # the server was killed under it: expected


def run(quick: bool, seed: int, *, folder: Path | None = None, minutes: float | None = None,
        clients: int = 4, sample_s: float | None = None, settle_s: float | None = None,
        **_: Any) -> dict[str, Any]:
    """The soak; figures and ``goal_met`` (see the module docstring for the goals)."""
    import tempfile

    duration = 60 * minutes if minutes is not None else (15.0 if quick else 30 * 60.0)
    warmup = min(0.2 * duration, 180.0)
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="soak-"))
    started = time.monotonic()
    soak = _soak(root, seed, duration, warmup, sample_s or (0.5 if duration < 120 else 5.0), clients,
                 settle_s if settle_s is not None else (1.5 if duration < 120 else 12.0))
    kill = _sigkill(root)
    growth = soak["growth"]
    goals = {
        "rss_within_bound": growth["rss"] <= soak["rss_bound_mb"] * MiB,
        "no_fd_growth": growth["fds"] <= 0,
        "no_thread_growth": growth["threads"] <= 0,
        "no_child_growth": growth["children"] <= 0 and growth["runners"] <= 0,
        "no_5xx": soak["server_error_count"] == 0 and not soak["transport_errors"],
        "checkpoints_settled": bool(soak["checkpoint_warm"]["settled"] and soak["checkpoint_end"]["settled"]),
        "no_runner_after_sigterm": not soak["sigterm"]["left"] and soak["sigterm"]["exit_status"] is not None,
        "no_runner_after_sigkill": not kill["left"] and kill["runners_before"] >= len(IDS),
    }
    return {"minutes": round(duration / 60, 2), "warmup_s": round(warmup, 1), **soak, "sigkill": kill,
            "goals": goals, "wall_s": round(time.monotonic() - started, 1), "goal_met": all(goals.values())}


def _argv(argv: Sequence[str]) -> list[str]:
    """``--minutes N`` (and ``--clients N``) as ``--set minutes=N`` for :func:`module_main`."""
    out: list[str] = []
    items = list(argv)
    while items:
        item = items.pop(0)
        for name in ("minutes", "clients"):
            if item == f"--{name}" and items:
                out += ["--set", f"{name}={items.pop(0)}"]
                break
            if item.startswith(f"--{name}="):
                out += ["--set", f"{name}={item.split('=', 1)[1]}"]
                break
        else:
            out.append(item)
    return out


if __name__ == "__main__":
    sys.exit(module_main(run, _argv(sys.argv[1:]), name="stress.soak"))
