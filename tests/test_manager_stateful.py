"""A stateful property test: random loads, moves, unloads, pins, generations and cancels from
several threads on models of different sizes; the scheduler's invariant holds after every
step and no runner process outlives the manager."""

from __future__ import annotations

import contextlib
import functools
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from orin_console.core.cancel import CancelToken
from orin_console.core.errors import OrinError
from orin_console.core.manager.manager import Manager
from orin_console.core.memory.admission import Budgets
from orin_console.core.runner import GenerateRequest
from orin_console.core.tier import Tier
from orin_console.testing.managers import make_manager
from orin_console.testing.tiny_models import write_tiny_llama
from orin_console.testing.waits import wait_until

from runner_procs import runner_processes

SHAPES = {"small": {}, "wide": {"n_embd": 128, "n_ff": 256}, "deep": {"n_layers": 4, "n_embd": 96, "n_ff": 192}}
MODELS = ["small", "wide", "deep", "small2"]
REQUEST = GenerateRequest(prompt="hi", max_tokens=3, temperature=0.0)


@functools.cache
def model_files() -> Path:
    """The generated models, written once per test session."""
    folder = Path(tempfile.mkdtemp(prefix="orin-stateful-"))
    for name, shape in SHAPES.items():
        write_tiny_llama(folder / f"{name}.gguf", n_ctx=512, ascii_output=True, **shape)  # type: ignore[arg-type]
    return folder


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        files = model_files()
        self.folder = Path(tempfile.mkdtemp(prefix="orin-stateful-run-"))
        text = ""
        for mid in MODELS:
            source = files / f"{mid.rstrip('2')}.gguf"
            (self.folder / f"{mid}.gguf").symlink_to(source)
            tier = "ram" if mid in ("small", "deep") else "swap"
            text += (f'[[models]]\nid = "{mid}"\npath = "{mid}.gguf"\ntasks = ["chat"]\ntier = "{tier}"\n'
                     'context = 512\n\n')
        (self.folder / "models.toml").write_text(text)
        with make_manager(self.folder) as probe:
            small = probe.prediction("small", "ram").total
        # The RAM tier holds about two models, the swap tier about three.
        self.budgets = Budgets(ram=small * 5 // 2, swap=small * 7 // 2, max_model=2**32, reserve=0)
        self.manager: Manager = make_manager(self.folder, budgets=self.budgets, queue_limit=2).start()
        self.futures: list[Future] = []  # type: ignore[type-arg]
        self.threads: list[threading.Thread] = []
        self.tokens: list[CancelToken] = []

    def _ask(self, call: object) -> None:
        try:
            future = call()  # type: ignore[operator]
        except OrinError:  # in transition: a clear refusal, nothing changed
            return
        self.futures.append(future)

    @rule(mid=st.sampled_from(MODELS), tier=st.sampled_from(["ram", "swap", None]))
    def load(self, mid: str, tier: str | None) -> None:
        self._ask(lambda: self.manager.load(mid, tier))

    @rule(mid=st.sampled_from(MODELS), tier=st.sampled_from(["ram", "swap", "disk"]))
    def move(self, mid: str, tier: str) -> None:
        self._ask(lambda: self.manager.move(mid, tier))

    @rule(mid=st.sampled_from(MODELS))
    def unload(self, mid: str) -> None:
        self._ask(lambda: self.manager.unload(mid))

    @rule(mid=st.sampled_from(MODELS), pinned=st.booleans())
    def pin(self, mid: str, pinned: bool) -> None:
        self.manager.pin(mid, pinned)

    @rule(mid=st.sampled_from(MODELS), cancel_soon=st.booleans())
    def generate(self, mid: str, cancel_soon: bool) -> None:
        token = CancelToken()
        self.tokens.append(token)

        def run() -> None:
            try:
                with self.manager.generate(mid, REQUEST, load_timeout=60, cancel=token) as stream:
                    for _ in stream:
                        pass
            except OrinError:
                pass  # refused, cancelled, unloaded under it: each a clear error

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()
        if cancel_soon:
            token.cancel()

    @rule(mid=st.sampled_from(MODELS))
    def cancel(self, mid: str) -> None:
        self.manager.cancel(mid)

    @rule(mids=st.lists(st.sampled_from(MODELS), min_size=2, max_size=4),
          tiers=st.lists(st.sampled_from(["ram", "swap"]), min_size=4, max_size=4))
    def burst(self, mids: list[str], tiers: list[str]) -> None:
        """Several loads and moves from several threads at the same moment."""
        barrier = threading.Barrier(len(mids))

        def one(mid: str, tier: str) -> None:
            barrier.wait()
            self._ask(lambda: self.manager.load(mid, tier))

        threads = [threading.Thread(target=one, args=(m, t)) for m, t in zip(mids, tiers, strict=False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    @invariant()
    def within_budgets(self) -> None:
        reserved = self.manager.scheduler.reserved()
        assert reserved[Tier.RAM] <= self.budgets.ram, reserved
        assert reserved[Tier.SWAP] <= self.budgets.swap, reserved
        for usage in self.manager.status().tiers:
            assert usage.used <= usage.budget, usage

    def teardown(self) -> None:
        try:
            for future in self.futures:
                with contextlib.suppress(OrinError, TimeoutError):
                    future.result(60)
            self.within_budgets()
        finally:
            self.manager.close()
            for thread in self.threads:
                thread.join(30)
        assert not any(t.is_alive() for t in self.threads)
        assert self.manager.scheduler.reserved() == {Tier.RAM: 0, Tier.SWAP: 0}
        wait_until(lambda: not runner_processes(), timeout=5, what="every runner process to end")


ManagerMachine.TestCase.settings = settings(
    max_examples=6, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True,
)
TestManagerStateful = ManagerMachine.TestCase
