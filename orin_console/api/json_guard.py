"""Hostile JSON bodies, refused before any route sees them, each with a message naming the problem.

:func:`check_body` looks at a request body (already bounded in size by the guard middleware) and
returns a :class:`BodyProblem` for:

- a body sent with another ``Content-Type`` than JSON, or a charset other than UTF-8 (415);
- bytes that are not UTF-8 (400, naming the offset);
- text that is not JSON (400, naming the line and column), ``NaN``/``Infinity`` (not JSON), a
  number of more than :data:`MAX_NUMBER_CHARS` digits, nesting deeper than :data:`MAX_DEPTH`;
- a key given twice in one object (422 ``ValidationError``: JSON parsers disagree on which one
  wins, so the request is ambiguous);
- a lone surrogate (``"\\ud800"``) in a key or a string (422 ``ValidationError``: not text; no
  runner can encode it).

The path of the offending value is named in JSON-path-like form (``messages[0].content``).
Routes then parse the body again, knowing it is sound.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "BodyProblem", "check_body", "check_content_type"]

MAX_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted (a chat, a tool's JSON schema: far less)."""
MAX_NUMBER_CHARS: Final = 400
"""Longest number literal accepted (Python refuses to convert integers over 4300 digits)."""
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


@dataclass(frozen=True)
class BodyProblem:
    """Why a body is refused: HTTP ``status``, a ``kind`` (the seed error type), the
    ``message`` (without the field) and the ``field`` at fault (``messages[0].content``;
    ``body`` for the whole body)."""

    status: int
    kind: str
    message: str
    field: str = "body"


class _Refused(ValueError):
    def __init__(self, problem: BodyProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def check_content_type(content_type: str | None) -> BodyProblem | None:
    """A body must be sent as ``application/json`` (or ``application/*+json``), in UTF-8."""
    if not content_type:
        return BodyProblem(415, "UnsupportedMediaType", "the request has a body but no Content-Type; send it as "
                           "JSON with 'Content-Type: application/json'")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not _JSON_TYPE.match(media):
        return BodyProblem(415, "UnsupportedMediaType", f"the body is sent as {media[:60]!r}; this API takes "
                           "JSON only: send it with 'Content-Type: application/json'")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return BodyProblem(415, "UnsupportedMediaType", f"charset={charset[:30]!r}: JSON bodies are UTF-8; "
                               "send UTF-8 and leave the charset out (or say charset=utf-8)")
    return None


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    shown = key if key.isidentifier() and key.isascii() else json.dumps(key, ensure_ascii=True)[:64]
    return f"{parent}.{shown}" if parent else shown


def _surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        bad = _surrogate(key)
        if bad is not None:
            raise _Refused(BodyProblem(422, "ValidationError", f"a key holds a lone surrogate ({bad}), which is "
                                       "not text; send keys and strings as valid Unicode"))
        if key in seen:
            shown = json.dumps(key, ensure_ascii=True)[:64]
            raise _Refused(BodyProblem(422, "ValidationError", f"the key {shown} is given twice in one object "
                                       "(JSON parsers disagree on which one counts); give each key once",
                                       field=key if key.isidentifier() and key.isascii() else "body"))
        seen[key] = value
    return seen


def _constant(name: str) -> Any:
    raise _Refused(BodyProblem(400, "InvalidJSON", f"{name} is not JSON (JSON has no NaN or Infinity); send a "
                               "finite number"))


def _number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > MAX_NUMBER_CHARS:
            raise _Refused(BodyProblem(400, "InvalidJSON", f"a number of {len(text)} characters; at most "
                                       f"{MAX_NUMBER_CHARS}"))
        return kind(text)

    return parse


def _walk(value: Any) -> BodyProblem | None:
    """Depth and lone surrogates in string values, iteratively (no recursion on hostile input)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            bad = _surrogate(item)
            if bad is not None:
                return BodyProblem(422, "ValidationError", f"holds a lone surrogate ({bad}), which is not text and "
                                   "cannot be encoded as UTF-8; send valid Unicode", field=where or "body")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return BodyProblem(400, "TooDeep", f"the body is nested more than {MAX_DEPTH} levels deep (at "
                                   f"{where or 'the top'}); no request of this API needs that", field=where or "body")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((child, _path(where, key), depth + 1) for key, child in children)
    return None


def check_body(body: bytes, content_type: str | None) -> BodyProblem | None:
    """The first problem with a non-empty request ``body``, or None when it is sound JSON."""
    problem = check_content_type(content_type)
    if problem is not None:
        return problem
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BodyProblem(400, "InvalidJSON", f"the body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset "
                           f"{exc.start}); JSON bodies are UTF-8 text")
    if text.startswith("\ufeff"):
        return BodyProblem(400, "InvalidJSON", "the body starts with a byte-order mark; send JSON without one")
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                           parse_int=_number(int), parse_float=_number(float))
    except _Refused as exc:
        return exc.problem
    except RecursionError:
        return BodyProblem(400, "TooDeep", f"the body is nested far more than {MAX_DEPTH} levels deep; no request "
                           "of this API needs that")
    except json.JSONDecodeError as exc:
        return BodyProblem(400, "InvalidJSON", f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}")
    return _walk(value)
