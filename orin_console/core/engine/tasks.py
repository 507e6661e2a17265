"""Task detection: which kind of work a prompt asks for, with the reasons, in microseconds.

Deterministic rules, no model call. Three kinds of evidence, each a weighted family from
:mod:`orin_console.core.engine.task_rules`:

* **cues** in the *instruction window* (the first 300 and the last 200 characters, where
  people put the instruction around a pasted passage), lower-cased and matched as whole
  words by one precompiled trie regex: "summarise", "tl;dr", "classify", "extract", "list
  all", "continue this story", "what's the difference between", "write … function" …;
* **code syntax** in the code window (the first 640 and last 192 characters): a fenced
  block, tokens that are rare in prose (``def``,
  ``=>``, ``#include``, ``SELECT``, ``{``) found by one set intersection, and the shape of
  code lines (indentation, ``;`` at line ends) counted by ``str.count``;
* **shape**: a long passage (boosts summarisation, extraction and classification cues) and a
  text that stops mid-sentence (a continuation for a base model).

Chat starts at a small baseline, so a prompt with no evidence is chat. The highest score wins
(ties go to chat, then to the order of :data:`DETECTED_TASKS`); the confidence is a softmax
over the scores. ``completion`` is returned only for explicit "continue this text" requests
or a prompt that is itself an unfinished sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from orin_console.core.catalog.store import Task
from orin_console.core.engine.task_rules import (
    CHAT_BASELINE,
    CHAT_ON_MATERIAL,
    CHOICE_WEIGHT,
    CODE_ACTION_WEIGHT,
    CODE_ACTIONS,
    CODE_DEICTIC,
    CODE_DEICTIC_WEIGHT,
    CODE_OBJECTS,
    CODE_PRESENT,
    CODE_REQUEST_WEIGHT,
    CODE_VERBS,
    CUES,
    FAMILY_EXTRA,
    FAMILY_MAX,
    FENCE_WEIGHT,
    LANGUAGE_WEIGHT,
    LANGUAGES,
    OBJECT_MENTION_WEIGHT,
    OPEN_ENDING_WEIGHT,
    OPEN_ENDINGS,
    PASSAGE_BOOST,
    PASSAGE_CHARS,
    PASSAGE_HINT,
    PAYLOAD_CHARS,
    QUESTION_WEIGHT,
    QUESTION_WORDS,
    SHAPES,
    SYNTAX_CAP,
    SYNTAX_TOKENS,
)

#: The tasks detection can return, in tie-break order.
DETECTED_TASKS: Final[tuple[Task, ...]] = (
    "chat", "code", "classification", "summarisation", "extraction", "completion",
)
_HEAD, _TAIL = 300, 200            # instruction window
_CODE_HEAD, _CODE_TAIL = 640, 192   # code window
_READ_HEAD, _READ_TAIL = 4096, 1024  # the most of any prompt that is looked at
_SOFTMAX_K: Final = 1.5            # sharpness of the confidence
_VERB_REACH: Final = 80            # "write … function": at most this many characters apart
_MAX_REASONS: Final = 4
_BOOSTED = frozenset(("summarisation", "extraction", "classification"))
_DEICTIC = ("is this", "is the following", "are these", "does this", "is that", "was this")


@dataclass(frozen=True, slots=True)
class TaskGuess:
    """What a prompt asks for.

    Attributes:
        task: the detected task.
        confidence: 0..1, a softmax over ``scores``.
        reasons: the evidence for ``task`` in operator words, strongest first.
        scores: every detected task's points (chat starts at the baseline).
    """

    task: Task
    confidence: float
    reasons: tuple[str, ...]
    scores: Mapping[str, float] = field(hash=False, compare=True)

    @property
    def explanation(self) -> str:
        """One line for the UI: ``"code: fenced block, `def`, mentions Python"``."""
        return f"{self.task}: {', '.join(self.reasons)}"


def _trie_pattern(phrases: Sequence[str]) -> str:
    """A regex alternation shaped as a trie (one branch per next character): far faster than
    a flat alternation of hundreds of phrases, and it prefers the longest phrase."""
    root: dict[str, Any] = {}
    for phrase in phrases:
        node = root
        for char in phrase:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


# phrase -> roles; one phrase can be a cue, a language, a verb, an object and an action.
_ROLES: dict[str, list[tuple[str, Any]]] = {}
for _phrase, _cue in CUES.items():
    _ROLES.setdefault(_phrase, []).append(("cue", _cue))
for _phrase, _label in LANGUAGES.items():
    _ROLES.setdefault(_phrase, []).append(("lang", _label))
for _phrase in CODE_VERBS:
    _ROLES.setdefault(_phrase, []).append(("verb", None))
for _phrase in CODE_OBJECTS:
    _ROLES.setdefault(_phrase, []).append(("object", None))
for _phrase, _reason in CODE_ACTIONS.items():
    _ROLES.setdefault(_phrase, []).append(("action", _reason))
for _phrase in _DEICTIC:
    _ROLES.setdefault(_phrase, []).append(("deictic", None))
for _phrase in CODE_DEICTIC:
    _ROLES.setdefault(_phrase, []).append(("det", None))
_ROLES.setdefault("or", []).append(("or", None))
_PHRASES: Final = re.compile(r"\b" + _trie_pattern(sorted(_ROLES)) + r"(?![\w+#])")
_SYNTAX: Final = frozenset(SYNTAX_TOKENS)
_SENTENCE_END = (".", "?", "!", "\n")
_QUOTES = ("'", '"', "\u201c", "\u00ab")


def _window(text: str) -> str:
    if len(text) <= _HEAD + _TAIL:
        return text.lower()
    return text[:_HEAD].lower() + "\n" + text[-_TAIL:].lower()


def _same_sentence(window: str, start: int, end: int) -> bool:
    if start > end:
        return False
    gap = window[start:end]
    return len(gap) <= _VERB_REACH and not any(mark in gap for mark in _SENTENCE_END)


def _adjacent(window: str, start: int, end: int) -> bool:
    return start <= end and end - start <= 2 and not window[start:end].strip()


class _Evidence:
    """Scores and reasons while one prompt is read (a small object per call)."""

    __slots__ = ("reasons", "scores")

    def __init__(self) -> None:
        self.scores: dict[str, float] = dict.fromkeys(DETECTED_TASKS, 0.0)
        self.scores["chat"] = CHAT_BASELINE
        self.reasons: dict[str, dict[str, float]] = {}

    def add(self, task: str, weight: float, reason: str) -> None:
        """Count ``reason`` for ``task``; a reason seen again counts once, at its top weight."""
        reasons = self.reasons.setdefault(task, {})
        if weight > reasons.get(reason, 0.0):
            self.scores[task] += weight - reasons.get(reason, 0.0)
            reasons[reason] = weight


def _read_code(text: str, ev: _Evidence) -> float:
    """Adds code-syntax evidence; returns the syntax points (before the cap)."""
    body = text if len(text) <= _CODE_HEAD + _CODE_TAIL else text[:_CODE_HEAD] + "\n" + text[-_CODE_TAIL:]
    families: dict[str, float] = {}
    if "```" in body:
        families["fenced block"] = FENCE_WEIGHT
    for token in sorted(_SYNTAX.intersection(body.split())):  # sorted: same order in every process
        weight, reason = SYNTAX_TOKENS[token]
        seen = families.get(reason)
        families[reason] = weight if seen is None else min(seen + FAMILY_EXTRA * weight, FAMILY_MAX * weight)
    for needle, weight, reason, at_least in SHAPES:
        if body.count(needle) >= at_least and weight > families.get(reason, 0.0):
            families[reason] = weight
    points = sum(families.values())
    if points >= 1.0:  # one stray token in prose is not code
        scale = min(1.0, SYNTAX_CAP / points)
        for reason, weight in families.items():
            ev.add("code", weight * scale, reason)
    return points


def _read_window(window: str, ev: _Evidence, has_code: bool, has_passage: bool) -> None:
    verbs: list[int] = []          # end offsets of code verbs
    deictic: list[int] = []        # ... of "is this", "is the following"
    dets: list[int] = []           # ... of "this", "my", "the following"
    languages: list[str] = []
    chat_scale = CHAT_ON_MATERIAL if has_code or has_passage else 1.0
    for match in _PHRASES.finditer(window):
        phrase = match.group()
        for role, value in _ROLES[phrase]:
            if role == "cue":
                task, weight, reason = value
                if task == "chat":
                    weight *= chat_scale
                elif has_passage and task in _BOOSTED:
                    weight *= PASSAGE_BOOST
                ev.add(task, weight, reason)
            elif role in ("lang", "object"):
                start = match.start()
                if role == "lang":
                    if not languages:  # naming two languages is no more code than naming one
                        ev.add("code", LANGUAGE_WEIGHT, f"mentions {value}")
                    languages.append(value)
                else:
                    ev.add("code", OBJECT_MENTION_WEIGHT, f"mentions a {phrase}")
                if any(_same_sentence(window, end, start) for end in verbs):
                    ev.add("code", CODE_REQUEST_WEIGHT, "asks to write code")
                if dets and _adjacent(window, dets[-1], start):
                    ev.add("code", CODE_DEICTIC_WEIGHT, "refers to code in the prompt")
                    dets.append(match.end())  # "this C code": the object follows the language
            elif role == "verb":
                verbs.append(match.end())
            elif role == "det":
                dets.append(match.end())
            elif role == "action":
                ev.add("code", CODE_ACTION_WEIGHT[has_code], value)
            elif role == "deictic":
                deictic.append(match.end())
            elif role == "or":
                start = match.start()
                if any(_same_sentence(window, end, start) for end in deictic):
                    ev.add("classification", CHOICE_WEIGHT, "asks which of two labels fits")
                colon = window.rfind(":", 0, start)
                if colon >= 0 and _same_sentence(window, colon, start) and "," in window[colon:start]:
                    ev.add("classification", CHOICE_WEIGHT, "offers labels to choose from")


def _has_payload(text: str) -> bool:
    """A passage to work on: long with a line break, or introduced by a colon or a quote."""
    if len(text) >= PASSAGE_CHARS and "\n" in text:
        return True
    colon = text.find(":", 0, _HEAD)
    if colon >= 0 and len(text) - colon > PAYLOAD_CHARS:
        return True
    for quote in _QUOTES:
        at = text.find(quote, 0, _HEAD)
        while at >= 0:
            if at == 0 or text[at - 1] in " \n:(":
                if len(text) - at > PAYLOAD_CHARS:
                    return True
                break
            at = text.find(quote, at + 1, _HEAD)
    return False


def _is_question(text: str) -> bool:
    """One plain question: a question word first, a question mark last."""
    if not text.endswith("?") or len(text) > _HEAD:
        return False
    first = text.split(None, 1)[0].lower()
    return first in QUESTION_WORDS


def _open_ending(text: str) -> bool:
    tail = text[-80:].rstrip()
    if not tail or tail[-1] in ".?!\"')]}»`" or "?" in tail:
        return False
    last = tail.rsplit(None, 1)[-1].lower().rstrip(",;:")
    return tail[-1] in ",:;" or last in OPEN_ENDINGS


def _conclude(ev: _Evidence) -> TaskGuess:
    scores = ev.scores
    best: Task = "chat"
    top = scores["chat"]
    for task in DETECTED_TASKS:  # strictly greater: ties keep the earlier task (chat first)
        if scores[task] > top:
            best, top = task, scores[task]
    total = 0.0
    for value in scores.values():
        total += math.exp(_SOFTMAX_K * (value - top))
    found = ev.reasons.get(best)
    if found:
        ranked = sorted(found, key=found.__getitem__, reverse=True)
        reasons = tuple(ranked[:_MAX_REASONS])
    elif best == "chat":
        reasons = ("no task-specific cues (chat is the default)",)
    else:  # pragma: no cover - a task only wins with evidence
        reasons = ()
    return TaskGuess(best, round(1.0 / total, 3), reasons, scores)


def _evidence(text: str) -> _Evidence:
    ev = _Evidence()
    if len(text) > _READ_HEAD + _READ_TAIL:  # never copy or scan a huge paste whole
        text = text[:_READ_HEAD] + "\n" + text[-_READ_TAIL:]
    stripped = text.strip()
    if not stripped:
        return ev
    syntax = _read_code(stripped, ev)
    has_code = syntax >= CODE_PRESENT
    has_passage = not has_code and _has_payload(stripped)
    if has_passage:
        for task, weight in PASSAGE_HINT.items():
            ev.add(task, weight, "long passage")
    _read_window(_window(stripped), ev, has_code, has_passage)
    if not has_code and _is_question(stripped):
        ev.add("chat", QUESTION_WEIGHT, "a question")
    if not has_code and _open_ending(stripped):
        ev.add("completion", OPEN_ENDING_WEIGHT, "stops mid-sentence")
    return ev


def detect_task(text: str) -> TaskGuess:
    """Detect the task a prompt asks for.

    Args:
        text: the prompt (any length; only the first and last kilobytes are read).

    Returns:
        The task, a confidence in 0..1, the reasons and every task's score.
    """
    return _conclude(_evidence(text))


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts: [{"type": "text", "text": ...}]
        return "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def detect_chat_task(messages: Sequence[Mapping[str, Any]]) -> TaskGuess:
    """Detect the task of a chat: its last user message, with hints from the system prompt.

    A system prompt such as "You are a sentiment classifier" adds half its evidence for the
    non-chat tasks, so a terse user message ("great phone, awful battery") is read in that light.

    Args:
        messages: chat messages (``{"role": ..., "content": ...}``), oldest first.

    Returns:
        The guess for the last user message (chat, with a reason, when there is none).
    """
    user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if user is None:
        return TaskGuess("chat", 1.0, ("no user message (chat is the default)",),
                         {t: (CHAT_BASELINE if t == "chat" else 0.0) for t in DETECTED_TASKS})
    ev = _evidence(_content(user))
    system = next((m for m in messages if m.get("role") == "system"), None)
    if system is not None:
        hints = _evidence(_content(system))
        for task, reasons in hints.reasons.items():
            if task != "chat":
                for reason, weight in reasons.items():
                    ev.add(task, weight / 2, f"system prompt: {reason}")
    return _conclude(ev)
