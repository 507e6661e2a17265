"""The catalog's refusals in the operator's words: each pydantic error as one phrase naming
the field, the value (sanitised, cut to 80 characters) and what is expected, and the line of
the field in the file (found by a plain scan, indexed once per refusal).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import Any

from pydantic_core import ErrorDetails

from orin_console.core.text import sanitize

_EXPECTED = {
    "int_type": "a whole number without quotes",
    "bool_type": "true or false without quotes",
    "string_type": "text in double quotes",
    "tuple_type": 'a list such as ["chat"]',
}


def _show(value: Any) -> str:
    """A value from the file for a message: its repr, sanitised and cut to 80 characters."""
    text = sanitize(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."


def explain_error(err: ErrorDetails, fields: Iterable[str]) -> str:
    """One pydantic error about a catalog entry in the operator's words (``fields``: the
    entry's known fields, named when an unknown one is met)."""
    field = ".".join(str(p) for p in err["loc"]) or "(entry)"
    kind = err["type"]
    if kind in _EXPECTED:
        return f"field '{field}' = {_show(err.get('input'))}: expected {_EXPECTED[kind]}"
    if kind == "extra_forbidden":
        allowed = ", ".join(fields)
        return f"field '{field}' is not known (allowed fields: {allowed})"
    if kind == "missing":
        return f"field '{field}' is required"
    if kind == "literal_error":
        return f"field '{field}' = {_show(err.get('input'))}: {err['msg'].lower()}"
    if kind == "string_pattern_mismatch" and field == "id":
        return (
            f"field 'id' = {_show(err.get('input'))}: must start with a letter or digit and use only "
            "letters, digits, '.', '_' and '-' (at most 64 characters)"
        )
    if kind == "string_pattern_mismatch" and field == "sha256":
        return "field 'sha256' must be 64 lower-case hex digits"
    msg = err["msg"].removeprefix("Value error, ")
    return f"field '{field}' = {_show(err.get('input'))}: {msg[0].lower()}{msg[1:]}"


_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*models[ \t]*\]\]", re.MULTILINE)


MAX_PROBLEMS = 20
"""Problems named in one refusal; the rest are counted (a 1 MB file of broken entries must
not print a megabyte of errors)."""


class LineIndex:
    """Where things are in the catalog's text, for messages (indexed once, on first use)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._headers: list[int] | None = None
        self._newlines: list[int] | None = None

    def line_of(self, offset: int) -> int:
        if self._newlines is None:
            self._newlines = [i for i, ch in enumerate(self.text) if ch == "\n"]
        return bisect.bisect_left(self._newlines, offset) + 1

    def field_line(self, index: int, field: str) -> int | None:
        """The line (1-based) of ``field`` in the ``index``-th ``[[models]]`` table, when a
        plain scan finds it (an inline-table layout is not searched)."""
        if self._headers is None:
            self._headers = [m.start() for m in _HEADER.finditer(self.text)]
        headers = self._headers
        if index >= len(headers):
            return None
        start = headers[index]
        end = headers[index + 1] if index + 1 < len(headers) else len(self.text)
        key = re.compile(rf'^[ \t]*"?{re.escape(field)}"?[ \t]*=', re.MULTILINE)
        found = key.search(self.text, start, end)
        if found is None:
            return self.line_of(start) if field == "(entry)" else None
        return self.line_of(found.start())
