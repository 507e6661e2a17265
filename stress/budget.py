"""The budget invariant under random API traffic (issue 11, part 2).

A live server on loopback (in this process, so the scheduler can be watched directly) over
generated models of different sizes (~0.3 to ~40 MB of weights) with tight budgets (RAM
150 MB, swap 200 MB: two or three runners each). Several client threads, each with its own
``random.Random(seed + n)``, send a reproducible sequence of operations over HTTP: add (a model
file not yet in the catalog), load (a random tier), move (ram/swap/disk), unload, pin/unpin,
generate (a few tokens, mostly non-streamed), and ``POST /placement/apply``. Each client's
sequence is fixed by the seed; how the clients' requests interleave is not (they are
concurrent), so the figures vary a little between runs of one seed.

Three watchers count moments where a tier's reserved bytes exceed its budget:

- a sampler thread reads ``manager.scheduler.reserved()`` every 2 ms;
- every ``TierUsageChanged`` event (published under the scheduler's lock at each change, and
  never dropped by the bus) is checked as it comes: this sees every change, not a sample;
- a second thread reads ``GET /system/status`` every 25 ms (what an API client sees).

Figures: operations (by kind and by HTTP status), samples, violations (goal 0), server errors
(HTTP 5xx other than a runner's 502/503: goal 0), and the end state: after the traffic stops and
the operations settle, every ready model holds a reservation and no reservation is left without
a model.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from orin_console.core.events.kinds import TierUsageChanged
from orin_console.core.manager.manager import Manager
from orin_console.core.memory.admission import Budgets
from stress.common import ModelSpec, live_server, module_main, write_models

MB = 2**20
BUDGETS = Budgets(ram=150 * MB, swap=200 * MB, max_model=120 * MB, reserve=256 * MB)
SIZES = {  # n_layers, n_embd, n_ff: weights ~0.3, 1.3, 6, 40 MB
    "s": (2, 64, 128), "m": (4, 128, 256), "l": (4, 256, 768), "xl": (6, 384, 1024),
}
CATALOG = (
    ModelSpec("s1", tier="ram", seed=1, n_layers=2, n_embd=64, n_ff=128),
    ModelSpec("s2", tier="swap", seed=2, n_layers=2, n_embd=64, n_ff=128, tasks=("code",)),
    ModelSpec("m1", tier="ram", seed=3, n_layers=4, n_embd=128, n_ff=256),
    ModelSpec("m2", tier="swap", seed=4, n_layers=4, n_embd=128, n_ff=256, tasks=("summarisation",)),
    ModelSpec("l1", tier="ram", seed=5, n_layers=4, n_embd=256, n_ff=768),
    ModelSpec("xl1", tier="swap", seed=6, n_layers=6, n_embd=384, n_ff=1024),
)
EXTRA = (  # files in the model folder, added over the API during the run
    ModelSpec("x1", seed=7, n_layers=2, n_embd=64, n_ff=128),
    ModelSpec("x2", seed=8, n_layers=4, n_embd=128, n_ff=256),
    ModelSpec("x3", seed=9, n_layers=4, n_embd=256, n_ff=768),
)
RUNNER_ENV = {"ORIN_RUNNER_TEST_HOOKS": "1", "ORIN_RUNNER_TEST_BALLAST_MB": "l1=60,x2=50"}
"""Two models hold more memory than predicted once loaded (the test hooks' ballast): ``l1`` 60 MB
more, ``x2`` 50 MB more. Predictions are estimates; the invariant must hold when they are wrong."""
OPS = ("load", "load", "move", "move", "unload", "pin", "generate", "generate", "apply", "add")
TIERS = ("ram", "swap")


class Watch:
    """The three watchers of the invariant."""

    def __init__(self, manager: Manager, url: str) -> None:
        self.manager = manager
        self.url = url
        self.samples = 0
        self.events = 0
        self.status_reads = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._sample, name="budget-sampler", daemon=True),
                         threading.Thread(target=self._poll_status, name="budget-status", daemon=True)]
        self._sub = manager.bus.subscribe(self._on_event, kinds=[TierUsageChanged], name="stress-budget")

    def _violation(self, where: str, tier: str, used: int, budget: int, models: object) -> None:
        with self._lock:
            self.violations.append(f"{where}: {tier} reserved {used / MB:.1f} MB > budget {budget / MB:.1f} MB "
                                   f"({models})")

    def _sample(self) -> None:
        scheduler, budgets = self.manager.scheduler, self.manager.budgets
        while not self._stop.is_set():
            reserved = scheduler.reserved()
            self.samples += 1
            for tier, used in reserved.items():
                if used > budgets.of(tier):
                    self._violation("sampler", tier.value, used, budgets.of(tier), scheduler.reservations())
            time.sleep(0.002)

    def _on_event(self, event: object) -> None:
        assert isinstance(event, TierUsageChanged)
        self.events += 1
        for usage in event.tiers:
            if usage.used > usage.budget:
                self._violation("event", usage.tier, usage.used, usage.budget, usage.models)

    def _poll_status(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                for tier in client.get("/system/status").json()["tiers"]:
                    if tier["used_bytes"] > tier["budget_bytes"]:
                        self._violation("/system/status", tier["tier"], tier["used_bytes"], tier["budget_bytes"],
                                        tier["models"])
                self.status_reads += 1
                time.sleep(0.025)

    def start(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._sub.close()


def _client_ops(url: str, folder: Path, rng: random.Random, count: int, tally: Counter[str],
                errors: list[str], lock: threading.Lock, examples: dict[str, str]) -> None:
    ids = [spec.id for spec in CATALOG]
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(count):
            op = rng.choice(OPS)
            response = _one(client, op, rng, ids, folder)
            key = f"{op} {response.status_code}"
            with lock:
                tally[key] += 1
                if response.status_code >= 400 and key not in examples:
                    examples[key] = response.text[:300]
                if response.status_code >= 500 and response.status_code not in (502, 503):
                    errors.append(f"{op}: HTTP {response.status_code} {response.text[:200]}")
            if op == "add" and response.status_code == 201:
                ids.append(response.json()["added"][0]["id"] if response.json().get("added") else "")
            time.sleep(rng.uniform(0, 0.02))


def _one(client: httpx.Client, op: str, rng: random.Random, ids: list[str], folder: Path) -> httpx.Response:
    model = rng.choice([i for i in ids if i])
    if op == "load":
        return client.post(f"/models/{model}/load", json={"tier": rng.choice(TIERS)})
    if op == "move":
        return client.post(f"/models/{model}/move", json={"tier": rng.choice((*TIERS, "disk"))})
    if op == "unload":
        return client.post(f"/models/{model}/unload")
    if op == "pin":
        return client.post(f"/models/{model}/pin", json={"pinned": rng.random() < 0.3})
    if op == "generate":
        body: dict[str, Any] = {"prompt": "budget", "model": model, "mode": "manual", "max_tokens": 4}
        if rng.random() < 0.3:
            body["stream"] = True
            with client.stream("POST", "/generate", json=body) as streamed:
                streamed.read()
                return streamed
        return client.post("/generate", json=body)
    if op == "apply":
        return client.post("/placement/apply", json={})
    extra = rng.choice(EXTRA)
    return client.post("/models/add", json={"path": str(folder / f"{extra.id}.gguf"), "id": extra.id,
                                            "tier": rng.choice(TIERS)})


def _settle(manager: Manager, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {s.state.value for s in manager.model_statuses()}
        if not states & {"loading", "moving", "unloading"}:
            return True
        time.sleep(0.05)
    return False


def _end_state(manager: Manager) -> list[str]:
    """Inconsistencies between the models' states and the scheduler's reservations."""
    problems = []
    reservations = manager.scheduler.reservations()
    held = Counter(r.model_id for r in reservations)
    for status in manager.model_statuses():
        if status.state.value == "ready" and held[status.model_id] != 1:
            problems.append(f"{status.model_id} is ready in {status.tier} with {held[status.model_id]} reservations")
        if status.state.value in ("unloaded", "failed") and held[status.model_id]:
            problems.append(f"{status.model_id} is {status.state.value} but holds "
                            f"{held[status.model_id]} reservation(s)")
    for r in reservations:
        if r.in_flight:
            problems.append(f"{r.model_id}: a reservation still in flight after the operations settled")
    return problems


def run(quick: bool, seed: int, *, folder: Path | None = None, clients: int = 4, ops: int | None = None,
        **_: Any) -> dict[str, Any]:
    """``clients`` threads of ``ops`` operations each (quick 15, full 250); the figures."""
    import tempfile

    per_client = ops if ops is not None else (15 if quick else 250)
    work = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="stress-budget-"))
    work = work / "budget"
    write_models(work, [*EXTRA])  # files only; the catalog is written by live_server
    tally: Counter[str] = Counter()
    errors: list[str] = []
    examples: dict[str, str] = {}
    lock = threading.Lock()
    started = time.monotonic()
    with live_server(work, CATALOG, budgets=BUDGETS, runner_env=RUNNER_ENV) as live:
        assert live.core is not None
        manager = live.core.manager
        watch = Watch(manager, live.url).start()
        threads = [threading.Thread(target=_client_ops, args=(live.url, work, random.Random(seed + n), per_client,
                                                              tally, errors, lock, examples),
                                    name=f"budget-client-{n}")
                   for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        settled = _settle(manager)
        time.sleep(0.1)  # the watchers see the settled state
        watch.stop()
        end_problems = _end_state(manager) if settled else ["the operations did not settle within 60 s"]
        loaded = {s.model_id: s.tier for s in manager.model_statuses() if s.state.value == "ready"}
    operations = sum(tally.values())
    by_kind: Counter[str] = Counter()
    for key, n in tally.items():
        by_kind[key.split()[0]] += n
    return {
        "operations": operations,
        "clients": clients,
        "by_kind": dict(sorted(by_kind.items())),
        "by_status": dict(sorted(tally.items())),
        "refusal_examples": dict(sorted(examples.items())),
        "samples": watch.samples,
        "events_checked": watch.events,
        "status_reads": watch.status_reads,
        "violations": len(watch.violations),
        "violation_examples": watch.violations[:5],
        "server_errors": len(errors),
        "server_error_examples": errors[:5],
        "end_state_problems": end_problems,
        "loaded_at_end": loaded,
        "budgets_mb": {"ram": BUDGETS.ram // MB, "swap": BUDGETS.swap // MB},
        "wall_s": round(time.monotonic() - started, 1),
        "goal_met": not watch.violations and not errors and not end_problems and operations == clients * per_client,
    }


if __name__ == "__main__":
    sys.exit(module_main(run, name="stress.budget"))
