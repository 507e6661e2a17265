"""Runner faults (issue 11, part 1): signals sent to runner processes at load and mid-stream,
while other API clients stream from other models.

The console is ``orin-console serve`` in its own process (so "the console survives" means a
separate process survives), on loopback, over four generated tiny models: two victims (``va``
on the RAM tier, ``vb`` on swap) and two bystanders (``ba``, ``bb``). Runners get the test
hooks' load delay (0.25 s) and token delay (20 ms), standing in for a real model's, so a load
and a stream last long enough to be hit; the watchdog runs at 2 s between tokens and 5 s before
the first token or during a load.

Each fault, in a seeded order, is one of:

- ``sigkill``/``sigabrt`` at ``load`` (while the runner loads, the client's request waiting on
  it) or mid-``stream`` (after the client's second token);
- ``sigstop`` at load or mid-stream: the process is frozen, not dead; the watchdog must notice
  and kill it;
- ``sigkill``/``sigstop`` at ``move``: while a client streams from the model's runner, a tier
  move starts (make-before-break) and its new runner is hit while it loads: the move must fail
  with the reason, the model stay ready on its old runner, and that client's stream finish;
- ``oom``: an OOM-killer-style kill, emulated: the script waits until the runner is deep into a
  long generation (its RSS, KV cache included, at its height: at least 24 tokens in) and sends
  SIGKILL, as the kernel would. The kernel's own choice is checked too: among the console and
  its runners, the console's ``/proc/<pid>/oom_score`` must be the lowest (runners run with a
  higher ``oom_score_adj``), so a real OOM kill takes a runner, never the console.

Mid-stream, a second client waits in the model's queue behind the one that is hit: it must
get an answer or an error naming the model (not a hang, not a 500). For every fault: the
affected client gets an answer naming the runner's death (an ``error``
event or an HTTP 502/503 with the reason, not a hang, not a 500), the console answers
``/system/health``, the model then answers a request again (it reloads), no stopped process is
left, and every bystander stream finishes (``done``) with its runner untouched. Figures:
survived/injected, time from the signal to the reason (p50/p99), per-kind counts.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from stress.common import (
    STREAM_ROUTES,
    ModelSpec,
    ServeProcess,
    StreamOutcome,
    module_main,
    runner_processes,
    serve_process,
    stream_request,
    summary,
)

KINDS: tuple[tuple[str, str], ...] = (
    ("sigkill", "load"), ("sigkill", "stream"), ("sigabrt", "load"), ("sigabrt", "stream"),
    ("sigstop", "load"), ("sigstop", "stream"), ("oom", "stream"), ("sigkill", "move"), ("sigstop", "move"),
)
SIGNALS = {"sigkill": signal.SIGKILL, "sigabrt": signal.SIGABRT, "sigstop": signal.SIGSTOP, "oom": signal.SIGKILL}
REASON_WORDS = {"sigkill": ("SIGKILL",), "sigabrt": ("SIGABRT",), "sigstop": ("stopped answering",),
                "oom": ("SIGKILL", "OOM")}
"""What the client's error must say, per fault (any one of the words)."""

VICTIMS = (ModelSpec("va", tier="ram", seed=1), ModelSpec("vb", tier="swap", seed=2))
BYSTANDERS = (ModelSpec("ba", tier="ram", seed=3), ModelSpec("bb", tier="swap", seed=4))
RUNNER_ENV = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_LOAD_DELAY_S": "0.25",
              "ORIN_RUNNER_TEST_TOKEN_DELAY_S": "0.02"}
CONFIG = {"token_gap_timeout_s": 2.0, "first_token_timeout_s": 5.0, "telemetry_interval_s": 1.0}
"""The watchdog far shorter than its defaults (30 s / 120 s) so a SIGSTOP is caught quickly, but
not so short that a healthy runner on a busy machine is taken for a stuck one."""
VICTIM_TOKENS = 200       # long enough that the fault always lands mid-stream
BYSTANDER_TOKENS = 24
REASON_TIMEOUT_S = 20.0   # the affected client's answer later than this is a hang


@dataclass
class FaultResult:
    index: int
    kind: str
    phase: str
    model: str
    route: str
    survived: bool = False
    time_to_reason_s: float | None = None
    queued: str | None = None  # how the client queued behind the hit stream ended
    queued_message: str = ""
    problems: list[str] = field(default_factory=list)


class Bystanders:
    """Clients streaming from the bystander models in a loop until stopped; every stream must
    finish with ``done``."""

    def __init__(self, url: str, per_model: int, rng: random.Random) -> None:
        self.url = url
        self.outcomes: list[StreamOutcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(spec.id, rng.randrange(len(STREAM_ROUTES))),
                                          name=f"bystander-{spec.id}-{i}", daemon=True)
                         for spec in BYSTANDERS for i in range(per_model)]

    def start(self) -> Bystanders:
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self, model: str, offset: int) -> None:
        with httpx.Client(base_url=self.url) as client:
            n = offset
            while not self._stop.is_set():
                outcome = stream_request(client, STREAM_ROUTES[n % len(STREAM_ROUTES)], model,
                                         max_tokens=BYSTANDER_TOKENS, timeout=30)
                n += 1
                with self._lock:
                    self.outcomes.append(outcome)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def failures(self) -> list[StreamOutcome]:
        with self._lock:
            return [o for o in self.outcomes if o.kind != "done"]


def _status(client: httpx.Client, model: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/models/{model}").raise_for_status().json()
    return answer


def _wait_state(client: httpx.Client, model: str, states: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(client, model)
        if status["state"] in states:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model} did not reach {'/'.join(states)} (state {status['state']})")
        time.sleep(0.005)


def _mapped_model(pid: int) -> str | None:
    """The model whose ``<id>.gguf`` the runner ``pid`` has mapped (a loaded runner maps its
    file: both tiers use mmap), None when it maps none (a spare, a load not yet begun). The API
    shows no pids, so the script finds runners the way an operator would, in /proc."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                if line.rstrip().endswith(".gguf"):
                    return Path(line.split(None, 5)[-1].strip()).stem
    except OSError:
        return None
    return None


def runner_of(console: int, model: str) -> int | None:
    """The pid of the loaded runner of ``model`` under the console (None: none)."""
    for proc in runner_processes(console):
        if _mapped_model(proc.pid) == model:
            return proc.pid
    return None


def _owned_pids(console: int) -> set[int]:
    return {p.pid for p in runner_processes(console) if _mapped_model(p.pid) is not None}


def _loading_pid(console: int, model: str, before: dict[int, float], owned: set[int]) -> int | None:
    """The runner loading ``model``: one started for it (``--model-id model``), else the spare it
    adopted (the oldest runner that was there before, serves no model, and still lives)."""
    free = []
    for proc in runner_processes(console):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if f"--model-id={model}" in cmdline or ("--model-id" in cmdline and model in cmdline):
            return proc.pid
        if proc.pid in before and proc.pid not in owned:
            free.append((before[proc.pid], proc.pid))
    return min(free)[1] if free else None


def _oom_pick_is_a_runner(console: int) -> bool:
    """Whether the kernel's OOM choice among the console and its runners (highest oom_score) is a
    runner, and the console's score is the lowest of all."""
    scores = {}
    for pid in [console, *(p.pid for p in runner_processes(console))]:
        try:
            scores[pid] = int(Path(f"/proc/{pid}/oom_score").read_text())
        except (OSError, ValueError):
            continue
    others = [s for pid, s in scores.items() if pid != console]
    return console in scores and bool(others) and scores[console] < min(others)


def _reason_ok(outcome: StreamOutcome, kind: str, model: str) -> str | None:
    """None when the client's answer names the runner's death; else what is wrong."""
    if outcome.kind not in ("error", "http"):
        return f"the client got {outcome.kind!r} ({outcome.message[:120]!r}), not the runner's death"
    if outcome.status is not None and outcome.status >= 500 and outcome.status not in (502, 503):
        return f"HTTP {outcome.status}: {outcome.message[:160]!r}"
    if outcome.error_type in ("InternalError", "server_error") and "runner" not in outcome.message:
        return f"an internal error, not the reason: {outcome.message[:160]!r}"
    if not any(word in outcome.message for word in REASON_WORDS[kind]):
        return f"the error does not name the death ({'/'.join(REASON_WORDS[kind])}): {outcome.message[:200]!r}"
    if model not in outcome.message:
        return f"the error does not name the model: {outcome.message[:200]!r}"
    return None


def inject(server: ServeProcess, client: httpx.Client, index: int, kind: str, phase: str, model: str,
           route: str) -> FaultResult:
    """One fault, and every check that follows it."""
    if phase == "move":
        return inject_move(server, client, index, kind, model, route)
    result = FaultResult(index, kind, phase, model, route)
    console = server.pid
    if phase == "load":
        client.post(f"/models/{model}/unload").raise_for_status()
        _wait_state(client, model, ("unloaded",))
    else:
        if _status(client, model)["state"] != "ready":
            client.post(f"/models/{model}/load", json={}).raise_for_status()
        _wait_state(client, model, ("ready",))
    time.sleep(0.05)  # a spare taken by the previous fault has started again
    before = {}
    for proc in runner_processes(console):
        try:
            before[proc.pid] = proc.create_time()
        except psutil.Error:
            continue
    owned = _owned_pids(console)
    streaming = threading.Event()
    deep = 24 if kind == "oom" else 2
    holder: list[StreamOutcome] = []

    def reached(n: int) -> bool:
        if n >= deep:
            streaming.set()
        return False  # never drop: the fault ends the stream

    def affected() -> None:
        with httpx.Client(base_url=client.base_url) as own:
            holder.append(stream_request(own, route, model, max_tokens=VICTIM_TOKENS, timeout=REASON_TIMEOUT_S + 30,
                                         on_token=reached))

    thread = threading.Thread(target=affected, name=f"affected-{index}", daemon=True)
    thread.start()
    pid: int | None = None
    deadline = time.monotonic() + 20
    while pid is None and time.monotonic() < deadline and thread.is_alive():
        if phase == "load":
            if _status(client, model)["state"] == "loading":
                pid = _loading_pid(console, model, before, owned)
        elif streaming.wait(0.005):
            pid = runner_of(console, model)
        time.sleep(0.002)
    if pid is None:
        thread.join(REASON_TIMEOUT_S)
        result.problems.append(f"no runner to hit ({phase}): the client got "
                               f"{holder[0].kind if holder else 'nothing'}")
        return result
    queued: list[StreamOutcome] = []
    waiter = None
    if phase == "stream":  # a second client waits in the model's queue behind the first

        def wait_in_queue() -> None:
            with httpx.Client(base_url=client.base_url) as own:
                queued.append(stream_request(own, route, model, max_tokens=8, timeout=REASON_TIMEOUT_S + 30))

        waiter = threading.Thread(target=wait_in_queue, name=f"queued-{index}", daemon=True)
        waiter.start()
        deadline = time.monotonic() + 5
        while _status(client, model)["queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.002)
    if kind == "oom" and not _oom_pick_is_a_runner(console):
        result.problems.append("the console's oom_score is not the lowest: a real OOM kill could take it")
    killed_at = time.monotonic()
    try:
        os.kill(pid, SIGNALS[kind])
    except ProcessLookupError:
        result.problems.append("the runner was gone before the signal")
    thread.join(REASON_TIMEOUT_S)
    if thread.is_alive() or not holder:
        result.problems.append(f"the client hung: no answer {REASON_TIMEOUT_S:.0f} s after {kind}")
    else:
        outcome = holder[0]
        result.time_to_reason_s = outcome.ended - killed_at
        problem = _reason_ok(outcome, kind, model)
        if problem:
            result.problems.append(problem)
    if waiter is not None:
        waiter.join(REASON_TIMEOUT_S)
        result.queued = (queued[0].error_type or queued[0].kind) if queued else "hung"
        result.queued_message = queued[0].message[:200] if queued else ""
        problem = _queued_ok(queued, model)
        if problem:
            result.problems.append(problem)
    _check_after(server, client, result, pid)
    result.survived = not result.problems
    return result


def _queued_ok(queued: list[StreamOutcome], model: str) -> str | None:
    """The queued client: an answer (a restarted runner served it) or an error naming the
    model, never a hang or an internal error."""
    if not queued:
        return f"the queued client hung: no answer {REASON_TIMEOUT_S:.0f} s after the fault"
    outcome = queued[0]
    if outcome.kind == "done":
        return None
    if outcome.kind not in ("error", "http") or (outcome.status or 0) == 500 or model not in outcome.message:
        return f"the queued client got {outcome.kind} {outcome.status or ''}: {outcome.message[:160]!r}"
    return None


def inject_move(server: ServeProcess, client: httpx.Client, index: int, kind: str, model: str,
                route: str) -> FaultResult:
    """A fault in the new runner of a tier move (make-before-break) while a client streams from
    the old one: the move fails with the reason, the model stays ready on its old runner, and
    that client's stream finishes unharmed."""
    result = FaultResult(index, kind, "move", model, route)
    console = server.pid
    if _status(client, model)["state"] != "ready":
        client.post(f"/models/{model}/load", json={}).raise_for_status()
    status = _wait_state(client, model, ("ready",))
    time.sleep(0.05)
    old_pid = runner_of(console, model)
    before = {}
    for proc in runner_processes(console):
        try:
            before[proc.pid] = proc.create_time()
        except psutil.Error:
            continue
    owned = _owned_pids(console)
    streaming = threading.Event()
    holder: list[StreamOutcome] = []

    def reached(n: int) -> bool:
        if n >= 2:
            streaming.set()
        return False

    def reader() -> None:
        with httpx.Client(base_url=client.base_url) as own:
            holder.append(stream_request(own, route, model, max_tokens=60, timeout=60, on_token=reached))

    thread = threading.Thread(target=reader, name=f"move-reader-{index}", daemon=True)
    thread.start()
    if not streaming.wait(20):
        result.problems.append("the stream on the old runner did not start")
        thread.join(30)
        return result
    target = "swap" if status["tier"] == "ram" else "ram"
    answer = client.post(f"/models/{model}/move", json={"tier": target})
    if answer.status_code != 202:
        result.problems.append(f"the move was not started: HTTP {answer.status_code} {answer.text[:200]}")
        thread.join(30)
        return result
    op_id = answer.json()["operation"]["id"]
    pid = None
    deadline = time.monotonic() + 20
    while pid is None and time.monotonic() < deadline:
        if _status(client, model)["state"] == "moving":
            pid = _loading_pid(console, model, before, owned | ({old_pid} if old_pid else set()))
        time.sleep(0.002)
    if pid is None or pid == old_pid:
        result.problems.append("no new runner to hit during the move")
        thread.join(30)
        return result
    killed_at = time.monotonic()
    os.kill(pid, SIGNALS[kind])
    operation: dict[str, Any] = {}
    while time.monotonic() < killed_at + REASON_TIMEOUT_S:
        operation = client.get(f"/operations/{op_id}").json()
        if operation.get("state") != "running":
            break
        time.sleep(0.005)
    if operation.get("state") == "running":
        result.problems.append(f"the move hung: still running {REASON_TIMEOUT_S:.0f} s after {kind}")
    else:
        result.time_to_reason_s = time.monotonic() - killed_at
        message = str((operation.get("error") or {}).get("message", ""))
        if operation.get("state") != "failed" or not any(w in message for w in REASON_WORDS[kind]):
            result.problems.append(f"the move ended {operation.get('state')!r} without the reason: {message[:200]!r}")
    thread.join(60)
    if not holder or holder[0].kind != "done":
        got = f"{holder[0].kind}: {holder[0].message[:160]}" if holder else "nothing"
        result.problems.append(f"the stream on the old runner was harmed: {got}")
    after = _status(client, model)
    if after["state"] != "ready" or after["tier"] != status["tier"] or runner_of(console, model) != old_pid:
        result.problems.append(f"the model did not stay on its old runner: {after['state']} in {after['tier']}")
    _check_after(server, client, result, pid)
    result.survived = not result.problems
    return result


def _check_after(server: ServeProcess, client: httpx.Client, result: FaultResult, pid: int) -> None:
    """The console lives, the hit runner is gone (not left stopped), the model answers again."""
    if server.process.poll() is not None:
        result.problems.append(f"the console exited ({server.process.returncode})")
        return
    try:
        if client.get("/system/health", timeout=5).status_code != 200:
            result.problems.append("/system/health did not answer 200")
    except httpx.HTTPError as exc:
        result.problems.append(f"/system/health failed: {exc}")
        return
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        time.sleep(0.01)
    else:
        if psutil.pid_exists(pid):
            result.problems.append(f"the hit runner {pid} still lives 10 s later")
            os.kill(pid, signal.SIGKILL)  # leave no frozen process behind
    body = {"prompt": "again", "model": result.model, "mode": "manual", "max_tokens": 4}
    again = client.post("/generate", json=body, timeout=30)
    if again.status_code != 200:
        result.problems.append(f"the model did not answer again: HTTP {again.status_code} {again.text[:200]}")


def run(quick: bool, seed: int, *, faults: int | None = None, folder: Path | None = None,
        per_model: int = 1, **_: Any) -> dict[str, Any]:
    """Inject ``faults`` faults (7 quick, 100 full) and return the figures."""
    import tempfile

    count = faults if faults is not None else (len(KINDS) if quick else 100)
    rng = random.Random(seed)
    plan = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(plan)
    work = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="stress-faults-"))
    results: list[FaultResult] = []
    started = time.monotonic()
    with serve_process(work / "faults", [*VICTIMS, *BYSTANDERS], env=RUNNER_ENV, config=CONFIG) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        for spec in BYSTANDERS:
            client.post(f"/models/{spec.id}/load", json={}).raise_for_status()
            _wait_state(client, spec.id, ("ready",))
        bystander_pids = {spec.id: runner_of(server.pid, spec.id) for spec in BYSTANDERS}
        bystanders = Bystanders(server.url, per_model, rng).start()
        try:
            for index, (kind, phase) in enumerate(plan):
                model = VICTIMS[index % len(VICTIMS)].id
                route = STREAM_ROUTES[rng.randrange(len(STREAM_ROUTES))]
                result = inject(server, client, index, kind, phase, model, route)
                results.append(result)
                if result.problems:
                    print(f"stress.faults: #{index} {kind}@{phase} {model} {route}: {'; '.join(result.problems)}",
                          file=sys.stderr, flush=True)
                if server.process.poll() is not None:
                    break
        finally:
            bystanders.stop()
        alive = server.process.poll() is None
        after_pids = {spec.id: runner_of(server.pid, spec.id) for spec in BYSTANDERS} if alive else {}
    failures = bystanders.failures()
    survived = sum(r.survived for r in results)
    reason_times = [r.time_to_reason_s for r in results if r.time_to_reason_s is not None]
    by_kind: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = by_kind.setdefault(f"{r.kind}@{r.phase}", {"injected": 0, "survived": 0})
        entry["injected"] += 1
        entry["survived"] += r.survived
    for key, entry in by_kind.items():
        entry["time_to_reason_ms"] = summary([r.time_to_reason_s for r in results if r.time_to_reason_s is not None
                                              and f"{r.kind}@{r.phase}" == key])
    deaths = [r.time_to_reason_s for r in results if r.time_to_reason_s is not None and r.kind != "sigstop"]
    bystanders_ok = not failures and after_pids == bystander_pids
    return {
        "injected": count,
        "survived": survived,
        "survived_of_injected": f"{survived}/{count}",
        "time_to_reason_ms": summary(reason_times),
        "time_to_reason_ms_deaths": summary(deaths),  # SIGKILL/SIGABRT/OOM: no watchdog involved
        "by_kind": by_kind,
        "queued_clients": dict(Counter(r.queued for r in results if r.queued is not None)),
        "queued_not_served": [f"{r.kind}@{r.phase} {r.route}: {r.queued}: {r.queued_message}"
                              for r in results if r.queued not in (None, "done")][:5],
        "bystander_streams": len(bystanders.outcomes),
        "bystander_failures": len(failures),
        "bystander_failure_examples": [f"{o.model} {o.route}: {o.kind} {o.message[:160]}" for o in failures[:5]],
        "bystander_runners_untouched": after_pids == bystander_pids,
        "console_survived": alive,
        "problems": [f"#{r.index} {r.kind}@{r.phase} {r.model} {r.route}: {'; '.join(r.problems)}"
                     for r in results if r.problems][:20],
        "wall_s": round(time.monotonic() - started, 1),
        "goal_met": alive and survived == count and len(results) == count and bystanders_ok,
    }


if __name__ == "__main__":
    sys.exit(module_main(run, name="stress.faults"))
