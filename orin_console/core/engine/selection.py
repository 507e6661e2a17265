"""Model selection: which catalog model serves a request, and why.

Three modes (DESIGN.md, "Selection and the inference engine"):

* ``manual`` — the named model; a clear error when it is unknown or cannot be admitted.
* ``auto`` — every catalog model is scored and the best one wins.
* ``hybrid`` — the operator's preferred model when it is loaded and fits the task, else auto.

The auto score is a sum of points (``docs/selection.md`` has the table):

* **task fit** × 100: 1.0 when the model lists the task, less when a listed task can stand in
  (a chat model can summarise, classify and extract; it writes code only weakly; a base
  ``completion`` model is poor at chat), 0 when nothing fits;
* **priority** from ``models.toml`` × 0.3 (0..30);
* **tier**: resident in RAM +25, loaded in swap +15, loading +10, must load from disk 0. The
  bonus *is* the "clearly better" margin: a model that must load wins over a resident one
  only when its fit and priority are ahead by more than the resident's bonus;
* **measured speed** (0..8, log scale of tokens/s; unmeasured counts as the middle) and
  **usage** (0..4, saturating in the decayed request count): small tie-breakers;
* a model whose runner failed is kept, last (−200): the next request may restart it.

Ties go to the higher priority, then to the lower id. A model that must load and that the
manager's ``admissible`` check refuses is skipped. Per catalog the static part (fit and
priority per task) is computed once and ranked, so a request scores only the models that can
still win: well under 0.1 ms for a hundred models.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, Protocol

from orin_console.core.catalog.store import TASKS, Catalog, CatalogEntry, Task
from orin_console.core.engine.tasks import TaskGuess
from orin_console.core.errors import OrinError
from orin_console.core.tier import LOADED_TIERS

Mode = Literal["manual", "auto", "hybrid"]
MODES: Final = ("manual", "auto", "hybrid")

#: FIT[task][listed task]: how well a model that lists ``listed task`` serves ``task``.
FIT: Final[dict[str, dict[str, float]]] = {
    "chat": {"chat": 1.0, "code": 0.3, "classification": 0.2, "summarisation": 0.2,
             "extraction": 0.2, "completion": 0.1},
    "code": {"code": 1.0, "chat": 0.3, "completion": 0.15},
    "classification": {"classification": 1.0, "chat": 0.6, "extraction": 0.3},
    "summarisation": {"summarisation": 1.0, "chat": 0.6, "completion": 0.2},
    "extraction": {"extraction": 1.0, "chat": 0.55, "code": 0.3, "classification": 0.2},
    "completion": {"completion": 1.0, "chat": 0.4, "summarisation": 0.1},
}
#: The fit from which a hybrid-mode preferred model is "fit for the task".
ACCEPTABLE_FIT: Final = 0.5
FIT_POINTS: Final = 100.0
PRIORITY_POINTS: Final = 0.3
TIER_BONUS: Final[dict[str, float]] = {"ram": 25.0, "swap": 15.0, "loading": 10.0, "disk": 0.0,
                                       "failed": -200.0}
SPEED_POINTS: Final = 8.0
SPEED_REFERENCE: Final = 100.0  # tok/s that earns the full speed points
USAGE_POINTS: Final = 4.0
USAGE_HALF: Final = 5.0         # decayed request count that earns half the usage points
_COLD_DYNAMIC: Final = SPEED_POINTS + USAGE_POINTS  # the most a model not loaded can add
_UNMEASURED_SPEED: Final = SPEED_POINTS / 2
_LOG_REFERENCE: Final = math.log1p(SPEED_REFERENCE)
#: How many ranked candidates a selection keeps for display.
SHOWN: Final = 3
_TIER_WORDS: Final = {"ram": "resident in ram", "swap": "loaded in swap", "loading": "loading now",
                      "disk": "must load from disk", "failed": "failed last time (would restart)"}
# Plain-text sets: the residency map holds text, and a str-in-frozenset test is several times
# faster than comparing with enum members (this runs per model per request).
_LOADED: Final = frozenset(tier.value for tier in LOADED_TIERS)
_ADMITTED: Final = _LOADED | {"loading"}  # no admission check needed


class SelectionError(OrinError):
    """No model can be selected: unknown or inadmissible manual model, empty catalog, bad mode."""


@dataclass(frozen=True, slots=True)
class UsageStats:
    """What the manager has measured for one model (all optional).

    Attributes:
        count: decayed number of recent requests.
        tok_per_s: generation speed, tokens per second.
        ttft_s: time to first token, seconds.
        last_used: when it last served a request (``time.time()``).
    """

    count: float = 0.0
    tok_per_s: float | None = None
    ttft_s: float | None = None
    last_used: float | None = None


class UsageFigures(Protocol):
    """What selection reads from a usage record: :class:`UsageStats`, or the usage tracker's
    own records, which carry the same fields."""

    @property
    def count(self) -> float:
        """Decayed number of recent requests."""
        ...

    @property
    def tok_per_s(self) -> float | None:
        """Generation speed in tokens per second, None before it was measured."""
        ...


class Candidate(NamedTuple):
    """One scored model, for display."""

    model_id: str
    score: float
    why: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The decision and its explanation.

    Attributes:
        model_id: the chosen model.
        task: the task it was chosen for.
        mode: the mode that decided.
        score: the chosen model's points (rounded to 0.01, as are the others).
        runner_up: the next best model, if any.
        runner_up_score: its points.
        reasons: why, in operator words (chosen model first, then the decision).
        explanation: one line for the TUI and the API.
        candidates: the chosen model, then the best few others, best first.
        guess: the task detection behind ``task``.
    """

    model_id: str
    task: Task
    mode: Mode
    score: float
    runner_up: str | None
    runner_up_score: float | None
    reasons: tuple[str, ...]
    explanation: str
    candidates: tuple[Candidate, ...]
    guess: TaskGuess


class _Static(NamedTuple):
    points: float  # fit and priority
    priority: int
    model_id: str
    fit: float
    fit_words: str


class _Scored(NamedTuple):
    key: tuple[float, int, str]  # sorts best first
    score: float
    static: _Static
    tier: str
    tok_per_s: float | None


def _fit(entry: CatalogEntry, task: str) -> tuple[float, str]:
    table = FIT[task]
    best, via = 0.0, ""
    for listed in entry.tasks:
        value = table.get(listed, 0.0)
        if value > best:
            best, via = value, listed
    if best >= 1.0:
        return best, f"fits {task}"
    if best > 0.0:
        return best, f"can do {task} as a {via} model"
    return 0.0, f"does not list {task}"


class Selector:
    """Selection over one catalog, with the per-task ranking computed once.

    Args:
        catalog: the catalog in force (immutable; build a new selector for a new catalog).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._ranked: dict[str, tuple[_Static, ...]] = {}
        for task in TASKS:
            rows = []
            for entry in catalog:
                fit, words = _fit(entry, task)
                points = fit * FIT_POINTS + entry.priority * PRIORITY_POINTS
                rows.append(_Static(points, entry.priority, entry.id, fit, words))
            rows.sort(key=lambda r: (-r.points, -r.priority, r.model_id))
            self._ranked[task] = tuple(rows)
        self._static = {task: {r.model_id: r for r in rows} for task, rows in self._ranked.items()}

    def _score(self, static: _Static, residency: Mapping[str, str],
               usage: Mapping[str, UsageFigures]) -> _Scored:
        tier = residency.get(static.model_id, "disk")
        bonus = TIER_BONUS.get(tier)
        if bonus is None:  # an unknown state counts as not loaded
            tier, bonus = "disk", 0.0
        stats = usage.get(static.model_id)
        score = static.points + bonus + _dynamic(stats)
        speed = stats.tok_per_s if stats is not None else None
        return _Scored((-score, -static.priority, static.model_id), score, static, tier, speed)

    def rank(self, task: str, residency: Mapping[str, str], usage: Mapping[str, UsageFigures],
             admissible: Callable[[str], bool] | None = None, *, keep: int = SHOWN,
             exclude: str | None = None) -> tuple[list[_Scored], list[str]]:
        """The best ``keep`` models for ``task``, best first, and the ids skipped as
        inadmissible.

        Models with a tier bonus (loaded or loading: a handful on a Jetson) are scored first;
        then the rest in the precomputed order of fit and priority, stopping as soon as the
        next one could not enter the top ``keep`` even with full speed and usage points.
        """
        # rows: (sort key, static, tier, stats); the key ends with the unique id, so rows never
        # compare beyond it. _Scored objects are built only for the winners.
        rows: list[tuple[tuple[float, int, str], _Static, str, UsageFigures | None]] = []
        skipped: list[str] = []
        static_of = self._static[task]
        warm = []  # (fit + priority + tier bonus, id, static, tier) of loaded and loading models
        for model_id, tier in residency.items():
            if tier in _ADMITTED and model_id != exclude:
                static = static_of.get(model_id)
                if static is not None:
                    warm.append((static.points + TIER_BONUS[tier], model_id, static, tier))
        warm.sort(reverse=True)
        floor = -math.inf
        for base, model_id, static, tier in warm:
            if base + _COLD_DYNAMIC < floor:
                break
            stats = usage.get(model_id)
            score = base + _dynamic(stats)
            bisect.insort(rows, ((-score, -static.priority, model_id), static, tier, stats))
            if len(rows) > keep:
                rows.pop()
            if len(rows) >= keep:
                floor = -rows[-1][0][0]
        for static in self._ranked[task]:
            points = static.points
            if points + _COLD_DYNAMIC < floor:
                break
            model_id = static.model_id
            tier = residency.get(model_id, "disk")
            if tier in _ADMITTED or model_id == exclude:
                continue
            stats = usage.get(model_id)
            score = points + TIER_BONUS.get(tier, 0.0) + _dynamic(stats)
            if score < floor:
                continue
            key = (-score, -static.priority, model_id)
            if len(rows) >= keep and key >= rows[-1][0]:
                continue
            if admissible is not None and not admissible(model_id):
                skipped.append(model_id)
                continue
            bisect.insort(rows, (key, static, tier if tier in TIER_BONUS else "disk", stats))
            if len(rows) > keep:
                rows.pop()
            if len(rows) >= keep:
                floor = -rows[-1][0][0]
        top = [_Scored(key, -key[0], static, tier, stats.tok_per_s if stats is not None else None)
               for key, static, tier, stats in rows]
        return top, skipped

    def select(self, mode: str, guess: TaskGuess, residency: Mapping[str, str],
               usage: Mapping[str, UsageFigures], *, model: str | None = None,
               preferred: str | None = None,
               admissible: Callable[[str], bool] | None = None) -> Selection:
        """See :func:`select`."""
        if not len(self.catalog):
            raise SelectionError(f"the catalog {self.catalog.path} has no models: add one with "
                                 "`orin-console models add PATH`")
        task = guess.task
        if mode == "manual":
            return self._manual(guess, residency, usage, model, admissible)
        if mode == "hybrid":
            note = self._hybrid_refusal(task, residency, preferred)
            if note is None:
                assert preferred is not None
                return self._chosen(guess, "hybrid", self._score(self._static[task][preferred],
                                    residency, usage), residency, usage, admissible,
                                    (f"preferred model {preferred}",))
            top, skipped = self.rank(task, residency, usage, admissible)
            return self._from_ranking(guess, "hybrid", top, skipped, (note,))
        if mode != "auto":
            raise SelectionError(f"unknown selection mode {mode!r} (use one of: {', '.join(MODES)})")
        top, skipped = self.rank(task, residency, usage, admissible)
        return self._from_ranking(guess, "auto", top, skipped, ())

    def _hybrid_refusal(self, task: str, residency: Mapping[str, str],
                        preferred: str | None) -> str | None:
        """Why hybrid mode cannot use the preferred model (None: it can)."""
        if preferred is None:
            return "no preferred model set, so auto"
        if preferred not in self.catalog:
            return f"preferred {preferred} is not in the catalog, so auto"
        tier = residency.get(preferred, "disk")
        if tier not in _LOADED:
            return f"preferred {preferred} not loaded ({tier}), so auto"
        if self._static[task][preferred].fit < ACCEPTABLE_FIT:
            return f"preferred {preferred} does not fit {task}, so auto"
        return None

    def _manual(self, guess: TaskGuess, residency: Mapping[str, str],
                usage: Mapping[str, UsageFigures], model: str | None,
                admissible: Callable[[str], bool] | None) -> Selection:
        if model is None:
            raise SelectionError("manual selection needs a model id (or use mode auto)")
        if model not in self.catalog:
            known = ", ".join(entry.id for entry in self.catalog)
            raise SelectionError(f"no model '{model}' in the catalog (known: {known})")
        scored = self._score(self._static[guess.task][model], residency, usage)
        if scored.tier not in _ADMITTED and admissible is not None and not admissible(model):
            raise SelectionError(
                f"model '{model}' is not loaded and cannot be admitted now: it does not fit the "
                "free memory (or its file cannot be read, or its context is above the model's trained one: "
                "see `orin-console models list`); unload or "
                "move a model, or pick a loaded one")
        return self._chosen(guess, "manual", scored, residency, usage, admissible,
                            ("chosen by the operator",))

    def _chosen(self, guess: TaskGuess, mode: Mode, chosen: _Scored,
                residency: Mapping[str, str], usage: Mapping[str, UsageFigures],
                admissible: Callable[[str], bool] | None, lead: tuple[str, ...]) -> Selection:
        """A selection of a given model; the runner-up is what auto would pick instead."""
        others, skipped = self.rank(guess.task, residency, usage, admissible,
                                    keep=SHOWN - 1, exclude=chosen.static.model_id)
        return _build(guess, mode, [chosen, *others], skipped, lead, compare=False)

    def _from_ranking(self, guess: TaskGuess, mode: Mode, top: list[_Scored], skipped: list[str],
                      lead: tuple[str, ...]) -> Selection:
        if not top:
            raise SelectionError(
                f"no model can serve {guess.task}: every candidate is refused by admission "
                f"({', '.join(skipped)}); unload or move a model to make room (a model whose file "
                "cannot be read, or whose context is above its trained one, is refused too: see "
                "`orin-console models list`)")
        return _build(guess, mode, top, skipped, lead, compare=True)


def _dynamic(stats: UsageFigures | None) -> float:
    """Speed and usage points."""
    if stats is None:
        return _UNMEASURED_SPEED
    speed = stats.tok_per_s
    if speed is None or speed <= 0:
        points = _UNMEASURED_SPEED
    else:
        points = SPEED_POINTS * min(1.0, math.log1p(speed) / _LOG_REFERENCE)
    if stats.count > 0:
        points += USAGE_POINTS * stats.count / (stats.count + USAGE_HALF)
    return points


def _why(scored: _Scored) -> str:
    parts = [scored.static.fit_words, _TIER_WORDS[scored.tier]]
    if scored.tok_per_s:
        parts.append(f"{scored.tok_per_s:.0f} tok/s")
    return ", ".join(parts)


def _build(guess: TaskGuess, mode: Mode, ranked: list[_Scored], skipped: list[str],
           lead: tuple[str, ...], *, compare: bool) -> Selection:
    chosen = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    whys = [_why(s) for s in ranked]
    reasons = [*lead, whys[0]]
    if compare and chosen.static.fit == 0.0:
        reasons.append(f"no admissible model lists {guess.task}")
    if compare and runner is not None:
        reasons.append(_decision(chosen, runner))
    if skipped:
        reasons.append(f"skipped (cannot be admitted now): {', '.join(skipped[:3])}")
    line = f"{chosen.static.model_id} for {guess.task} ({mode}): {'; '.join(reasons)}"
    if runner is not None:
        runner_words = _TIER_WORDS[runner.tier]
        if runner.static.fit != chosen.static.fit:
            runner_words = f"{runner.static.fit_words}, {runner_words}"
        line += f"; runner-up {runner.static.model_id} ({runner_words})"
    return Selection(
        model_id=chosen.static.model_id, task=guess.task, mode=mode, score=round(chosen.score, 2),
        runner_up=runner.static.model_id if runner else None,
        runner_up_score=round(runner.score, 2) if runner else None, reasons=tuple(reasons),
        explanation=line,
        candidates=tuple(Candidate(s.static.model_id, round(s.score, 2), why)
                         for s, why in zip(ranked, whys, strict=True)),
        guess=guess)


def _decision(chosen: _Scored, runner: _Scored) -> str:
    """Why the winner beat the runner-up, naming the resident-vs-cold margin when it decided."""
    resident = (chosen.tier in _LOADED, runner.tier in _LOADED)
    # quality: everything but the tier bonus, so the margin statement is exact
    quality = (chosen.score - TIER_BONUS[chosen.tier]) - (runner.score - TIER_BONUS[runner.tier])
    if resident == (True, False) and quality < 0:
        return (f"resident beats {runner.static.model_id}, which must load and is not clearly "
                f"better (+{-quality:.1f} <= {TIER_BONUS[chosen.tier]:.0f})")
    if resident == (False, True):
        return (f"clearly better than resident {runner.static.model_id} "
                f"(+{quality:.1f} > {TIER_BONUS[runner.tier]:.0f})")
    if chosen.static.fit > runner.static.fit:
        return f"better fit than {runner.static.model_id}"
    if chosen.static.priority > runner.static.priority and quality > 0:
        return f"higher priority than {runner.static.model_id}"
    if chosen.score > runner.score:
        return f"ahead of {runner.static.model_id} on tier, speed and usage"
    return f"tie with {runner.static.model_id}, broken by priority then id"


_SELECTORS: weakref.WeakKeyDictionary[Catalog, Selector] = weakref.WeakKeyDictionary()


def selector_for(catalog: Catalog) -> Selector:
    """The (cached) selector of a catalog: built once per catalog object."""
    selector = _SELECTORS.get(catalog)
    if selector is None:
        selector = _SELECTORS[catalog] = Selector(catalog)
    return selector


def select(mode: Mode, guess: TaskGuess, catalog: Catalog, residency: Mapping[str, str],
           usage: Mapping[str, UsageFigures], *, model: str | None = None,
           preferred: str | None = None,
           admissible: Callable[[str], bool] | None = None) -> Selection:
    """Choose the model for a request, with the explanation.

    Args:
        mode: ``manual``, ``auto`` or ``hybrid``.
        guess: the detected task (:func:`orin_console.core.engine.tasks.detect_task`).
        catalog: the catalog in force.
        residency: model id -> current tier (``ram``, ``swap``, ``loading``, ``failed``;
            absent means ``disk``).
        usage: model id -> measured usage and speed (absent means unmeasured).
        model: the model for ``manual``.
        preferred: the operator's preferred model for ``hybrid``.
        admissible: the manager's cheap check whether a model that must load can be admitted
            now; a refused model is skipped (auto, hybrid) or an error (manual).

    Returns:
        The decision: model, runner-up, reasons, a one-line explanation and the candidates.

    Raises:
        SelectionError: unknown mode; manual without a model, with an unknown model (the
            message lists the known ids) or with one that cannot be admitted; an empty
            catalog; no admissible model at all.
    """
    return selector_for(catalog).select(mode, guess, residency, usage, model=model,
                                        preferred=preferred, admissible=admissible)
