"""The SDK's argument checks: a wrong type is a ``TypeError`` and a wrong value a ``ValueError``,
each naming the argument, raised before any request is sent.

The bounds are the API's published ones (``/openapi.json``, docs/api.md): the SDK imports nothing
from the server, so they are restated here. What depends on the server (a model's context, which
ids its catalog holds, its model folders) is still the server's to say.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Final

MODEL_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}")
MAX_TOKENS_LIMIT: Final = 131072
TEMPERATURE_MAX: Final = 2.0
MAX_STOP: Final = 4
MAX_STOP_CHARS: Final = 64
SEED_MAX: Final = 2**32 - 2
MAX_PROMPT_CHARS: Final = 262_144
MAX_MESSAGES: Final = 256
MAX_BATCH: Final = 64
MAX_PATH_CHARS: Final = 4096
CONTEXT_RANGE: Final = (64, 131072)
MODES: Final = ("auto", "manual", "hybrid")
ROLES: Final = ("system", "user", "assistant")
TASKS: Final = ("chat", "code", "classification", "summarisation", "extraction", "completion")
TIERS: Final = ("ram", "swap", "disk")


def _kind(value: Any) -> str:
    return type(value).__name__


def text(name: str, value: Any, *, max_chars: int | None = None, empty: bool = False) -> str:
    """A str that JSON can carry as UTF-8 (no lone surrogate), within ``max_chars``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    if not value and not empty:
        raise ValueError(f"{name} must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"{name} is {len(value)} characters long; at most {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} holds a lone surrogate (U+{ord(value[exc.start]):04X} at {exc.start}), "
                         "which is not text and cannot be sent as UTF-8") from None
    return value


def model_id(name: str, value: Any) -> str:
    """A catalog id: 1 to 64 of letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (a catalog id), not {_kind(value)}")
    if not MODEL_ID.fullmatch(value):
        raise ValueError(f"{name}: {value[:80]!r} is not a catalog id (1 to 64 of letters, digits, '.', '_', '-', "
                         "starting with a letter or digit)")
    return value


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """One of ``allowed``."""
    options = tuple(allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str ({', '.join(map(repr, options))}), not {_kind(value)}")
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, not {value[:40]!r}")
    return value


def integer(name: str, value: Any, low: int, high: int) -> int:
    """An int (not a bool) from ``low`` to ``high``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {_kind(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {value}")
    return value


def number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite int or float from ``low`` (excluded when ``low_open``) to ``high``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, not {_kind(value)}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = f"above {low:g}" if low_open else f"from {low:g}"
        raise ValueError(f"{name} must be a finite number {bound} to {high:g}, not {value!r}")
    return value


def strings(name: str, value: Any, *, one: bool = True) -> list[str]:
    """A list (or other iterable) of str; a single str is one item when ``one``, else a TypeError."""
    if isinstance(value, str):
        if one:
            return [value]
        raise TypeError(f"{name} must be a list of str, e.g. [{value[:40]!r}], not one str")
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable) or isinstance(value, dict):
        raise TypeError(f"{name} must be a list of str, not {_kind(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a str, not {_kind(item)}")
    return items


def path(name: str, value: Any) -> str:
    """A path on the server: text without NUL, at most 4096 characters."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (a path on the server), not {_kind(value)}")
    text(name, value, max_chars=MAX_PATH_CHARS)
    if "\x00" in value:
        raise ValueError(f"{name} holds a NUL byte, which no file name can hold")
    return value
