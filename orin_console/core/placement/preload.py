"""Predictive preloading: when model Y is usually asked for right after model X, warm Y as
soon as X has answered.

:class:`Successors` keeps decayed counts of which model followed which (a model followed by
itself counts too, so "X then usually X again" is not read as "X then Y"). :class:`Preloader`
watches :class:`~orin_console.core.events.kinds.GenerationFinished` events and, when the
likely successor is not loaded, asks the manager to load it in the background into
:meth:`~orin_console.core.manager.manager.Manager.tier_for` (its catalog tier; swap for a
disk-tier model). The manager's scheduler decides: a load that does not fit now is refused
(admission never unloads or moves another model to make room), and the preloader only logs
it. Off unless a front end starts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from orin_console.core.errors import OrinError
from orin_console.core.events.bus import Event, Subscription
from orin_console.core.events.kinds import GenerationFinished
from orin_console.core.manager.types import ModelState

if TYPE_CHECKING:
    from orin_console.core.manager.manager import Manager
    from orin_console.core.manager.types import ModelStatus

log = logging.getLogger(__name__)


class Successors:
    """Decayed counts of "model B was asked for right after model A".

    Args:
        half_life_s: seconds after which an observed transition counts half (a day).
        clock: wall-clock source (tests pass a fake).
    """

    def __init__(self, half_life_s: float = 86400.0, clock: Callable[[], float] = time.time) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = half_life_s
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, tuple[float, float]]] = {}  # a -> b -> (count, at)
        self._last: str | None = None

    def _decayed(self, count: float, at: float, now: float) -> float:
        return float(count * 0.5 ** (max(0.0, now - at) / self.half_life_s))

    def observe(self, model_id: str) -> None:
        """Record that ``model_id`` served a request (after whatever served the last one)."""
        now = self._clock()
        with self._lock:
            if self._last is not None:
                row = self._counts.setdefault(self._last, {})
                count, at = row.get(model_id, (0.0, now))
                row[model_id] = (self._decayed(count, at, now) + 1.0, now)
            self._last = model_id

    def predict(self, after: str, *, min_count: float = 3.0,
                min_share: float = 0.6) -> tuple[str, float] | None:
        """The model most often asked for right after ``after``, and its share of what followed.

        None unless another model followed at least ``min_count`` times (decayed, with 1%
        slack so a habit seen exactly that often a moment ago counts) and made up at least
        ``min_share`` of everything that followed ``after``.
        """
        now = self._clock()
        with self._lock:
            row = {b: self._decayed(c, at, now) for b, (c, at) in self._counts.get(after, {}).items()}
        total = sum(row.values())
        others = [(count, b) for b, count in row.items() if b != after]
        if not others or total <= 0:
            return None
        count, best = max(others)
        share = count / total
        if count < min_count * 0.99 or share < min_share:
            return None
        return best, share


class Preloader:
    """Warm the likely next model after each generation (see the module docstring).

    Args:
        manager: the manager whose bus is watched and whose models are loaded.
        successors: the transition counts (a new :class:`Successors` by default).
        min_count: transitions needed before a prediction is acted on.
        min_share: the share of transitions the successor must have.
    """

    def __init__(self, manager: Manager, *, successors: Successors | None = None,
                 min_count: float = 3.0, min_share: float = 0.6) -> None:
        self.manager = manager
        self.successors = successors or Successors()
        self.min_count = min_count
        self.min_share = min_share
        self.preloaded: list[tuple[str, str]] = []
        """(after, preloaded) pairs whose load was asked for, newest last (for the UI and tests)."""
        self.last_load: Future[ModelStatus] | None = None
        """The newest preload's future (its result, or the scheduler's refusal)."""
        self._sub: Subscription | None = None

    def start(self) -> Preloader:
        """Begin watching generations."""
        if self._sub is None:
            self._sub = self.manager.bus.subscribe(self._on_event, kinds=(GenerationFinished,),
                                                   name="orin-preload")
        return self

    def stop(self) -> None:
        """Stop watching (loads already started go on)."""
        if self._sub is not None:
            self.manager.bus.unsubscribe(self._sub)
            self._sub = None

    def __enter__(self) -> Preloader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, GenerationFinished):
            self.after(event.model_id)

    def after(self, model_id: str) -> str | None:
        """Record a generation by ``model_id`` and preload its likely successor.

        Returns:
            The model a load was asked for (the scheduler may still refuse it: see
            :attr:`last_load`), or None.
        """
        self.successors.observe(model_id)
        guess = self.successors.predict(model_id, min_count=self.min_count, min_share=self.min_share)
        if guess is None:
            return None
        target = guess[0]
        manager = self.manager
        try:
            status = manager.model_status(target)
            if status.state not in (ModelState.UNLOADED, ModelState.FAILED):
                return None  # loaded or on its way
            tier = manager.tier_for(target)
            future = manager.load(target, tier)
        except OrinError as exc:
            log.info("preload of %s after %s skipped: %s", target, model_id, exc)
            return None
        log.info("preloading %s into %s: it usually follows %s (%.0f%%)", target, tier.value, model_id,
                 guess[1] * 100)
        future.add_done_callback(lambda f: _log_outcome(f, target, model_id))
        self.last_load = future
        self.preloaded.append((model_id, target))
        return target


def _log_outcome(future: Future[ModelStatus], target: str, after: str) -> None:
    error = future.exception()
    if error is not None:
        log.info("preload of %s after %s did not happen: %s", target, after, error)
